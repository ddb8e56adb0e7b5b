//! Rule-based affinity for a pool: the ordered key sources and the consistent-hash ring.
//!
//! The ring is `pingora-load-balancing`'s Ketama (`selection::Consistent`, weighted, the same
//! algorithm as NGINX's `hash ... consistent`), keyed by backend address: every proxy with the
//! same config maps a key to the same backend, adding or removing one of N backends moves about
//! 1/N of the keys, and a key whose home cannot serve walks on to the next backend of the ring —
//! and comes back when its home recovers. With a `balance_factor` the walk also skips backends
//! above the bounded-load limit (Mirrokni, Thorup and Zadimoghaddam).

use super::{slot_index, BackendSlot, Slots};
use crate::affinity::key::{self, KeySource};
use crate::config::HashConfig;
use crate::extension::Extensions;
use pingora_load_balancing::selection::Consistent;
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Ketama places this many points on the ring per unit of weight.
const POINTS_PER_WEIGHT: usize = 160;

/// One pool's hash-key affinity.
pub struct HashAffinity {
    pub sources: Vec<Arc<dyn KeySource>>,
    balance_factor: Option<f64>,
    ring: LoadBalancer<Consistent>,
    /// Enough ring steps to pass every point once.
    max_steps: usize,
}

/// Where a key landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingPick {
    pub backend: usize,
    /// `true` when it is the key's home (the first backend on the ring from the key).
    pub home: bool,
}

impl HashAffinity {
    pub fn new(config: &HashConfig, slots: &Slots, extensions: &Extensions) -> Self {
        let backends: BTreeSet<Backend> = super::crate_backends(slots);
        let total_weight: usize = slots.iter().map(|s| s.weight as usize).sum();
        let discovery = pingora_load_balancing::discovery::Static::new(backends);
        let ring = LoadBalancer::<Consistent>::from_backends(Backends::new(discovery));
        if let Some(Err(e)) = super::futures_now(ring.update()) {
            log::error!("hash ring: static backend discovery failed: {e}");
        }
        HashAffinity {
            sources: config
                .sources
                .iter()
                .filter_map(|c| key::from_config(c, extensions))
                .collect(),
            balance_factor: config.balance_factor,
            ring,
            max_steps: POINTS_PER_WEIGHT * total_weight + 1,
        }
    }

    /// The backend for `key`: the first on the ring from the key that is usable, not
    /// `excluded`, and (with a balance factor) under the load bound. `None` if none is.
    pub fn select(
        &self,
        key: &[u8],
        slots: &[BackendSlot],
        excluded: &[usize],
    ) -> Option<RingPick> {
        let candidate = |i: usize| !excluded.contains(&i) && slots[i].is_usable();
        let (count, in_flight) = (0..slots.len())
            .filter(|i| candidate(*i))
            .fold((0usize, 0usize), |(n, total), i| {
                (n + 1, total + slots[i].in_flight.load(Relaxed))
            });
        let home_usable = |i: usize| !excluded.contains(&i) && slots[i].is_usable();
        if count == 0 && !(0..slots.len()).any(home_usable) {
            return None;
        }
        let bound = self
            .balance_factor
            .map(|factor| load_bound(factor, in_flight, count));
        let home = Cell::new(None);
        let chosen = self.ring.select_with(key, self.max_steps, |backend, _| {
            let Some(i) = slot_index(slots, backend) else {
                return false;
            };
            let is_home = match home.get() {
                None => {
                    home.set(Some(i));
                    true
                }
                Some(h) => h == i,
            };
            let can_take =
                candidate(i) || (is_home && !excluded.contains(&i) && slots[i].is_usable());
            can_take && bound.is_none_or(|b| slots[i].in_flight.load(Relaxed) < b)
        })?;
        let backend = slot_index(slots, &chosen)?;
        Some(RingPick {
            backend,
            home: home.get() == Some(backend),
        })
    }
}

/// The most requests one backend may have in flight before a new one spills to the next on
/// the ring: `ceil(factor × (in_flight + 1) / backends)`, at least 1.
pub fn load_bound(factor: f64, in_flight: usize, backends: usize) -> usize {
    let bound = (factor * (in_flight + 1) as f64 / backends.max(1) as f64).ceil();
    (bound as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_bound_is_the_ceiling_of_factor_times_average() {
        assert_eq!(load_bound(1.25, 0, 4), 1);
        assert_eq!(load_bound(1.25, 7, 4), 3);
        assert_eq!(load_bound(1.25, 39, 4), 13);
        assert_eq!(load_bound(2.0, 9, 2), 10);
    }
}
