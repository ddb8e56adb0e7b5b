//! `sticky.pools[i].discovery` as written in the file: DNS discovery of a pool's backends.

use super::super::DiscoveryKind;
use serde::Deserialize;

/// `sticky.pools[i].discovery`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    /// `dns`: A and AAAA records.
    #[serde(rename = "type")]
    pub kind: DiscoveryKind,
    /// The DNS name to resolve (`app.internal`).
    pub name: String,
    /// The port of every discovered address (1 to 65535).
    pub port: u16,
    /// Seconds between resolutions, 1 to 3600 (default 5).
    #[serde(default = "default_interval_seconds")]
    pub interval_seconds: u64,
    /// The weight of every discovered backend, 1 to 256 (default 1).
    #[serde(default = "default_discovery_weight")]
    pub weight: u32,
    /// Nameservers as `ip:port` (or `ip`, port 53); absent: the system's (`/etc/resolv.conf`).
    pub nameservers: Option<Vec<String>>,
}

fn default_interval_seconds() -> u64 {
    5
}

fn default_discovery_weight() -> u32 {
    1
}
