//! The JSON views of the admin API: what `/api/pools` shows of a pool, its backends and session
//! tables, and of one session-table entry. Read from the live state (atomics, table statistics
//! and the rates' ring) at request time; nothing here is on the proxy's request path.

use super::rates::{BackendRate, Rates};
use crate::affinity::registry::PoolAffinities;
use crate::affinity::sessions::{EntryView, TableStats};
use crate::affinity::store::StoreStats;
use crate::config::BackendState;
use crate::pool::Pool;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

/// Session-table entries per backend index, over every table of the pool (one walk each).
pub(super) fn table_entries_by_backend(pool: &Pool, affinities: &PoolAffinities) -> Vec<usize> {
    let backends = pool.slots().len();
    let mut total = vec![0; backends];
    for (_, table) in affinities.affinities().flat_map(|a| a.tables()) {
        for (t, n) in total.iter_mut().zip(table.count_by_backend(backends)) {
            *t += n;
        }
    }
    total
}

/// A pool as `/api/pools` shows it.
#[derive(Serialize)]
pub(super) struct PoolView {
    name: String,
    /// `slow_start_seconds` (0: off).
    slow_start_seconds: u64,
    backends: Vec<BackendView>,
    tables: BTreeMap<String, TableStats>,
    /// Shared session stores (Redis) by table name; empty when every table is local.
    stores: BTreeMap<String, StoreStats>,
}

impl PoolView {
    /// The view of `pool` (with its `affinities`) now, its backends' request rates from `rates`.
    pub(super) fn of(pool: &Pool, affinities: &PoolAffinities, rates: &Rates) -> Self {
        let entries = table_entries_by_backend(pool, affinities);
        let rates = rates.of_pool(pool);
        let slots = pool.slots();
        PoolView {
            name: pool.name.clone(),
            slow_start_seconds: pool.slow_start.map_or(0, |d| d.as_secs()),
            // Backends removed at run time are not shown (their slots wait for a return).
            backends: (0..slots.len())
                .filter(|i| !slots[*i].is_removed())
                .map(|i| {
                    let rate = rates.get(i).cloned().unwrap_or_default();
                    BackendView::of(pool, i, entries.get(i).copied().unwrap_or(0), rate)
                })
                .collect(),
            tables: affinities.table_stats().into_iter().collect(),
            stores: affinities.store_stats().into_iter().collect(),
        }
    }
}

/// A backend as `/api/pools` shows it.
#[derive(Serialize)]
pub(super) struct BackendView {
    name: String,
    addr: String,
    weight: u32,
    state: BackendState,
    healthy: bool,
    in_flight: usize,
    requests: u64,
    last_used_unix_ms: Option<u64>,
    pinned_requests_last_minute: u64,
    /// The share of its full new-session share it takes now: below 1 during its slow start.
    slow_start_share: f64,
    /// Entries of the pool's session tables that point here.
    table_entries: usize,
    /// Upgraded (WebSocket) connections open to this backend.
    upgraded_connections: usize,
    /// `requests_per_second` and `requests_per_second_history`.
    #[serde(flatten)]
    rate: BackendRate,
}

impl BackendView {
    /// The view of backend `index` of `pool` now; `table_entries` and `rate` are computed by
    /// the caller (over the whole pool at once).
    pub(super) fn of(pool: &Pool, index: usize, table_entries: usize, rate: BackendRate) -> Self {
        let slots = pool.slots();
        let slot = &slots[index];
        BackendView {
            name: slot.name.clone(),
            addr: slot.addr.to_string(),
            weight: slot.weight,
            state: slot.state(),
            healthy: slot.is_healthy(),
            in_flight: slot.in_flight.load(Relaxed),
            requests: slot.requests.load(Relaxed),
            last_used_unix_ms: slot.last_used_ms(),
            pinned_requests_last_minute: slot.pinned_last_minute(),
            slow_start_share: slot.ramp_share(pool.slow_start),
            table_entries,
            upgraded_connections: pool
                .upgraded
                .count_by_backend(slots.len())
                .get(index)
                .copied()
                .unwrap_or(0),
            rate,
        }
    }
}

/// One session-table entry, its backend by name.
#[derive(Serialize)]
pub(super) struct LookupView {
    key: String,
    backend: String,
    age_seconds: u64,
    idle_seconds: u64,
}

impl LookupView {
    pub(super) fn of(pool: &Pool, entry: EntryView) -> Self {
        LookupView {
            key: entry.key,
            backend: pool
                .slots()
                .get(entry.backend)
                .map_or_else(|| "-".into(), |s| s.name.clone()),
            age_seconds: entry.age_seconds,
            idle_seconds: entry.idle_seconds,
        }
    }
}
