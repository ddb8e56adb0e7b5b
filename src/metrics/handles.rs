//! The request-path handles of one pool's metrics ([`PoolMetrics`]), resolved at start-up (and
//! again when the pool's backends change at run time) so that a request does one atomic add per
//! counter and no label lookup.

use super::{outcome_index, Metrics, OUTCOMES};
use crate::affinity::lifetime::Expiry;
use crate::affinity::Outcome;
use crate::config::BackendState;
use crate::pool::Pool;
use arc_swap::ArcSwap;
use pingora_prometheus::prometheus::{self, IntCounter};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// One pool's request-path handles, resolved at start-up.
pub struct PoolMetrics {
    /// The handles labelled with a backend's name, by backend index.
    backends: ArcSwap<BackendHandles>,
    cookie_failures: IntCounter,
    /// By lifetime: idle, life.
    cookie_expirations: [IntCounter; 2],
}

/// The handles of a [`PoolMetrics`] labelled by backend, for one list of backends.
struct BackendHandles {
    /// `[backend][outcome]`; the last row is "no backend".
    requests: Vec<[IntCounter; OUTCOMES.len()]>,
    latency: Vec<prometheus::Histogram>,
    /// Per backend: removed `Set-Cookie` lines, and whether that was logged yet.
    cookie_overwrites: Vec<(IntCounter, AtomicBool)>,
}

impl PoolMetrics {
    /// Count a finished request.
    pub fn request(&self, backend: Option<usize>, outcome: Outcome) {
        let handles = self.backends.load();
        let last = handles.requests.len() - 1;
        let row = backend.unwrap_or(last).min(last);
        handles.requests[row][outcome_index(outcome)].inc();
    }

    /// Observe a backend's response time.
    pub fn upstream_latency(&self, backend: usize, seconds: f64) {
        if let Some(h) = self.backends.load().latency.get(backend) {
            h.observe(seconds);
        }
    }

    pub fn cookie_verification_failure(&self) {
        self.cookie_failures.inc();
    }

    /// Count an affinity cookie past a lifetime.
    pub fn cookie_expired(&self, expiry: Expiry) {
        self.cookie_expirations[usize::from(expiry == Expiry::Life)].inc();
    }

    /// Count `lines` `Set-Cookie` lines for the proxy's own cookies, removed from a response of
    /// `backend`; `true` the first time for this backend (to log it once).
    pub fn cookie_overwrites(&self, backend: usize, lines: usize) -> bool {
        let handles = self.backends.load();
        let Some((counter, logged)) = handles.cookie_overwrites.get(backend) else {
            return false;
        };
        counter.inc_by(lines as u64);
        !logged.swap(true, Relaxed)
    }
}

impl Metrics {
    /// Resolve the request-path handles of a pool.
    pub fn for_pool(&self, pool: &Pool) -> PoolMetrics {
        PoolMetrics {
            backends: ArcSwap::from_pointee(self.backend_handles(pool)),
            cookie_failures: self.cookie_failures.with_label_values(&[&pool.name]),
            cookie_expirations: [Expiry::Idle, Expiry::Life].map(|expiry| {
                self.cookie_expirations
                    .with_label_values(&[pool.name.as_str(), expiry.as_str()])
            }),
        }
    }

    /// The pool's backends changed at run time: resolve its backend handles again.
    pub fn backends_changed(&self, handles: &PoolMetrics, pool: &Pool) {
        handles
            .backends
            .store(std::sync::Arc::new(self.backend_handles(pool)));
    }

    /// Drop the gauges of a backend removed at run time (its counters stay: they count what
    /// happened).
    pub(super) fn forget_backend(&self, labels: &[&str; 2]) {
        for gauge in [
            &self.healthy,
            &self.in_flight,
            &self.pinned_last_minute,
            &self.last_used,
        ] {
            let _ = gauge.remove_label_values(labels);
        }
        let _ = self.slow_start_share.remove_label_values(labels);
        for state in BackendState::ALL {
            let _ = self
                .state
                .remove_label_values(&[labels[0], labels[1], state.as_str()]);
        }
    }

    fn backend_handles(&self, pool: &Pool) -> BackendHandles {
        let slots = pool.slots();
        let names: Vec<&str> = slots
            .iter()
            .map(|s| s.name.as_str())
            .chain(std::iter::once("-"))
            .collect();
        BackendHandles {
            requests: names
                .iter()
                .map(|b| {
                    std::array::from_fn(|i| {
                        self.requests.with_label_values(&[
                            pool.name.as_str(),
                            b,
                            OUTCOMES[i].as_str(),
                        ])
                    })
                })
                .collect(),
            latency: slots
                .iter()
                .map(|s| {
                    self.latency
                        .with_label_values(&[pool.name.as_str(), s.name.as_str()])
                })
                .collect(),
            cookie_overwrites: slots
                .iter()
                .map(|s| {
                    let labels = [pool.name.as_str(), s.name.as_str()];
                    (
                        self.cookie_overwrites.with_label_values(&labels),
                        false.into(),
                    )
                })
                .collect(),
        }
    }
}
