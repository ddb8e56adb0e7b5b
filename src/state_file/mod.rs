//! The state file (`sticky.state_file`, HAProxy `server-state-file` with
//! `load-server-state-from-file`): backend states set through the admin API survive a restart
//! and a graceful upgrade.
//!
//! - **Writing.** Every state change through the admin API wakes [`StateFileWriter`], a
//!   background service that writes the whole file atomically ([`format::write_atomically`])
//!   off the request path. Changes that come faster than writes are coalesced: each write takes
//!   the states as they are then. A failed write is a `warn` naming the file and counted
//!   (`sticky_state_file_writes_total{result="failed"}`); the state change itself stands.
//! - **What is written.** Every backend whose state differs from the one its configuration
//!   gives it (`backends[].state`, default `active`): the file holds the operator's run-time
//!   overrides, so a state edited in the configuration later still applies to backends the API
//!   never changed (HAProxy too keeps apart a maintenance set in its configuration and one forced
//!   at run time). Backends added through the API are written with their address and weight,
//!   configured ones removed through it as `removed`; backends DNS discovery found are not
//!   written (discovery finds them again).
//! - **Reading** ([`StateFile::restore`]), once at start, after the listening sockets are in
//!   hand (for `-u`: once the old process handed them over) and before anything is served: each
//!   entry's state replaces the configured one of the backend of that pool and name; added and
//!   removed backends are handed back ([`Restored::changes`]) for the caller to apply through
//!   `membership`, which this layer cannot reach. Entries naming pools or backends this
//!   configuration does not have (and no address to add them with) are ignored with one `warn`
//!   naming them; a missing file is an `info`; an unreadable or corrupt file (not JSON, another
//!   version) is one `warn` naming the file, and the configured states stay. Never a failed start.

pub mod format;

use crate::config::{BackendConfig, BackendState, Config};
use crate::pool::{NewBackend, Origin, Pool};
use async_trait::async_trait;
use format::{BackendEntry, Document};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_prometheus::prometheus::IntCounter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The counters of writes: done, failed.
pub struct WriteCounters {
    pub written: IntCounter,
    pub failed: IntCounter,
}

/// The state file of a process: where it is, the pools whose states it keeps.
pub struct StateFile {
    path: PathBuf,
    pools: Vec<Arc<Pool>>,
    /// Per pool, its configured backends (the first slots of its list, in this order).
    configured: Vec<Vec<BackendConfig>>,
    changed: tokio::sync::Notify,
    counters: WriteCounters,
}

/// What [`StateFile::restore`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// `pool/backend state` of each backend whose state the file set.
    pub applied: Vec<String>,
    /// `pool` or `pool/backend` of each entry this configuration has no place for.
    pub stale: Vec<String>,
    /// Why the file could not be used (it was there).
    pub unusable: Option<String>,
    /// Backends the API added or removed, for the caller to apply (in the file's order).
    pub changes: Vec<Change>,
}

/// A backend added or removed through the admin API, found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add it (or move it: a backend of that name at another address is replaced).
    Add {
        pool: String,
        backend: NewBackendEntry,
    },
    /// Remove the backend of that name.
    Remove { pool: String, name: String },
}

/// A backend to add, as the file gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBackendEntry {
    pub name: String,
    pub addr: std::net::SocketAddr,
    pub weight: u32,
    pub state: BackendState,
}

impl NewBackendEntry {
    /// The backend to add through the pool.
    pub fn backend(&self) -> NewBackend {
        NewBackend {
            name: self.name.clone(),
            addr: self.addr,
            weight: self.weight,
            state: self.state,
            origin: Origin::Api,
        }
    }
}

impl StateFile {
    /// The state file at `path` for `config`'s pools (`pools`, in the configuration's order).
    pub fn new(
        path: &Path,
        config: &Config,
        pools: Vec<Arc<Pool>>,
        counters: WriteCounters,
    ) -> Arc<StateFile> {
        Arc::new(StateFile {
            path: path.to_path_buf(),
            configured: config.pools.iter().map(|p| p.backends.clone()).collect(),
            pools,
            changed: tokio::sync::Notify::new(),
            counters,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Say that a backend's state changed: the writer writes the file soon after (never on the
    /// caller's task).
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// The background service that writes the file after each change.
    pub fn writer(self: &Arc<Self>) -> StateFileWriter {
        StateFileWriter(self.clone())
    }

    /// Read the file and apply its states to the backends that exist, logging what it did (see
    /// the module's documentation). Call once, before the listeners serve.
    pub fn restore(&self) -> Restored {
        let path = self.path.display();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::info!("state file {path}: none yet; the configured backend states apply");
                return Restored::default();
            }
            Err(e) => {
                log::warn!(
                    "state file {path}: cannot be read ({e}); the configured backend states apply"
                );
                return Restored {
                    unusable: Some(e.to_string()),
                    ..Restored::default()
                };
            }
        };
        let document = match format::parse(&text) {
            Ok(document) => document,
            Err(e) => {
                log::warn!(
                    "state file {path}: cannot be used ({e}); the configured backend states apply"
                );
                return Restored {
                    unusable: Some(e),
                    ..Restored::default()
                };
            }
        };
        let restored = self.apply(&document);
        if !restored.stale.is_empty() {
            log::warn!(
                "state file {path}: ignored entries for what this configuration does not have \
                 (stale): {}",
                restored.stale.join(", ")
            );
        }
        if restored.applied.is_empty() {
            log::info!("state file {path}: read; the configured backend states apply");
        } else {
            log::info!(
                "state file {path}: backend states restored over the configured ones: {}",
                restored.applied.join(", ")
            );
        }
        restored
    }

    fn apply(&self, document: &Document) -> Restored {
        let mut restored = Restored::default();
        for (pool_name, entry) in &document.pools {
            let Some(pool) = self.pools.iter().find(|p| &p.name == pool_name) else {
                restored.stale.push(format!("pool {pool_name}"));
                continue;
            };
            let slots = pool.slots();
            for (backend, entry) in &entry.backends {
                let index = pool.backend_index(backend);
                let state = entry.state;
                if entry.removed {
                    match index {
                        Some(_) => restored.changes.push(Change::Remove {
                            pool: pool_name.clone(),
                            name: backend.clone(),
                        }),
                        None => restored.stale.push(format!("{pool_name}/{backend}")),
                    }
                    continue;
                }
                let moved = |i: usize| {
                    entry.addr.is_some_and(|a| a != slots[i].addr)
                        || entry.weight.is_some_and(|w| w != slots[i].weight)
                };
                match (index, entry.addr) {
                    (Some(i), _) if !moved(i) => {
                        slots[i].set_state_at_start(state);
                        restored
                            .applied
                            .push(format!("{pool_name}/{backend} {}", state.as_str()));
                    }
                    (_, Some(addr)) => restored.changes.push(Change::Add {
                        pool: pool_name.clone(),
                        backend: NewBackendEntry {
                            name: backend.clone(),
                            addr,
                            weight: entry.weight.unwrap_or(1),
                            state,
                        },
                    }),
                    _ => restored.stale.push(format!("{pool_name}/{backend}")),
                }
            }
        }
        restored
    }

    /// The document of the states as they are now: every backend whose state is not the
    /// configured one, every backend the API added (with where it is) and every configured one
    /// it removed.
    pub fn snapshot(&self) -> Document {
        let mut document = Document {
            version: format::VERSION,
            ..Document::default()
        };
        for (pool, configured) in self.pools.iter().zip(&self.configured) {
            for (index, slot) in pool.slots().iter().enumerate() {
                let entry = snapshot_entry(slot, configured.get(index));
                if let Some(entry) = entry {
                    document
                        .pools
                        .entry(pool.name.clone())
                        .or_default()
                        .backends
                        .insert(slot.name.clone(), entry);
                }
            }
        }
        document
    }

    /// Write the states as they are now; a failure is logged and counted. Blocking.
    pub fn write_now(&self) -> bool {
        match format::write_atomically(&self.path, &self.snapshot()) {
            Ok(()) => {
                self.counters.written.inc();
                true
            }
            Err(e) => {
                // Logged before it is counted: whoever sees the count finds the line.
                log::warn!(
                    "state file {}: cannot write it ({e}); backend states set since its last \
                     write will not survive a restart",
                    self.path.display()
                );
                self.counters.failed.inc();
                false
            }
        }
    }
}

/// What the file records of one backend slot (`configured`: the configuration's backend at its
/// index, if it is a configured one), if anything.
fn snapshot_entry(
    slot: &crate::pool::BackendSlot,
    configured: Option<&BackendConfig>,
) -> Option<BackendEntry> {
    let state = slot.state();
    let placed = BackendEntry {
        addr: Some(slot.addr),
        weight: Some(slot.weight),
        ..BackendEntry::state(state)
    };
    match configured {
        Some(_) if slot.is_removed() => Some(BackendEntry {
            removed: true,
            ..BackendEntry::state(state)
        }),
        Some(c) if c.addr != slot.addr || c.weight != slot.weight => Some(placed),
        Some(c) => (state != c.state).then(|| BackendEntry::state(state)),
        None => (slot.origin == Origin::Api && !slot.is_removed()).then_some(placed),
    }
}

/// Writes the state file after each change (a background service).
pub struct StateFileWriter(Arc<StateFile>);

#[async_trait]
impl BackgroundService for StateFileWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                // A change made just before the stop is still written.
                biased;
                () = self.0.changed.notified() => {
                    let file = self.0.clone();
                    if let Err(e) = tokio::task::spawn_blocking(move || file.write_now()).await {
                        log::warn!("state file {}: the write stopped: {e}", self.0.path.display());
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
