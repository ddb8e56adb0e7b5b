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
    /// Every state, in the order the admin API lists them.
    pub const ALL: [BackendState; 3] = [
        BackendState::Active,
        BackendState::Draining,
        BackendState::Disabled,
    ];

    /// The state as the YAML and the admin API write it (`active`, `draining`, `disabled`).
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
    /// `round_robin` (the default): in turn, by weight.
    #[default]
    RoundRobin,
    /// `random`: at random, by weight.
    Random,
    /// `least_requests`: the backend with the fewest requests in flight.
    LeastRequests,
}

/// What a health check probes.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// `tcp`: a connect.
    Tcp,
    /// `http`: a `GET` answered with the expected status.
    Http,
}

/// The lowest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum MinVersion {
    /// `TLSv1.2` (the default): TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "TLSv1.2")]
    Tls12,
    /// `TLSv1.3`: TLS 1.3 only.
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

/// An application protocol offered by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AlpnProtocol {
    /// `h2`: HTTP/2.
    #[serde(rename = "h2")]
    H2,
    /// `http/1.1`: HTTP/1.1.
    #[serde(rename = "http/1.1")]
    Http11,
}

/// The decision log's line format: text (`key=value`) or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    /// `text` (the default): `key=value` fields.
    #[default]
    Text,
    /// `json`: one JSON object per line.
    Json,
}

/// Size and lifetime of a session table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableConfig {
    /// The most sessions kept (the least recently used go first).
    pub capacity: u64,
    /// A session unused this long is forgotten.
    pub idle_timeout: Duration,
    /// A session is forgotten this long after it began, used or not; `None`: never.
    pub max_lifetime: Option<Duration>,
}
