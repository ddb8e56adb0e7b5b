//! Rule-based affinity (HAProxy `balance hash`, NGINX `hash … consistent`, Envoy hash
//! policies): the ordered key sources of a class and the pool's consistent ring they feed.

use super::custom::ExtensionLookup;
use super::key::{self, KeySource, RequestView};
use crate::config::HashConfig;
use crate::pool::ring::{Ring, RingPick};
use crate::pool::{BackendSlot, Slots};
use std::sync::Arc;

/// One class's hash-key affinity on one pool.
pub struct HashAffinity {
    pub sources: Vec<Arc<dyn KeySource>>,
    ring: Ring,
}

impl HashAffinity {
    /// Custom sources come from `extensions` (their names were checked before start-up).
    pub fn new(config: &HashConfig, slots: &Slots, extensions: &dyn ExtensionLookup) -> Self {
        HashAffinity {
            sources: config
                .sources
                .iter()
                .filter_map(|c| key::from_config(c, extensions))
                .collect(),
            ring: Ring::new(slots, config.balance_factor),
        }
    }

    /// The first key any source finds in the request.
    pub fn key<'a>(&self, request: &RequestView<'a>) -> Option<std::borrow::Cow<'a, [u8]>> {
        key::first_key(&self.sources, request)
    }

    /// The backend for `key` on the ring, skipping `excluded` ([`Ring::select`]).
    pub fn select(
        &self,
        key: &[u8],
        slots: &[BackendSlot],
        excluded: &[usize],
    ) -> Option<RingPick> {
        self.ring.select(key, slots, excluded)
    }
}
