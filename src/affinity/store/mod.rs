//! The shared session store: learned sessions kept in Redis, so that every proxy instance — and
//! the next process after a restart or a graceful upgrade — follows a session learned by any of
//! them (Stingray's replicated table, HAProxy `peers`, NGINX Plus `zone_sync`).
//!
//! The in-process [`SessionTable`] stays in front as a cache: a hit costs no round-trip. On a
//! miss the request asks Redis (`GETEX`, which also refreshes the TTL) and waits at most
//! `lookup_timeout`. Writes never wait: they go through a bounded queue to one writer task
//! ([`writer`]), and are dropped and counted when the queue is full or Redis is down.
//!
//! | Redis | what it holds |
//! |---|---|
//! | key | `<key_prefix><pool>:<table>:<32 hex digits>`: the table's 128-bit XXH3 key of the id, never the id itself ([`codec`]) |
//! | value | `<created unix seconds> <backend name>`: the backend by its configured name, stable across instances and restarts |
//! | TTL | the table's idle timeout, refreshed by use at most once per `refresh_interval` per entry |
//!
//! Where Redis is (`mode`): one server; the primary Redis Sentinel names, asked again when it
//! fails or is demoted ([`sentinel`]); or a Redis Cluster, keys spread over its slots
//! ([`cluster`], [`nodes`]). Connections and discovery are the `redis` crate's ([`connection`]).
//!
//! A value naming a backend this instance does not have, or past the table's absolute lifetime,
//! is a miss. Failures (errors, timeouts) mark the store down after [`FAILURES_TO_DOWN`] in a
//! row (requests, writes, or the background service's heartbeat every second); while down,
//! requests use the local table alone and the writer drops its work; the background service
//! probes Redis every second and marks it up again once it answers within the lookup timeout.
//! In a cluster this holds per primary: a primary that is down costs the sessions in its
//! slots, the others stay shared. Each change of state is logged once ([`health`]).

pub mod cluster;
pub mod codec;
pub mod connection;
pub mod health;
pub mod nodes;
pub mod sentinel;
pub mod service;
pub mod writer;

use super::sessions::{SessionKey, SessionTable};
use crate::config::RedisStoreConfig;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use codec::{decode_value, encode_value, redis_key};
pub use health::{Health, State, FAILURES_TO_DOWN};
pub use service::StoreService;

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
    /// `standalone`, `sentinel` or `cluster`.
    pub mode: &'static str,
    /// Where Redis is, as configured (see [`RedisStoreConfig::address`]).
    pub address: String,
    /// Sentinel: the primary they named last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Cluster: each primary with its state.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeStats>,
    pub key_prefix: String,
    /// Every request can be shared (in a cluster: every primary is up).
    pub up: bool,
    /// `starting`, `up`, `down`, or (cluster) `partial`: some primaries are down.
    pub state: &'static str,
    /// Local misses answered by Redis.
    pub lookup_hits: u64,
    /// Local misses Redis did not know either.
    pub lookup_misses: u64,
    /// Lookups that failed or timed out (the request was balanced without Redis).
    pub lookup_failures: u64,
    /// Local misses not asked while the store (or the key's primary) was down.
    pub lookups_skipped: u64,
    pub writes_sent: u64,
    /// Writes dropped: the queue was full, or the store (or the key's primary) was down.
    pub writes_dropped: u64,
    /// Writes sent in a batch that failed or timed out.
    pub writes_failed: u64,
}

/// One cluster primary in [`StoreStats`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStats {
    pub address: String,
    pub slots: usize,
    pub state: &'static str,
}

/// Whose health a request counts on: the store's, or in a cluster the primary owning the
/// key's slot.
#[derive(Debug, Clone)]
pub enum Target {
    Store,
    Node(Arc<cluster::Node>),
}

/// A learned-session table's Redis store.
pub struct RedisStore {
    pub(crate) config: RedisStoreConfig,
    /// `<prefix><pool>:<table>:`
    key_base: String,
    /// Backend names by index (removed ones included); replaced when the pool's backends change.
    names: arc_swap::ArcSwap<Vec<String>>,
    ttl_seconds: u64,
    max_lifetime: Option<Duration>,
    /// The local table the store backs (the writer updates it when Redis knows better).
    pub(crate) table: Arc<SessionTable>,
    /// Set by the background service (never by `-t`).
    pub(crate) connection: connection::Current,
    /// Cluster mode: which primary serves which slot, and each one's health.
    pub(crate) cluster: Option<cluster::ClusterView>,
    /// The store's state (in a cluster: connected or not; the primaries have their own).
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
        let cluster = matches!(
            config.topology,
            crate::config::RedisTopology::Cluster { .. }
        )
        .then(cluster::ClusterView::default);
        RedisStore {
            key_base: format!("{}{pool}:{table_name}:", config.key_prefix),
            names: arc_swap::ArcSwap::from_pointee(names),
            ttl_seconds: idle_timeout.as_secs().max(1),
            max_lifetime,
            table,
            connection: connection::Current::default(),
            cluster,
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

    /// Where a request for `redis_key` counts, if it may be sent at all: not while the
    /// store is not up, nor (cluster) while the primary of the key's slot is not up.
    pub(crate) fn target(&self, redis_key: &str) -> Option<Target> {
        if !self.health.is_up() {
            return None;
        }
        let Some(view) = &self.cluster else {
            return Some(Target::Store);
        };
        let topology = view.get();
        let node = topology.owner(cluster::slot_of(redis_key.as_bytes()))?;
        node.health.is_up().then(|| Target::Node(Arc::clone(node)))
    }

    fn health_of<'a>(&'a self, target: &'a Target) -> &'a Health {
        match target {
            Target::Store => &self.health,
            Target::Node(node) => &node.health,
        }
    }

    /// Ask Redis for a key the local table does not have, waiting at most the lookup timeout.
    /// `None` on a miss, a failure, or while the store (or the key's primary) is down.
    pub async fn lookup(&self, key: SessionKey) -> Option<usize> {
        let redis_key = self.redis_key(key);
        let target = self.target(&redis_key);
        let (Some(target), Some(mut connection)) = (target, self.connection.get()) else {
            self.counters.lookups_skipped.fetch_add(1, Relaxed);
            return None;
        };
        let mut command = redis::cmd("GETEX");
        command.arg(redis_key).arg("EX").arg(self.ttl_seconds);
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
                Ok(Err(e)) if !retried && connection::is_broken_connection(&e) => retried = true,
                answer => break answer,
            }
        };
        match answer {
            Ok(Ok(value)) => {
                self.succeeded(&target);
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
                self.failed_at(&target, "lookup", &e.to_string());
                None
            }
            Err(_) => {
                self.failed_at(&target, "lookup", "timed out");
                None
            }
        }
    }

    /// A request to `target` succeeded.
    pub(crate) fn succeeded(&self, target: &Target) {
        self.health_of(target).success();
    }

    /// Count a failed request of the store itself; log once if it took the store down.
    pub(crate) fn failed(&self, what: &str, error: &str) {
        self.failed_at(&Target::Store, what, error);
    }

    /// Count a failed request to `target`; log once if it took the store (or the primary)
    /// down.
    pub(crate) fn failed_at(&self, target: &Target, what: &str, error: &str) {
        if what == "lookup" {
            self.counters.lookup_failures.fetch_add(1, Relaxed);
        }
        match target {
            Target::Node(node) => self.node_failed(node, what, error),
            Target::Store => {
                if self.health.failure() {
                    log::warn!(
                        "session store redis {} ({}): down after {FAILURES_TO_DOWN} failed \
                         requests (last: {what}: {error}); using the local table alone until \
                         it answers again",
                        self.config.address(),
                        self.label
                    );
                }
            }
        }
    }

    /// Count a failed request to a cluster primary; log once if it took the primary down.
    pub(crate) fn node_failed(&self, node: &cluster::Node, what: &str, error: &str) {
        if node.health.failure() {
            log::warn!(
                "session store redis {} ({}): primary {} ({} slots) down after \
                 {FAILURES_TO_DOWN} failed requests (last: {what}: {error}); the sessions in \
                 its slots use the local table alone until it answers again",
                self.config.address(),
                self.label,
                node.address,
                node.slots
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
        for (counter, n) in [
            (&self.counters.writes_sent, sent),
            (&self.counters.writes_failed, failed),
            (&self.counters.writes_dropped, dropped),
        ] {
            if n > 0 {
                counter.fetch_add(n as u64, Relaxed);
            }
        }
    }

    /// The value written for `backend` (created now).
    pub(crate) fn encode(&self, backend: usize) -> Option<String> {
        let names = self.names.load();
        let name = names.get(backend)?;
        Some(encode_value(codec::unix_now(), name))
    }

    /// The backend a stored value names, if this instance has it and the entry is within the
    /// table's absolute lifetime.
    pub(crate) fn decode(&self, value: &str) -> Option<usize> {
        decode_value(
            value,
            &self.names.load(),
            self.max_lifetime,
            codec::unix_now(),
        )
    }

    /// The pool's backends changed at run time: `names` by index, removed ones included.
    pub(crate) fn backends_changed(&self, names: Vec<String>) {
        self.names.store(Arc::new(names));
    }

    pub(crate) fn ttl_seconds(&self) -> u64 {
        self.ttl_seconds
    }

    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        let nodes: Vec<NodeStats> = self
            .cluster
            .as_ref()
            .map(|view| {
                let topology = view.get();
                let nodes = topology.nodes().iter();
                nodes
                    .map(|n| NodeStats {
                        address: n.address.clone(),
                        slots: n.slots,
                        state: n.health.state().as_str(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let state = overall_state(
            self.health.state(),
            self.cluster.is_some(),
            nodes.iter().map(|n| n.state == State::Up.as_str()),
        );
        StoreStats {
            kind: "redis",
            mode: self.config.mode(),
            address: self.config.address(),
            primary: self.connection.primary(),
            nodes,
            key_prefix: self.key_base.clone(),
            up: state == State::Up.as_str(),
            state,
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

/// The state shown for a store: its own, or for a connected cluster `up` (every primary up),
/// `down` (none) or `partial`.
pub fn overall_state(
    store: State,
    cluster: bool,
    nodes_up: impl Iterator<Item = bool>,
) -> &'static str {
    if !cluster || store != State::Up {
        return store.as_str();
    }
    let (mut up, mut all) = (0, 0);
    for node_up in nodes_up {
        all += 1;
        up += usize::from(node_up);
    }
    match up {
        0 => State::Down.as_str(),
        _ if up == all => State::Up.as_str(),
        _ => "partial",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_up_when_every_primary_is_and_partial_when_some_are() {
        let shown = |store, nodes: &[bool]| overall_state(store, true, nodes.iter().copied());
        assert_eq!(shown(State::Up, &[true, true, true]), "up");
        assert_eq!(shown(State::Up, &[true, false, true]), "partial");
        assert_eq!(shown(State::Up, &[false, false]), "down");
        assert_eq!(shown(State::Up, &[]), "down", "no primary known");
        assert_eq!(shown(State::Down, &[true]), "down", "not connected");
        assert_eq!(shown(State::Starting, &[]), "starting");
        assert_eq!(overall_state(State::Down, false, [].into_iter()), "down");
        assert_eq!(overall_state(State::Up, false, [].into_iter()), "up");
    }
}
