//! DNS discovery (`pools[].discovery`, HAProxy `server-template` + `resolvers`, NGINX Plus
//! `resolve`, Envoy `STRICT_DNS`): a background service per pool resolves the A and AAAA
//! records of a name on an interval and hands the whole current set of `address:port` to a
//! [`DiscoveredBackends`] sink whenever it changed. A failing resolver keeps the last known set
//! (the sink is never given an empty one), warns once per failure streak and counts every
//! failed round (`sticky_discovery_failures_total{pool}`, [`failures_metric`]).
//!
//! This module only finds the addresses; what they become in the pool (backends named after
//! their address, [`backend_name`], added with slow start, removed like a `DELETE`) is the
//! sink's business. Wiring, at start-up (`server.rs`), beside the health-check services:
//!
//! ```text
//! let failures = discovery::failures_metric();      // registered once in the metrics registry
//! for pool in &config.pools {
//!     let counter = failures.with_label_values(&[pool.name.as_str()]);
//!     if let Some(service) = discovery::service(pool, sink.clone(), counter) {
//!         server.add_boxed_service(service);        // runs until the server's shutdown
//!     }
//! }
//! ```

use crate::config::{DiscoveryConfig, PoolConfig};
use pingora_core::services::background::background_service;
use pingora_core::services::ServiceWithDependents;
use pingora_prometheus::prometheus::{IntCounter, IntCounterVec, Opts};
use std::net::SocketAddr;
use std::sync::Arc;

mod dns;
mod tracker;

pub use dns::DnsDiscovery;

/// Receives what DNS discovery found for one pool.
pub trait DiscoveredBackends: Send + Sync + 'static {
    /// The resolver's answer changed: `addrs` is the whole current set (sorted, no duplicates,
    /// never empty).
    fn replace(&self, pool: &str, addrs: &[SocketAddr], weight: u32);
}

/// The name of a discovered backend: its address (`10.0.0.5:8080`, `[::1]:8080`).
pub fn backend_name(addr: SocketAddr) -> String {
    addr.to_string()
}

/// The counter of failed discovery rounds, by pool: `sticky_discovery_failures_total{pool}`.
/// Created once by whoever owns the metrics registry, registered there, and one child per pool
/// handed to [`service`] (`failures.with_label_values(&[pool])`).
pub fn failures_metric() -> IntCounterVec {
    let opts = Opts::new(
        "sticky_discovery_failures_total",
        "DNS discovery rounds that failed (timeout, SERVFAIL, refused, NXDOMAIN, an empty \
         answer); the pool kept its last known discovered backends.",
    );
    IntCounterVec::new(opts, &["pool"]).expect("a valid metric definition")
}

/// The background service that runs `pool`'s DNS discovery until the server's shutdown,
/// telling `sink` every changed answer and counting failed rounds in `failures`; `None` when the
/// pool has no `discovery`.
pub fn service(
    pool: &PoolConfig,
    sink: Arc<dyn DiscoveredBackends>,
    failures: IntCounter,
) -> Option<Box<dyn ServiceWithDependents>> {
    let config = pool.discovery.as_ref()?;
    Some(service_for(&pool.name, config, sink, failures))
}

/// [`service`] for a discovery configuration given apart from its pool.
pub fn service_for(
    pool: &str,
    config: &DiscoveryConfig,
    sink: Arc<dyn DiscoveredBackends>,
    failures: IntCounter,
) -> Box<dyn ServiceWithDependents> {
    let task = DnsDiscovery::new(pool, config.clone(), sink, failures);
    Box::new(background_service(&format!("dns discovery {pool}"), task))
}
