//! Requests per second per backend, for `/api/pools` and the dashboard's sparklines.
//!
//! Computed from the counter the proxy already keeps for every backend
//! ([`crate::pool::BackendSlot::requests`]): a background service ([`RateSampler`]) copies the
//! counters every [`SAMPLE_INTERVAL`] into a ring of snapshots covering [`HISTORY`], and a
//! reader turns two snapshots into a rate. Nothing is added to the request path: the proxy
//! only increments the counter it increments anyway, and this module only reads it.

use crate::pool::Pool;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the counters are copied into the ring.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// The window of the current rate (`requests_per_second`).
pub const WINDOW: Duration = Duration::from_secs(10);
/// The length of one step of the history (`requests_per_second_history`).
pub const STEP: Duration = Duration::from_secs(10);
/// How far back the history goes.
pub const HISTORY: Duration = Duration::from_secs(300);

/// Snapshots per history step.
const SAMPLES_PER_STEP: usize = (STEP.as_secs() / SAMPLE_INTERVAL.as_secs()) as usize;
/// Snapshots kept: one history plus the snapshot it starts from.
const RING: usize = (HISTORY.as_secs() / SAMPLE_INTERVAL.as_secs()) as usize + 1;

/// One copy of every backend's request counter.
#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    /// Per pool, per backend: requests sent since start.
    counts: Vec<Vec<u64>>,
}

/// One backend's rates, as `/api/pools` shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BackendRate {
    /// Requests per second over the last [`WINDOW`] (less just after start), up to now.
    pub requests_per_second: f64,
    /// Requests per second in each [`STEP`] of the last [`HISTORY`], oldest first; shorter
    /// while the process is younger than that.
    pub requests_per_second_history: Vec<f64>,
}

/// The ring of counter snapshots, shared by the sampler and the admin API.
pub struct Rates {
    pools: Vec<Arc<Pool>>,
    ring: Mutex<VecDeque<Snapshot>>,
}

impl Rates {
    /// Rates over `pools` (in the admin API's order), with a first snapshot taken now.
    pub fn new(pools: Vec<Arc<Pool>>) -> Self {
        let rates = Rates {
            pools,
            ring: Mutex::new(VecDeque::with_capacity(RING + 1)),
        };
        rates.sample();
        rates
    }

    /// Copy every backend's counter into the ring, dropping the snapshots older than the
    /// history.
    pub fn sample(&self) {
        let snapshot = Snapshot {
            at: Instant::now(),
            counts: self.pools.iter().map(|p| counts(p)).collect(),
        };
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.push_back(snapshot);
        while ring.len() > RING {
            ring.pop_front();
        }
    }

    /// The rates of every backend of `pool` (by its index in `slots` order); an empty list for
    /// a pool these rates do not cover.
    pub fn of_pool(&self, pool: &Pool) -> Vec<BackendRate> {
        let Some(index) = self
            .pools
            .iter()
            .position(|p| std::ptr::eq(p.as_ref(), pool))
        else {
            return Vec::new();
        };
        let live = counts(pool);
        let now = Instant::now();
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        (0..live.len())
            .map(|backend| BackendRate {
                requests_per_second: current(&ring, index, backend, now, live[backend]),
                requests_per_second_history: history(&ring, index, backend),
            })
            .collect()
    }
}

/// Every backend's request counter of one pool.
fn counts(pool: &Pool) -> Vec<u64> {
    pool.slots()
        .iter()
        .map(|s| s.requests.load(Relaxed))
        .collect()
}

/// A snapshot's counter for one backend (0 when it has none).
fn count(snapshot: &Snapshot, pool: usize, backend: usize) -> u64 {
    snapshot
        .counts
        .get(pool)
        .and_then(|c| c.get(backend))
        .copied()
        .unwrap_or(0)
}

/// Requests per second between two counter values `elapsed` apart, rounded to hundredths.
fn per_second(older: u64, newer: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds < 0.001 {
        return 0.0;
    }
    let rate = newer.saturating_sub(older) as f64 / seconds;
    (rate * 100.0).round() / 100.0
}

/// The rate from the newest snapshot at least [`WINDOW`] old (or the oldest there is) to the
/// live counter `live` read at `now`.
fn current(ring: &VecDeque<Snapshot>, pool: usize, backend: usize, now: Instant, live: u64) -> f64 {
    let base = ring
        .iter()
        .rev()
        .find(|s| now.saturating_duration_since(s.at) >= WINDOW)
        .or_else(|| ring.front());
    match base {
        Some(base) => per_second(
            count(base, pool, backend),
            live,
            now.saturating_duration_since(base.at),
        ),
        None => 0.0,
    }
}

/// One rate per [`STEP`] (every [`SAMPLES_PER_STEP`] snapshots back from the newest), oldest
/// first; a last, shorter step reaches the oldest snapshot.
fn history(ring: &VecDeque<Snapshot>, pool: usize, backend: usize) -> Vec<f64> {
    let Some(newest) = ring.len().checked_sub(1) else {
        return Vec::new();
    };
    let mut marks: Vec<usize> = (0..=newest).rev().step_by(SAMPLES_PER_STEP).collect();
    if marks.last() != Some(&0) {
        marks.push(0);
    }
    let mut points: Vec<f64> = marks
        .windows(2)
        .map(|pair| {
            let (newer, older) = (&ring[pair[0]], &ring[pair[1]]);
            per_second(
                count(older, pool, backend),
                count(newer, pool, backend),
                newer.at.saturating_duration_since(older.at),
            )
        })
        .collect();
    points.reverse();
    points
}

/// The background service that samples the rates' ring every 2 s (run by Pingora,
/// so never during `-t`).
pub struct RateSampler(pub(super) Arc<Rates>);

#[async_trait]
impl BackgroundService for RateSampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; `Rates::new` has just taken that snapshot.
        ticks.tick().await;
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                _ = ticks.tick() => self.0.sample(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring of one pool with one backend whose counter had `counts[i]` at `start + 2 s × i`.
    fn ring(start: Instant, counts: &[u64]) -> VecDeque<Snapshot> {
        counts
            .iter()
            .enumerate()
            .map(|(i, c)| Snapshot {
                at: start + SAMPLE_INTERVAL * i as u32,
                counts: vec![vec![*c]],
            })
            .collect()
    }

    #[test]
    fn the_current_rate_runs_from_the_snapshot_a_window_ago_to_the_live_counter() {
        let start = Instant::now();
        // 10 requests per second throughout: 20 per 2 s snapshot.
        let counts: Vec<u64> = (0..20).map(|i| i * 20).collect();
        let r = ring(start, &counts);
        let now = start + Duration::from_secs(39);
        // The live counter one second after the last snapshot (38 s: 380 requests).
        assert_eq!(current(&r, 0, 0, now, 390), 10.0);
        // Young process: from the first snapshot.
        let young = ring(start, &[0]);
        assert_eq!(
            current(&young, 0, 0, start + Duration::from_secs(4), 10),
            2.5
        );
        assert_eq!(current(&VecDeque::new(), 0, 0, now, 5), 0.0);
    }

    #[test]
    fn the_history_has_one_point_per_step_oldest_first() {
        let start = Instant::now();
        // 11 snapshots over 20 s: 0 requests for the first 10 s, then 50 per second.
        let counts = [0, 0, 0, 0, 0, 0, 100, 200, 300, 400, 500];
        let h = history(&ring(start, &counts), 0, 0);
        assert_eq!(h, vec![0.0, 50.0]);
        // 13 snapshots: a shorter first step (snapshots 0 to 2) comes first.
        let counts = [0, 10, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20];
        assert_eq!(history(&ring(start, &counts), 0, 0), vec![5.0, 0.0, 0.0]);
        assert!(history(&ring(start, &[7]), 0, 0).is_empty());
        assert!(history(&VecDeque::new(), 0, 0).is_empty());
    }

    #[test]
    fn a_backend_or_pool_missing_from_a_snapshot_counts_as_zero() {
        let start = Instant::now();
        let r = ring(start, &[0, 20]);
        assert_eq!(history(&r, 3, 0), vec![0.0]);
        assert_eq!(history(&r, 0, 9), vec![0.0]);
    }

    #[test]
    fn the_ring_keeps_one_history_of_snapshots() {
        assert_eq!(RING, 151);
        assert_eq!(SAMPLES_PER_STEP, 5);
    }
}
