//! Rule-based affinity (HAProxy `balance hash`, NGINX `hash … consistent`, Envoy hash
//! policies): the ordered key sources of a class and the pool's consistent ring they feed.

use super::custom::ExtensionLookup;
use super::key::{self, KeySource, RequestView};
use crate::config::HashConfig;
use crate::pool::ring::{Ring, RingPick};
use crate::pool::BackendSlot;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// One class's hash-key affinity on one pool.
pub struct HashAffinity {
    pub sources: Vec<Arc<dyn KeySource>>,
    /// Built again when the pool's backends change at run time.
    ring: ArcSwap<Ring>,
    balance_factor: Option<f64>,
}

impl HashAffinity {
    /// Custom sources come from `extensions` (their names were checked before start-up).
    pub fn new(
        config: &HashConfig,
        slots: &[Arc<BackendSlot>],
        extensions: &dyn ExtensionLookup,
    ) -> Self {
        HashAffinity {
            sources: config
                .sources
                .iter()
                .filter_map(|c| key::from_config(c, extensions))
                .collect(),
            ring: ArcSwap::from_pointee(Ring::new(slots, config.balance_factor)),
            balance_factor: config.balance_factor,
        }
    }

    /// The pool's backends changed at run time: the ring is built again over `slots`
    /// (removed ones left out). Keys move as on any consistent ring: only those of the
    /// backends that came or went.
    pub fn backends_changed(&self, slots: &[Arc<BackendSlot>]) {
        self.ring
            .store(Arc::new(Ring::new(slots, self.balance_factor)));
    }

    /// The first key any source finds in the request.
    pub fn key<'a>(&self, request: &RequestView<'a>) -> Option<std::borrow::Cow<'a, [u8]>> {
        key::first_key(&self.sources, request)
    }

    /// The backend for `key` on the ring, skipping `excluded` ([`Ring::select`]).
    pub fn select(
        &self,
        key: &[u8],
        slots: &[Arc<BackendSlot>],
        excluded: &[usize],
    ) -> Option<RingPick> {
        self.ring.load().select(key, slots, excluded)
    }
}
