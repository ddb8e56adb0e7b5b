//! The process as `GET /api/status` shows it: version, start time and uptime, readiness, the
//! listeners, what the admin API allows, and the rates' sampling (the dashboard's header).

use super::rates;
use crate::config::Config;
use serde::Serialize;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What `/api/status` knows from start-up on.
pub(super) struct Status {
    started: Instant,
    started_unix_ms: u64,
    listeners: Vec<ListenerView>,
    routes: usize,
    admin: AdminView,
}

/// One proxy listener.
#[derive(Debug, Clone, Serialize)]
struct ListenerView {
    addr: String,
    /// `http` or `https`.
    scheme: &'static str,
    /// Cleartext HTTP/2 (prior knowledge) accepted.
    h2c: bool,
    /// The pool it serves; `null` when routes decide.
    pool: Option<String>,
}

/// The admin listener's own settings.
#[derive(Debug, Clone, Serialize)]
struct AdminView {
    addr: String,
    /// Whether a token is configured: without one, mutations are off.
    mutations: bool,
    allow_remote: bool,
}

/// The sampling behind `requests_per_second` and its history (see [`rates`]).
#[derive(Debug, Clone, Serialize)]
struct RatesView {
    sample_seconds: u64,
    window_seconds: u64,
    history_step_seconds: u64,
    history_seconds: u64,
}

/// The body of `/api/status`.
#[derive(Serialize)]
pub(super) struct StatusView<'a> {
    version: &'static str,
    started_unix_ms: u64,
    uptime_seconds: u64,
    /// `false` once this process is handing over or shutting down (`/readyz` 503).
    ready: bool,
    listeners: &'a [ListenerView],
    /// Configured routes (0: each listener serves its own pool).
    routes: usize,
    admin: &'a AdminView,
    rates: RatesView,
}

impl Status {
    /// The status of a process starting now with `config` (which has an admin listener).
    pub(super) fn new(config: &Config, admin: &crate::config::AdminConfig) -> Self {
        let pool_name = |index: usize| config.pools.get(index).map(|p| p.name.clone());
        // With routes, a listener's requests go where the routes say, not to its own pool.
        let routed = !config.routes.is_empty();
        Status {
            started: Instant::now(),
            started_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            listeners: config
                .listeners
                .iter()
                .map(|l| ListenerView {
                    addr: l.addr.to_string(),
                    scheme: if l.tls.is_some() { "https" } else { "http" },
                    h2c: l.h2c,
                    pool: if routed { None } else { pool_name(l.pool) },
                })
                .collect(),
            routes: config.routes.len(),
            admin: AdminView {
                addr: admin.addr.to_string(),
                mutations: admin.token.is_some(),
                allow_remote: admin.allow_remote,
            },
        }
    }

    /// The view, with `ready` as `/readyz` would answer now.
    pub(super) fn view(&self, ready: bool) -> StatusView<'_> {
        StatusView {
            version: env!("CARGO_PKG_VERSION"),
            started_unix_ms: self.started_unix_ms,
            uptime_seconds: self.started.elapsed().as_secs(),
            ready,
            listeners: &self.listeners,
            routes: self.routes,
            admin: &self.admin,
            rates: RatesView {
                sample_seconds: rates::SAMPLE_INTERVAL.as_secs(),
                window_seconds: rates::WINDOW.as_secs(),
                history_step_seconds: rates::STEP.as_secs(),
                history_seconds: rates::HISTORY.as_secs(),
            },
        }
    }
}
