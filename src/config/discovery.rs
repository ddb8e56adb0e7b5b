//! A pool's DNS discovery (`pools[].discovery`), validated: which name to resolve, on which
//! port its addresses serve, how often, with which weight, through which nameservers.

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Where a pool's discovered backends come from (`pools[].discovery.type`).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryKind {
    /// `dns`: the A and AAAA records of a name (HAProxy `server-template` + `resolvers`,
    /// NGINX Plus `resolve`, Envoy `STRICT_DNS`).
    Dns,
}

/// `pools[].discovery`: backends found by resolving a name, re-resolved on an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// How the backends are found.
    pub kind: DiscoveryKind,
    /// The DNS name whose A and AAAA records are the backends (as written; a final `.` makes
    /// it absolute, else the system's search domains may apply).
    pub name: String,
    /// The port every discovered address serves on.
    pub port: u16,
    /// Time between two resolutions (`interval_seconds`, default 5 s).
    pub interval: Duration,
    /// The weight of every discovered backend (default 1).
    pub weight: u32,
    /// The nameservers asked (`ip:port`); `None`: the system's (`/etc/resolv.conf`).
    pub nameservers: Option<Vec<SocketAddr>>,
}
