//! A pool's consistent-hash ring: where a key (any bytes) lands among the pool's backends.
//! Which part of a request is the key is the affinity layer's business (`affinity::hash`).
//!
//! The ring is `pingora-load-balancing`'s Ketama (`selection::Consistent`, weighted, the same
//! algorithm as NGINX's `hash ... consistent`), keyed by backend address: every proxy with the
//! same config maps a key to the same backend, adding or removing one of N backends moves about
//! 1/N of the keys, and a key whose home cannot serve walks on to the next backend of the ring —
//! and comes back when its home recovers. With a `balance_factor` the walk also skips backends
//! above the bounded-load limit (Mirrokni, Thorup and Zadimoghaddam).

use super::members::{crate_backends, slot_index};
use super::BackendSlot;
use pingora_load_balancing::selection::Consistent;
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Ketama places this many points on the ring per unit of weight.
const POINTS_PER_WEIGHT: usize = 160;

/// A consistent ring over one pool's backends (weighted), with an optional load bound.
pub struct Ring {
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

impl Ring {
    /// The ring of `slots`; with `balance_factor` (> 1.0) a key skips backends above the
    /// bounded-load limit.
    /// Removed backends are left out.
    pub fn new(slots: &[Arc<BackendSlot>], balance_factor: Option<f64>) -> Self {
        let backends: BTreeSet<Backend> = crate_backends(slots);
        let total_weight: usize = slots
            .iter()
            .filter(|s| !s.is_removed())
            .map(|s| s.weight as usize)
            .sum();
        let discovery = pingora_load_balancing::discovery::Static::new(backends);
        let ring = LoadBalancer::<Consistent>::from_backends(Backends::new(discovery));
        if let Some(Err(e)) = super::futures_now(ring.update()) {
            log::error!("hash ring: static backend discovery failed: {e}");
        }
        Ring {
            balance_factor,
            ring,
            max_steps: POINTS_PER_WEIGHT * total_weight + 1,
        }
    }

    /// The backend for `key`: the first on the ring from the key that can take it, not
    /// `excluded`, and (with a balance factor) under the load bound. `None` if none can.
    ///
    /// The key's home keeps its keys while it is draining (they are its existing sessions);
    /// a key walks on only to backends that take new sessions.
    pub fn select(
        &self,
        key: &[u8],
        slots: &[Arc<BackendSlot>],
        excluded: &[usize],
    ) -> Option<RingPick> {
        let takes_new = |i: usize| !excluded.contains(&i) && slots[i].takes_new_sessions();
        let serves_home = |i: usize| !excluded.contains(&i) && slots[i].is_usable();
        let (count, in_flight) = (0..slots.len())
            .filter(|i| takes_new(*i))
            .fold((0usize, 0usize), |(n, total), i| {
                (n + 1, total + slots[i].in_flight.load(Relaxed))
            });
        if count == 0 && !(0..slots.len()).any(serves_home) {
            return None;
        }
        let walk = |bound: Option<usize>| {
            let home = Cell::new(None);
            let chosen = self.ring.select_with(key, self.max_steps, |backend, _| {
                let Some(i) = slot_index(slots, backend) else {
                    return false;
                };
                if home.get().is_none() {
                    home.set(Some(i));
                }
                let is_home = home.get() == Some(i);
                let can_take = takes_new(i) || (is_home && serves_home(i));
                can_take && bound.is_none_or(|b| slots[i].in_flight.load(Relaxed) < b)
            })?;
            let backend = slot_index(slots, &chosen)?;
            Some(RingPick {
                backend,
                home: home.get() == Some(backend),
            })
        };
        let bound = self
            .balance_factor
            .map(|factor| load_bound(factor, in_flight, count));
        // The loads can move between reading them and walking: without a bound, any backend
        // that can take the key will do.
        walk(bound).or_else(|| bound.and_then(|_| walk(None)))
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

    fn ring_of(states: &[crate::config::BackendState]) -> (Ring, crate::pool::Slots) {
        let backends: Vec<String> = (0..states.len())
            .map(|i| {
                format!(
                    "{{ name: b{i}, addr: \"127.0.0.1:{}\", state: {} }}",
                    20_000 + i,
                    states[i].as_str()
                )
            })
            .collect();
        let yaml = format!(
            "sticky:\n  listeners: [{{ addr: \"127.0.0.1:1\" }}]\n  pools:\n    - name: p\n      backends: [{}]\n",
            backends.join(", ")
        );
        let config = crate::config::load_str(&yaml).unwrap();
        let (pool, _) = crate::pool::Pool::new(&config.pools[0], None);
        let slots = pool.slots();
        (Ring::new(&slots, None), slots)
    }

    #[test]
    fn a_draining_backend_keeps_its_own_keys_and_gets_no_others() {
        use crate::config::BackendState::{Active, Draining};
        let (all_active, _) = ring_of(&[Active, Active, Active]);
        let (hash, slots) = ring_of(&[Active, Draining, Active]);
        // b0 is down too: its keys must walk on, but never onto the draining b1.
        slots[0].healthy.store(false, Relaxed);
        for k in 0..2000 {
            let key = format!("/k{k}");
            let home = all_active.select(key.as_bytes(), &slots_all(&all_active), &[]);
            let pick = hash.select(key.as_bytes(), &slots, &[]).unwrap();
            let home = home.unwrap().backend;
            if home == 1 {
                assert_eq!(pick.backend, 1, "{key}: a draining home keeps its keys");
                assert!(pick.home);
            } else {
                assert_ne!(pick.backend, 1, "{key}: no new keys for a draining backend");
                assert_ne!(pick.backend, 0, "{key}: not to an unhealthy one");
            }
        }
    }

    /// A fresh all-active, all-healthy slot set matching `ring`'s backends.
    fn slots_all(_ring: &Ring) -> Vec<Arc<BackendSlot>> {
        (0..3)
            .map(|i| {
                let addr: std::net::SocketAddr =
                    format!("127.0.0.1:{}", 20_000 + i).parse().unwrap();
                Arc::new(BackendSlot::new(
                    format!("b{i}"),
                    addr,
                    1,
                    crate::config::BackendState::Active,
                    pingora_core::upstreams::peer::HttpPeer::new(addr, false, String::new()),
                    http::HeaderValue::from_static("127.0.0.1"),
                ))
            })
            .collect()
    }

    #[test]
    fn load_bound_is_the_ceiling_of_factor_times_average() {
        assert_eq!(load_bound(1.25, 0, 4), 1);
        assert_eq!(load_bound(1.25, 7, 4), 3);
        assert_eq!(load_bound(1.25, 39, 4), 13);
        assert_eq!(load_bound(2.0, 9, 2), 10);
    }
}
