//! Every Prometheus metric: its name, help, labels — in this one file, listed again in the
//! docs/operations.md. Uses the `prometheus` crate as re-exported by `pingora-prometheus`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sticky_requests_total` | counter | `pool`, `backend` (`-` when none), `outcome` (`new`, `sticky`, `rebalanced`, `opted_out`, `none`, `failed`) |
//! | `sticky_upstream_response_seconds` | histogram | `pool`, `backend` — from choosing the backend to its response header |
//! | `sticky_cookie_verification_failures_total` | counter | `pool` — affinity cookies that named no backend (forged, stale, malformed) |
//! | `sticky_cookie_expirations_total` | counter | `pool`, `lifetime` (`idle`, `life`) — affinity cookies past `max_idle_seconds` / `max_life_seconds`: a new session |
//! | `sticky_backend_cookie_overwrites_total` | counter | `pool`, `backend` — `Set-Cookie` lines for the proxy's own cookie names sent by the backend, removed |
//! | `sticky_backend_healthy` | gauge | `pool`, `backend` — 1 healthy, 0 not |
//! | `sticky_backend_state` | gauge | `pool`, `backend`, `state` (`active`, `draining`, `disabled`) — 1 for the current state |
//! | `sticky_backend_in_flight` | gauge | `pool`, `backend` |
//! | `sticky_backend_pinned_requests_last_minute` | gauge | `pool`, `backend` |
//! | `sticky_backend_last_used_timestamp_seconds` | gauge | `pool`, `backend` (0: never) |
//! | `sticky_backend_slow_start_share` | gauge | `pool`, `backend` — the share of its full new-session share the backend takes now: below 1 during its slow start, else 1 |
//! | `sticky_session_table_entries` / `_capacity` / `_oldest_entry_age_seconds` | gauge | `pool`, `table` (`learn`, `client_ip`) |
//! | `sticky_session_table_hits_total` / `_misses_total` / `_insertions_total` / `_evictions_total` / `_expirations_total` | counter | `pool`, `table` |
//! | `sticky_session_store_up` | gauge | `pool`, `table` — 1 while the table's Redis store is up (a cluster: every primary), 0 while it is down or not connected yet |
//! | `sticky_session_store_lookups_total` | counter | `pool`, `table`, `result` (`hit`, `miss`, `failed`, `skipped` while down) — local misses asked of Redis |
//! | `sticky_session_store_writes_total` | counter | `pool`, `table`, `result` (`sent`, `failed`, `dropped` when the queue is full or the store down) |
//! | `sticky_state_file_writes_total` | counter | `result` (`written`, `failed`) — writes of `sticky.state_file` (present only with one) |
//!
//! The request path touches only pre-resolved handles ([`PoolMetrics`]): one atomic add per
//! counter, no label lookups. Gauges and table counters are read from the live state when
//! `/metrics` is scraped ([`Metrics::render`]).

use crate::affinity::registry::Registry as AffinityRegistry;
use crate::affinity::sessions::TableStats;
use crate::affinity::store::StoreStats;
use crate::affinity::Outcome;
use crate::config::BackendState;
use crate::pool::Pool;
use pingora_prometheus::prometheus::{
    self, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use std::sync::Arc;

mod handles;
pub use handles::PoolMetrics;

const OUTCOMES: [Outcome; 6] = [
    Outcome::None,
    Outcome::New,
    Outcome::Sticky,
    Outcome::Rebalanced,
    Outcome::OptedOut,
    Outcome::Failed,
];

fn outcome_index(outcome: Outcome) -> usize {
    OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0)
}

/// Reads one figure out of a table's statistics.
type ReadStat = fn(&TableStats) -> u64;

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    cookie_failures: IntCounterVec,
    cookie_expirations: IntCounterVec,
    cookie_overwrites: IntCounterVec,
    healthy: IntGaugeVec,
    state: IntGaugeVec,
    in_flight: IntGaugeVec,
    pinned_last_minute: IntGaugeVec,
    last_used: IntGaugeVec,
    slow_start_share: GaugeVec,
    table_gauges: [(IntGaugeVec, ReadStat); 3],
    table_counters: [(IntCounterVec, ReadStat); 5],
    store_up: IntGaugeVec,
    store_lookups: IntCounterVec,
    store_writes: IntCounterVec,
    state_file_writes: IntCounterVec,
}

/// Reads one figure out of a store's statistics.
type ReadStoreStat = fn(&StoreStats) -> u64;

const STORE_LOOKUPS: [(&str, ReadStoreStat); 4] = [
    ("hit", |s| s.lookup_hits),
    ("miss", |s| s.lookup_misses),
    ("failed", |s| s.lookup_failures),
    ("skipped", |s| s.lookups_skipped),
];
const STORE_WRITES: [(&str, ReadStoreStat); 3] = [
    ("sent", |s| s.writes_sent),
    ("failed", |s| s.writes_failed),
    ("dropped", |s| s.writes_dropped),
];

/// Raise a counter to `now` (counters read from live state at scrape time).
fn catch_up(counter: &IntCounter, now: u64) {
    if now > counter.get() {
        counter.inc_by(now - counter.get());
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

impl Metrics {
    /// Create and register every metric. Runs once at start-up with constant names, so a
    /// failure is a programming error caught by the tests.
    pub fn new() -> Self {
        let table = ["pool", "table"];
        let backend = ["pool", "backend"];
        let metrics = Metrics {
            registry: Registry::new(),
            requests: counter(
                "sticky_requests_total",
                "Requests by pool, backend and affinity outcome.",
                &["pool", "backend", "outcome"],
            ),
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "sticky_upstream_response_seconds",
                    "Time from choosing a backend to its response header.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ]),
                &backend,
            )
            .unwrap_or_else(|e| panic!("latency histogram: {e}")),
            cookie_failures: counter(
                "sticky_cookie_verification_failures_total",
                "Affinity cookies that named no backend of the pool (forged, stale, malformed).",
                &["pool"],
            ),
            cookie_expirations: counter(
                "sticky_cookie_expirations_total",
                "Affinity cookies past a lifetime (max_idle_seconds, max_life_seconds): new sessions.",
                &["pool", "lifetime"],
            ),
            cookie_overwrites: counter(
                "sticky_backend_cookie_overwrites_total",
                "Set-Cookie lines for the proxy's own affinity cookies sent by the backend, removed.",
                &backend,
            ),
            healthy: gauge(
                "sticky_backend_healthy",
                "1 when the backend passes its health checks.",
                &backend,
            ),
            state: gauge(
                "sticky_backend_state",
                "1 for the backend's current administrative state.",
                &["pool", "backend", "state"],
            ),
            in_flight: gauge(
                "sticky_backend_in_flight",
                "Requests being served by the backend.",
                &backend,
            ),
            pinned_last_minute: gauge(
                "sticky_backend_pinned_requests_last_minute",
                "Requests pinned to the backend (session record or hash home) in the last 60 s.",
                &backend,
            ),
            last_used: gauge(
                "sticky_backend_last_used_timestamp_seconds",
                "Unix time of the last request sent to the backend (0: never).",
                &backend,
            ),
            slow_start_share: GaugeVec::new(
                Opts::new(
                    "sticky_backend_slow_start_share",
                    "Share of its full new-session share the backend takes now (below 1 in its slow start).",
                ),
                &backend,
            )
            .unwrap_or_else(|e| panic!("slow start gauge: {e}")),
            table_gauges: [
                (
                    gauge(
                        "sticky_session_table_entries",
                        "Entries in the session table.",
                        &table,
                    ),
                    |s| s.entries,
                ),
                (
                    gauge(
                        "sticky_session_table_capacity",
                        "Capacity of the session table.",
                        &table,
                    ),
                    |s| s.capacity,
                ),
                (
                    gauge(
                        "sticky_session_table_oldest_entry_age_seconds",
                        "Idle time of the least recently used entry.",
                        &table,
                    ),
                    |s| s.oldest_entry_age_seconds,
                ),
            ],
            table_counters: [
                (
                    counter(
                        "sticky_session_table_hits_total",
                        "Lookups that found an entry.",
                        &table,
                    ),
                    |s| s.hits,
                ),
                (
                    counter(
                        "sticky_session_table_misses_total",
                        "Lookups that found none.",
                        &table,
                    ),
                    |s| s.misses,
                ),
                (
                    counter(
                        "sticky_session_table_insertions_total",
                        "Entries recorded.",
                        &table,
                    ),
                    |s| s.insertions,
                ),
                (
                    counter(
                        "sticky_session_table_evictions_total",
                        "Entries dropped at capacity.",
                        &table,
                    ),
                    |s| s.evictions,
                ),
                (
                    counter(
                        "sticky_session_table_expirations_total",
                        "Entries dropped as expired.",
                        &table,
                    ),
                    |s| s.expirations,
                ),
            ],
            store_up: gauge(
                "sticky_session_store_up",
                "1 while the session table's shared store (Redis) is up.",
                &table,
            ),
            store_lookups: counter(
                "sticky_session_store_lookups_total",
                "Local misses asked of the shared store, by result.",
                &["pool", "table", "result"],
            ),
            store_writes: counter(
                "sticky_session_store_writes_total",
                "Writes to the shared store, by result.",
                &["pool", "table", "result"],
            ),
            state_file_writes: counter(
                "sticky_state_file_writes_total",
                "Writes of the state file (backend states set through the admin API), by result.",
                &["result"],
            ),
        };
        let mut collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.requests.clone()),
            Box::new(metrics.latency.clone()),
            Box::new(metrics.cookie_failures.clone()),
            Box::new(metrics.cookie_expirations.clone()),
            Box::new(metrics.cookie_overwrites.clone()),
            Box::new(metrics.healthy.clone()),
            Box::new(metrics.state.clone()),
            Box::new(metrics.in_flight.clone()),
            Box::new(metrics.pinned_last_minute.clone()),
            Box::new(metrics.last_used.clone()),
            Box::new(metrics.slow_start_share.clone()),
            Box::new(metrics.store_up.clone()),
            Box::new(metrics.store_lookups.clone()),
            Box::new(metrics.store_writes.clone()),
            Box::new(metrics.state_file_writes.clone()),
        ];
        collectors.extend(
            metrics
                .table_gauges
                .iter()
                .map(|(g, _)| Box::new(g.clone()) as _),
        );
        collectors.extend(
            metrics
                .table_counters
                .iter()
                .map(|(c, _)| Box::new(c.clone()) as _),
        );
        for collector in collectors {
            if let Err(e) = metrics.registry.register(collector) {
                panic!("registering a metric: {e}");
            }
        }
        metrics
    }

    /// The counters of the state file's writes: (written, failed). Asked once, when there is
    /// a state file.
    pub fn state_file_writes(&self) -> (IntCounter, IntCounter) {
        (
            self.state_file_writes.with_label_values(&["written"]),
            self.state_file_writes.with_label_values(&["failed"]),
        )
    }

    /// Register a metric a service above this layer keeps (DNS discovery's failures): rendered
    /// with the others. A second registration of the same name is logged and ignored.
    pub fn register(&self, collector: Box<dyn pingora_prometheus::prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(collector) {
            log::error!("registering a metric: {e}");
        }
    }

    /// Read the live state of `pools` and their affinities (`registry`) into the gauges and
    /// table counters, and encode every metric in the Prometheus text format.
    pub fn render(&self, pools: &[Arc<Pool>], registry: &AffinityRegistry) -> (String, Vec<u8>) {
        for (pool, affinities) in pools.iter().zip(registry.pools()) {
            for slot in pool.slots().iter() {
                let labels = [pool.name.as_str(), slot.name.as_str()];
                if slot.is_removed() {
                    self.forget_backend(&labels);
                    continue;
                }
                self.healthy
                    .with_label_values(&labels)
                    .set(i64::from(slot.is_healthy()));
                for state in BackendState::ALL {
                    self.state
                        .with_label_values(&[
                            pool.name.as_str(),
                            slot.name.as_str(),
                            state.as_str(),
                        ])
                        .set(i64::from(slot.state() == state));
                }
                let in_flight = slot.in_flight.load(std::sync::atomic::Ordering::Relaxed);
                self.in_flight
                    .with_label_values(&labels)
                    .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
                self.pinned_last_minute
                    .with_label_values(&labels)
                    .set(i64::try_from(slot.pinned_last_minute()).unwrap_or(i64::MAX));
                self.last_used.with_label_values(&labels).set(
                    slot.last_used_ms()
                        .map_or(0, |ms| i64::try_from(ms / 1000).unwrap_or(0)),
                );
                self.slow_start_share
                    .with_label_values(&labels)
                    .set(slot.ramp_share(pool.slow_start));
            }
            for (table, stats) in affinities.table_stats() {
                let labels = [pool.name.as_str(), table.as_str()];
                for (gauge, read) in &self.table_gauges {
                    gauge
                        .with_label_values(&labels)
                        .set(i64::try_from(read(&stats)).unwrap_or(i64::MAX));
                }
                for (counter, read) in &self.table_counters {
                    catch_up(&counter.with_label_values(&labels), read(&stats));
                }
            }
            for (table, stats) in affinities.store_stats() {
                let labels = [pool.name.as_str(), table.as_str()];
                self.store_up
                    .with_label_values(&labels)
                    .set(i64::from(stats.up));
                for (result, read) in STORE_LOOKUPS {
                    let c = self
                        .store_lookups
                        .with_label_values(&[labels[0], labels[1], result]);
                    catch_up(&c, read(&stats));
                }
                for (result, read) in STORE_WRITES {
                    let c = self
                        .store_writes
                        .with_label_values(&[labels[0], labels[1], result]);
                    catch_up(&c, read(&stats));
                }
            }
        }
        let encoder = TextEncoder::new();
        let mut buffer = Vec::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buffer) {
            log::error!("encoding metrics: {e}");
        }
        (encoder.format_type().to_string(), buffer)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let metrics = Metrics::new();
        let config = crate::config::load_str(
            "sticky:\n  listeners: [{ addr: \"127.0.0.1:1\" }]\n  pools:\n    - name: web\n      backends: [{ name: a, addr: \"127.0.0.1:2\" }]\n      affinity: { learn: { presets: [j2ee] } }\n",
        )
        .unwrap();
        let (pool, _) = Pool::new(&config.pools[0], None);
        let pools = [pool];
        let registry =
            AffinityRegistry::build(&config, &pools, &crate::extension::Extensions::default());
        let handles = metrics.for_pool(&pools[0]);
        handles.request(Some(0), Outcome::Sticky);
        handles.request(None, Outcome::Failed);
        handles.upstream_latency(0, 0.002);
        assert!(handles.cookie_overwrites(0, 2), "the first time");
        assert!(!handles.cookie_overwrites(0, 1), "not again");
        assert!(!handles.cookie_overwrites(7, 1), "no such backend");
        let (_, body) = metrics.render(&pools, &registry);
        let text = String::from_utf8(body).unwrap();
        for expected in [
            "sticky_requests_total{backend=\"a\",outcome=\"sticky\",pool=\"web\"} 1",
            "sticky_requests_total{backend=\"-\",outcome=\"failed\",pool=\"web\"} 1",
            "sticky_backend_healthy{backend=\"a\",pool=\"web\"} 1",
            "sticky_backend_state{backend=\"a\",pool=\"web\",state=\"active\"} 1",
            "sticky_session_table_capacity{pool=\"web\",table=\"learn\"} 100000",
            "sticky_upstream_response_seconds_count{backend=\"a\",pool=\"web\"} 1",
            "sticky_backend_cookie_overwrites_total{backend=\"a\",pool=\"web\"} 3",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }
}
