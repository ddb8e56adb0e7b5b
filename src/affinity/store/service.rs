//! The background side of a Redis session store, run by Pingora as a background service (so
//! `-t` never connects): it creates the connection, checks Redis every second (a heartbeat
//! while up, a probe that can bring it back while down), and runs the one writer task
//! ([`super::writer`]). How it checks depends on the mode: one server is pinged; with Sentinel
//! the sentinels are asked first ([`super::sentinel`]); a cluster's primaries are each
//! pinged ([`super::cluster`]).

use super::cluster;
use super::connection::{self, Connection};
use super::sentinel::Discovery;
use super::{RedisStore, State};
use crate::config::RedisTopology;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// How often a store is checked (heartbeat while up, probe while not).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps one store connected and writes its queue.
pub struct StoreService(pub Arc<RedisStore>);

/// What the service keeps between ticks, by mode.
enum Link {
    /// The connection manager is made once and reconnects by itself.
    Standalone,
    Sentinel(Discovery),
    Cluster(super::nodes::Checker),
}

impl Link {
    fn new(store: &RedisStore) -> redis::RedisResult<Link> {
        let c = &store.config;
        Ok(match &c.topology {
            RedisTopology::Standalone(at) => {
                let client = connection::standalone_client(c, at)?;
                store.connection.set(connection::manager(c, client)?, None);
                Link::Standalone
            }
            RedisTopology::Sentinel { .. } => Link::Sentinel(Discovery::new(c)?),
            RedisTopology::Cluster { nodes } => {
                Link::Cluster(super::nodes::Checker::new(cluster::client(c, nodes)?))
            }
        })
    }

    async fn tick(&mut self, store: &Arc<RedisStore>) {
        match self {
            Link::Standalone if store.health.is_up() => heartbeat(store).await,
            Link::Standalone => probe(store).await,
            Link::Sentinel(discovery) => discovery.tick(store).await,
            Link::Cluster(checker) => super::nodes::tick(store, checker).await,
        }
    }
}

#[async_trait]
impl BackgroundService for StoreService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let store = &self.0;
        let mut link = match Link::new(store) {
            Ok(link) => link,
            Err(e) => {
                log::error!(
                    "session store redis {} ({}): cannot be set up: {e}; using the local table alone",
                    store.config.address(),
                    store.label
                );
                return;
            }
        };
        let receiver = store
            .receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let writer = receiver.map(|r| tokio::spawn(super::writer::write_loop(store.clone(), r)));
        loop {
            link.tick(store).await;
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            }
        }
        if let Some(writer) = writer {
            writer.abort();
        }
    }
}

/// `PING` within `timeout`.
pub(super) async fn ping(mut connection: Connection, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(
        timeout,
        redis::cmd("PING").query_async::<String>(&mut connection),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

/// While up: one PING within the lookup timeout, counted like a request, so that a Redis that
/// went away is noticed (and shown) even when no request needs it.
async fn heartbeat(store: &RedisStore) {
    let Some(connection) = store.connection.get() else {
        return;
    };
    match ping(connection, store.config.lookup_timeout).await {
        Ok(()) => store.health.success(),
        Err(e) => store.failed("heartbeat", &e),
    }
}

/// PING once to (re)connect, then once more within the lookup timeout: a Redis that answers
/// but slower than requests may wait is not up.
pub(super) async fn probe(store: &RedisStore) {
    let Some(connection) = store.connection.get() else {
        return;
    };
    let result = match ping(connection.clone(), store.config.connect_timeout).await {
        Ok(()) => ping(connection, store.config.lookup_timeout).await,
        Err(e) => Err(e),
    };
    report_probe(store, result);
}

/// Log a probe's outcome if it changed the store's state (once per change).
pub(super) fn report_probe(store: &RedisStore, result: Result<(), String>) {
    let address = store.config.address();
    let primary = store
        .connection
        .primary()
        .map(|p| format!(" (primary {p})"))
        .unwrap_or_default();
    match result {
        Ok(()) => match store.health.probe_succeeded() {
            Some(State::Starting) => {
                log::info!(
                    "session store redis {address} ({}): connected{primary}",
                    store.label
                )
            }
            Some(_) => log::warn!(
                "session store redis {address} ({}): up again{primary}; sessions are shared again",
                store.label
            ),
            None => {}
        },
        Err(e) => {
            if store.health.probe_failed() {
                log::warn!(
                    "session store redis {address} ({}): down at start ({e}); using the local \
                     table alone until it answers",
                    store.label
                );
            }
        }
    }
}
