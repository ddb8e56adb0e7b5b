//! The small value types of the model that the YAML names directly — a backend's state, a
//! balancing algorithm, a health-check type, a TLS version, an ALPN protocol, the access-log
//! format — and a session table's size and lifetime. The file format deserializes straight
//! into them; the layers above use them as they are.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Administrative state of a backend (Stingray's node states, HAProxy `state ready|drain|maint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendState {
    /// Takes new sessions and its existing ones.
    #[default]
    Active,
    /// Keeps the sessions pinned to it (cookie, learned table, hash home) but gets no new ones.
    Draining,
    /// Gets no requests at all and is not health-checked; its sessions move elsewhere.
    Disabled,
}

impl BackendState {
    pub const ALL: [BackendState; 3] = [
        BackendState::Active,
        BackendState::Draining,
        BackendState::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Active => "active",
            BackendState::Draining => "draining",
            BackendState::Disabled => "disabled",
        }
    }
}

/// How new sessions are spread over a pool.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    Random,
    LeastRequests,
}

/// What a health check probes.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    Tcp,
    Http,
}

/// The lowest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum MinVersion {
    #[default]
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

/// An application protocol offered by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AlpnProtocol {
    #[serde(rename = "h2")]
    H2,
    #[serde(rename = "http/1.1")]
    Http11,
}

/// The decision log's line format: text (`key=value`) or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    #[default]
    Text,
    Json,
}

/// Size and lifetime of a session table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableConfig {
    pub capacity: u64,
    pub idle_timeout: Duration,
    pub max_lifetime: Option<Duration>,
}
