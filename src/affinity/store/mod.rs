//! The shared session store: learned sessions kept in Redis, so that every proxy instance — and
//! the next process after a restart or a graceful upgrade — follows a session learned by any of
//! them (Stingray's replicated table, HAProxy `peers`, NGINX Plus `zone_sync`).
//!
//! The in-process [`SessionTable`] stays in front as a cache: a hit costs no round-trip. On a
//! miss the request asks Redis (`GETEX`, which also refreshes the TTL) and waits at most
//! `lookup_timeout`. Writes never wait: they go through a bounded queue to one writer task
//! ([`service`]), and are dropped and counted when the queue is full or Redis is down.
//!
//! | Redis | what it holds |
//! |---|---|
//! | key | `<key_prefix><pool>:<table>:<32 hex digits>`: the table's 128-bit XXH3 key of the id, never the id itself |
//! | value | `<created unix seconds> <backend name>`: the backend by its configured name, stable across instances and restarts |
//! | TTL | the table's idle timeout, refreshed by use at most once per `refresh_interval` per entry |
//!
//! A value naming a backend this instance does not have, or past the table's absolute lifetime,
//! is a miss. Failures (errors, timeouts) mark the store down after [`FAILURES_TO_DOWN`] in a
//! row (requests, writes, or the background service's heartbeat PING every second); while
//! down, requests use the local table alone and the writer drops its work; the background
//! service probes Redis every second and marks it up again once it answers within the lookup
//! timeout. Each change of state is
//! logged once.

pub mod service;

use super::sessions::{SessionKey, SessionTable};
use crate::config::RedisStoreConfig;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use service::StoreService;

/// Consecutive failed requests to Redis that mark the store down.
pub const FAILURES_TO_DOWN: u32 = 3;

/// One write for the writer task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A backend handed out this session (or it moved): overwrite.
    Set { key: SessionKey, backend: usize },
    /// An id nobody had recorded was served here: record it unless another instance did.
    SetIfAbsent { key: SessionKey, backend: usize },
    /// The session is in use: restart its TTL (and restore it if Redis lost it).
    Refresh { key: SessionKey, backend: usize },
    /// The session ended (its cookie was cleared or expired).
    Delete { key: SessionKey },
}

/// The store's state, as logged and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not connected yet (at start-up).
    Starting = 0,
    Up = 1,
    Down = 2,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Up,
            2 => State::Down,
            _ => State::Starting,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

/// Up/down bookkeeping: consecutive failures, and state changes reported exactly once.
#[derive(Debug, Default)]
pub struct Health {
    state: AtomicU8,
    failures: AtomicU32,
}

impl Health {
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Relaxed))
    }

    pub fn is_up(&self) -> bool {
        self.state() == State::Up
    }

    /// A request succeeded.
    pub fn success(&self) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
    }

    /// A request failed; returns `true` for the one failure that took the store down.
    pub fn failure(&self) -> bool {
        let failures = self.failures.fetch_add(1, Relaxed) + 1;
        failures >= FAILURES_TO_DOWN && self.set(State::Down, State::Up)
    }

    /// A probe answered in time; returns the previous state if this changed it.
    pub fn probe_succeeded(&self) -> Option<State> {
        self.failures.store(0, Relaxed);
        let before = self.state();
        (before != State::Up && self.set(State::Up, before)).then_some(before)
    }

    /// A probe failed; returns `true` if this took the store down (it was starting).
    pub fn probe_failed(&self) -> bool {
        self.set(State::Down, State::Starting)
    }

    fn set(&self, to: State, from: State) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Relaxed, Relaxed)
            .is_ok()
    }
}

#[derive(Debug, Default)]
struct Counters {
    lookup_hits: AtomicU64,
    lookup_misses: AtomicU64,
    lookup_failures: AtomicU64,
    lookups_skipped: AtomicU64,
    writes_sent: AtomicU64,
    writes_dropped: AtomicU64,
    writes_failed: AtomicU64,
}

/// What the admin API and the metrics show of a store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub address: String,
    pub key_prefix: String,
    pub up: bool,
    pub state: &'static str,
    /// Local misses answered by Redis.
    pub lookup_hits: u64,
    /// Local misses Redis did not know either.
    pub lookup_misses: u64,
    /// Lookups that failed or timed out (the request was balanced without Redis).
    pub lookup_failures: u64,
    /// Local misses not asked while the store was down.
    pub lookups_skipped: u64,
    pub writes_sent: u64,
    /// Writes dropped: the queue was full, or the store was down.
    pub writes_dropped: u64,
    /// Writes sent in a batch that failed or timed out.
    pub writes_failed: u64,
}

/// A learned-session table's Redis store.
pub struct RedisStore {
    pub(crate) config: RedisStoreConfig,
    /// `<prefix><pool>:<table>:`
    key_base: String,
    /// Backend names by index.
    names: Vec<String>,
    ttl_seconds: u64,
    max_lifetime: Option<Duration>,
    /// The local table the store backs (the writer updates it when Redis knows better).
    pub(crate) table: Arc<SessionTable>,
    /// Created by the background service (never by `-t`).
    pub(crate) connection: OnceLock<redis::aio::ConnectionManager>,
    pub(crate) health: Health,
    counters: Counters,
    sender: tokio::sync::mpsc::Sender<Op>,
    pub(crate) receiver: Mutex<Option<tokio::sync::mpsc::Receiver<Op>>>,
    /// `pool web, table learn` — for log lines.
    pub(crate) label: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.config)
            .field("key_base", &self.key_base)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store for `table` (named `table_name` on pool `pool`, whose backends are `names`).
    /// Connects nothing: the [`StoreService`] does, once the server runs.
    pub fn new(
        config: RedisStoreConfig,
        pool: &str,
        table_name: &str,
        names: Vec<String>,
        table: Arc<SessionTable>,
        idle_timeout: Duration,
        max_lifetime: Option<Duration>,
    ) -> Self {
        let (sender, receiver) = tokio::sync::mpsc::channel(config.write_queue);
        RedisStore {
            key_base: format!("{}{pool}:{table_name}:", config.key_prefix),
            names,
            ttl_seconds: idle_timeout.as_secs().max(1),
            max_lifetime,
            table,
            connection: OnceLock::new(),
            health: Health::default(),
            counters: Counters::default(),
            sender,
            receiver: Mutex::new(Some(receiver)),
            label: format!("pool {pool}, table {table_name}"),
            config,
        }
    }

    /// The Redis key of a table key.
    pub fn redis_key(&self, key: SessionKey) -> String {
        redis_key(&self.key_base, key)
    }

    /// How often an entry's TTL is refreshed at most.
    pub fn refresh_interval(&self) -> Duration {
        self.config.refresh_interval
    }

    /// Ask Redis for a key the local table does not have, waiting at most the lookup timeout.
    /// `None` on a miss, a failure, or while the store is down.
    pub async fn lookup(&self, key: SessionKey) -> Option<usize> {
        let connection = self.connection.get().filter(|_| self.health.is_up());
        let Some(connection) = connection else {
            self.counters.lookups_skipped.fetch_add(1, Relaxed);
            return None;
        };
        let mut connection = connection.clone();
        let mut command = redis::cmd("GETEX");
        command
            .arg(self.redis_key(key))
            .arg("EX")
            .arg(self.ttl_seconds);
        let deadline = tokio::time::Instant::now() + self.config.lookup_timeout;
        let mut retried = false;
        let answer = loop {
            let answer = tokio::time::timeout_at(
                deadline,
                command.query_async::<Option<String>>(&mut connection),
            )
            .await;
            match answer {
                // The connection broke (Redis restarted): the manager reconnects; try once more
                // within the same deadline.
                Ok(Err(e)) if !retried && is_broken_connection(&e) => retried = true,
                answer => break answer,
            }
        };
        match answer {
            Ok(Ok(value)) => {
                self.health.success();
                let found = value.and_then(|v| self.decode(&v));
                let counter = if found.is_some() {
                    &self.counters.lookup_hits
                } else {
                    &self.counters.lookup_misses
                };
                counter.fetch_add(1, Relaxed);
                found
            }
            Ok(Err(e)) => {
                self.failed("lookup", &e.to_string());
                None
            }
            Err(_) => {
                self.failed("lookup", "timed out");
                None
            }
        }
    }

    /// Count a failed request; log once if it took the store down.
    pub(crate) fn failed(&self, what: &str, error: &str) {
        if what == "lookup" {
            self.counters.lookup_failures.fetch_add(1, Relaxed);
        }
        if self.health.failure() {
            log::warn!(
                "session store redis {} ({}): down after {FAILURES_TO_DOWN} failed requests \
                 (last: {what}: {error}); using the local table alone until it answers again",
                self.config.address(),
                self.label
            );
        }
    }

    /// Queue a write for the writer task; dropped (and counted) when the queue is full or the
    /// store is down. Never waits.
    pub fn enqueue(&self, op: Op) {
        if !self.health.is_up() || self.sender.try_send(op).is_err() {
            self.counters.writes_dropped.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn count_writes(&self, sent: usize, failed: usize, dropped: usize) {
        self.counters.writes_sent.fetch_add(sent as u64, Relaxed);
        self.counters
            .writes_failed
            .fetch_add(failed as u64, Relaxed);
        self.counters
            .writes_dropped
            .fetch_add(dropped as u64, Relaxed);
    }

    /// The value written for `backend` (created now).
    pub(crate) fn encode(&self, backend: usize) -> Option<String> {
        let name = self.names.get(backend)?;
        Some(encode_value(unix_now(), name))
    }

    /// The backend a stored value names, if this instance has it and the entry is within the
    /// table's absolute lifetime.
    pub(crate) fn decode(&self, value: &str) -> Option<usize> {
        decode_value(value, &self.names, self.max_lifetime, unix_now())
    }

    pub(crate) fn ttl_seconds(&self) -> u64 {
        self.ttl_seconds
    }

    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        let state = self.health.state();
        StoreStats {
            kind: "redis",
            address: self.config.address(),
            key_prefix: self.key_base.clone(),
            up: state == State::Up,
            state: state.as_str(),
            lookup_hits: c.lookup_hits.load(Relaxed),
            lookup_misses: c.lookup_misses.load(Relaxed),
            lookup_failures: c.lookup_failures.load(Relaxed),
            lookups_skipped: c.lookups_skipped.load(Relaxed),
            writes_sent: c.writes_sent.load(Relaxed),
            writes_dropped: c.writes_dropped.load(Relaxed),
            writes_failed: c.writes_failed.load(Relaxed),
        }
    }
}

/// An error after which the same request may succeed on the reconnected connection.
pub(crate) fn is_broken_connection(e: &redis::RedisError) -> bool {
    e.is_connection_dropped() || e.is_io_error() || e.is_unrecoverable_error()
}

/// `<base><32 hex digits>`.
pub fn redis_key(base: &str, key: SessionKey) -> String {
    format!("{base}{key:032x}")
}

/// `<created unix seconds> <backend name>`.
pub fn encode_value(created_unix: u64, name: &str) -> String {
    format!("{created_unix} {name}")
}

/// The backend index a stored value names; `None` for an unknown name, a malformed value, or
/// an entry older than `max_lifetime`.
pub fn decode_value(
    value: &str,
    names: &[String],
    max_lifetime: Option<Duration>,
    now_unix: u64,
) -> Option<usize> {
    let (created, name) = value.split_once(' ')?;
    let created: u64 = created.parse().ok()?;
    if max_lifetime.is_some_and(|l| now_unix.saturating_sub(created) >= l.as_secs()) {
        return None;
    }
    names.iter().position(|n| n == name)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_the_hash_not_the_id() {
        let key = super::super::sessions::key_of(b"secret-session-id");
        let k = redis_key("sticky:web:learn:", key);
        assert!(k.starts_with("sticky:web:learn:"));
        assert_eq!(k.len(), "sticky:web:learn:".len() + 32);
        assert!(!k.contains("secret"));
    }

    #[test]
    fn values_name_the_backend_and_unknown_or_old_ones_are_misses() {
        let names = vec!["iis1".to_string(), "iis two".to_string()];
        let v = encode_value(1000, "iis two");
        assert_eq!(decode_value(&v, &names, None, 5000), Some(1));
        assert_eq!(decode_value("1000 iis1", &names, None, 1000), Some(0));
        assert_eq!(decode_value("1000 iis9", &names, None, 1000), None);
        assert_eq!(decode_value("iis1", &names, None, 1000), None);
        assert_eq!(decode_value("x iis1", &names, None, 1000), None);
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(
            decode_value("1000 iis1", &names, day, 1000 + 86_399),
            Some(0)
        );
        assert_eq!(decode_value("1000 iis1", &names, day, 1000 + 86_400), None);
    }

    #[test]
    fn the_store_goes_down_after_failures_in_a_row_and_each_change_is_reported_once() {
        let h = Health::default();
        assert_eq!(h.state(), State::Starting);
        assert_eq!(h.probe_succeeded(), Some(State::Starting));
        assert!(h.is_up());
        assert_eq!(h.probe_succeeded(), None);
        assert!(!h.failure());
        h.success();
        assert!(!h.failure());
        assert!(!h.failure());
        assert!(h.failure(), "the third failure in a row");
        assert!(!h.failure(), "reported once");
        assert_eq!(h.state(), State::Down);
        assert!(!h.probe_failed(), "already down");
        assert_eq!(h.probe_succeeded(), Some(State::Down));
        assert!(h.is_up());
    }

    #[test]
    fn a_store_unreachable_at_start_is_reported_down_once() {
        let h = Health::default();
        assert!(h.probe_failed());
        assert!(!h.probe_failed());
        assert_eq!(h.state(), State::Down);
    }
}
