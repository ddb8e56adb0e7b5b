//! Changing a running pool's backends (HAProxy `add server` / `del server`, the NGINX Plus
//! API): one place that adds or removes a backend and brings everything built on the pool's
//! backend list along — the pool itself ([`crate::pool::members`]), every affinity applied to it
//! (cookie values, hash ring, shared-store names), its metric handles — then wakes the state
//! file. The admin API, DNS discovery and the state file's restore all go through it.
//!
//! Between the pool's new list and its affinities catching up (microseconds), a request may
//! be sent to a new backend without a cookie for it yet (it gets one on its next request) and
//! be counted under backend `-`; nothing else can see a half-made change.

use crate::affinity::registry::Registry;
use crate::metrics::{Metrics, PoolMetrics};
use crate::pool::{ChangeError, Changed, NewBackend, Origin, Pool};
use crate::state_file::{Change, StateFile};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

/// Adds and removes backends of the running pools.
pub struct Membership {
    pools: Vec<Arc<Pool>>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    pool_metrics: Vec<Arc<PoolMetrics>>,
    /// Set once the state file exists (it is built after the pools).
    state_file: OnceLock<Arc<StateFile>>,
    /// Held through a change and its catching up, so that what is built on a pool's list is
    /// always built from the newest one (two changes never interleave). Never taken by a
    /// request.
    changing: Mutex<()>,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipError {
    /// No pool of that name.
    UnknownPool(String),
    /// The pool refused it.
    Refused(ChangeError),
}

impl std::fmt::Display for MembershipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MembershipError::UnknownPool(name) => write!(f, "no pool named {name:?}"),
            MembershipError::Refused(e) => e.fmt(f),
        }
    }
}

impl Membership {
    /// For `pools` (in configuration order), their affinities and metric handles.
    pub fn new(
        pools: Vec<Arc<Pool>>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        pool_metrics: Vec<Arc<PoolMetrics>>,
    ) -> Arc<Membership> {
        Arc::new(Membership {
            pools,
            registry,
            metrics,
            pool_metrics,
            state_file: OnceLock::new(),
            changing: Mutex::new(()),
        })
    }

    /// Write changes to `state_file` from now on.
    pub fn keep_in(&self, state_file: Arc<StateFile>) {
        let _ = self.state_file.set(state_file);
    }

    /// A backend's state changed (admin API): the state file is written soon after.
    pub fn state_changed(&self) {
        if let Some(state_file) = self.state_file.get() {
            state_file.changed();
        }
    }

    fn pool(&self, name: &str) -> Result<usize, MembershipError> {
        self.pools
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| MembershipError::UnknownPool(name.to_string()))
    }

    /// Add `backend` to pool `pool` ([`Pool::add`]); `at_start`: restored before serving (no
    /// slow start, nothing written).
    pub fn add(
        &self,
        pool: &str,
        backend: &NewBackend,
        at_start: bool,
    ) -> Result<Changed, MembershipError> {
        let index = self.pool(pool)?;
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let changed = self.pools[index]
            .add(backend, at_start)
            .map_err(MembershipError::Refused)?;
        self.caught_up(index);
        log::warn!(
            "{}: backend {} ({}) added to pool {pool}{}",
            origin_name(backend.origin),
            backend.name,
            backend.addr,
            if changed.returned {
                ": back under its old name, its sessions pin to it again"
            } else {
                ""
            }
        );
        Ok(changed)
    }

    /// Remove the backend `name` of pool `pool` ([`Pool::remove`]): its pinned sessions move on
    /// by their failure policy (a new cookie with `rebalance`); with `close_upgraded` its
    /// upgraded (WebSocket) connections are closed too. The number closed.
    pub fn remove(
        &self,
        pool: &str,
        name: &str,
        close_upgraded: bool,
        origin: Origin,
    ) -> Result<usize, MembershipError> {
        let index = self.pool(pool)?;
        let pool_ref = &self.pools[index];
        let backend = {
            let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
            let backend = pool_ref.remove(name).map_err(MembershipError::Refused)?;
            self.caught_up(index);
            backend
        };
        let closed = if close_upgraded {
            pool_ref.upgraded.close_backend(backend)
        } else {
            0
        };
        log::warn!(
            "{}: backend {name} removed from pool {pool} (its sessions move on by their failure \
             policy; {closed} upgraded connections closed)",
            origin_name(origin)
        );
        Ok(closed)
    }

    /// Make pool `pool`'s backends those at `addrs` among the ones DNS discovery added (named
    /// after their addresses, `weight` each): new ones are added (in their slow start), gone
    /// ones removed; configured and API-added backends are left alone.
    pub fn replace_discovered(&self, pool: &str, addrs: &[SocketAddr], weight: u32) {
        let Ok(index) = self.pool(pool) else {
            return;
        };
        let slots = self.pools[index].slots();
        let discovered: Vec<&str> = slots
            .iter()
            .filter(|s| s.origin == Origin::Discovery && !s.is_removed())
            .map(|s| s.name.as_str())
            .collect();
        for gone in discovered
            .iter()
            .filter(|name| !addrs.iter().any(|a| a.to_string() == **name))
        {
            if let Err(e) = self.remove(pool, gone, false, Origin::Discovery) {
                log::warn!("DNS discovery: pool {pool}: cannot remove {gone}: {e}");
            }
        }
        for addr in addrs {
            let name = addr.to_string();
            if discovered.contains(&name.as_str()) {
                continue;
            }
            let backend = NewBackend {
                name,
                addr: *addr,
                weight,
                state: crate::config::BackendState::Active,
                origin: Origin::Discovery,
            };
            if let Err(e) = self.add(pool, &backend, false) {
                log::warn!("DNS discovery: pool {pool}: cannot add {addr}: {e}");
            }
        }
    }

    /// Apply the backends the state file says the API added or removed (at start, before
    /// anything is served: no slow start): every removal first (a removed backend and one that
    /// moved to another address), then every addition, so that an addition never clashes with
    /// the address or name of a backend the file also removes, whatever the entries' order. A
    /// change that cannot be made is a `warn`.
    pub fn restore(&self, changes: &[Change]) {
        let mut removals: Vec<(&str, &str)> = Vec::new();
        for change in changes {
            match change {
                Change::Remove { pool, name } => removals.push((pool, name)),
                Change::Add { pool, backend } => {
                    // A backend of that name elsewhere (moved through the API) is replaced.
                    let present = self
                        .pool(pool)
                        .ok()
                        .and_then(|i| self.pools[i].backend_index(&backend.name));
                    if present.is_some() {
                        removals.push((pool, &backend.name));
                    }
                }
            }
        }
        for (pool, name) in removals {
            if let Err(e) = self.remove(pool, name, false, Origin::Api) {
                log::warn!("state file: cannot restore the removal of {pool}/{name}: {e}");
            }
        }
        for change in changes {
            if let Change::Add { pool, backend } = change {
                if let Err(e) = self.add(pool, &backend.backend(), true) {
                    log::warn!(
                        "state file: cannot restore {pool}/{} at {}: {e}",
                        backend.name,
                        backend.addr
                    );
                }
            }
        }
    }

    /// Everything built on pool `index`'s backend list learns of its new list; the state file
    /// is written soon after.
    fn caught_up(&self, index: usize) {
        let pool = &self.pools[index];
        self.registry.pool(index).backends_changed(pool);
        if let Some(handles) = self.pool_metrics.get(index) {
            self.metrics.backends_changed(handles, pool);
        }
        if let Some(state_file) = self.state_file.get() {
            state_file.changed();
        }
    }
}

fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::Config => "config",
        Origin::Api => "admin",
        Origin::Discovery => "DNS discovery",
    }
}
