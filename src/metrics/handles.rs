//! The request-path handles of one pool's metrics ([`PoolMetrics`]), resolved once at start-up
//! so that a request does one atomic add per counter and no label lookup.

use super::{outcome_index, Metrics, OUTCOMES};
use crate::affinity::lifetime::Expiry;
use crate::affinity::Outcome;
use crate::pool::Pool;
use pingora_prometheus::prometheus::{self, IntCounter};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// One pool's request-path handles, resolved at start-up.
pub struct PoolMetrics {
    /// `[backend][outcome]`; the last row is "no backend".
    requests: Vec<[IntCounter; OUTCOMES.len()]>,
    latency: Vec<prometheus::Histogram>,
    cookie_failures: IntCounter,
    /// By lifetime: idle, life.
    cookie_expirations: [IntCounter; 2],
    /// Per backend: removed `Set-Cookie` lines, and whether that was logged yet.
    cookie_overwrites: Vec<(IntCounter, AtomicBool)>,
}

impl PoolMetrics {
    /// Count a finished request.
    pub fn request(&self, backend: Option<usize>, outcome: Outcome) {
        let row = backend
            .unwrap_or(self.requests.len() - 1)
            .min(self.requests.len() - 1);
        self.requests[row][outcome_index(outcome)].inc();
    }

    /// Observe a backend's response time.
    pub fn upstream_latency(&self, backend: usize, seconds: f64) {
        if let Some(h) = self.latency.get(backend) {
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
        let Some((counter, logged)) = self.cookie_overwrites.get(backend) else {
            return false;
        };
        counter.inc_by(lines as u64);
        !logged.swap(true, Relaxed)
    }
}

impl Metrics {
    /// Resolve the request-path handles of a pool.
    pub fn for_pool(&self, pool: &Pool) -> PoolMetrics {
        let names: Vec<&str> = pool
            .slots
            .iter()
            .map(|s| s.name.as_str())
            .chain(std::iter::once("-"))
            .collect();
        PoolMetrics {
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
            latency: pool
                .slots
                .iter()
                .map(|s| {
                    self.latency
                        .with_label_values(&[pool.name.as_str(), s.name.as_str()])
                })
                .collect(),
            cookie_failures: self.cookie_failures.with_label_values(&[&pool.name]),
            cookie_expirations: [Expiry::Idle, Expiry::Life].map(|expiry| {
                self.cookie_expirations
                    .with_label_values(&[pool.name.as_str(), expiry.as_str()])
            }),
            cookie_overwrites: pool
                .slots
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
