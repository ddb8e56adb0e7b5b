//! One backend's live state: health (mirrored from the health checker), administrative state
//! (`active`, `draining`, `disabled`), load, and the activity an operator watches before removing
//! a drained node (when it last served a request, pinned requests in the last minute), and when
//! it last came back to take new sessions (its slow start), and whether it was removed at run
//! time (a removed backend keeps its slot, and so its index, until it is added back). Everything
//! is an atomic: the request path never locks.

use super::slow_start;
use crate::config::BackendState;
use pingora_core::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A backend state as the byte its slot stores atomically.
trait BackendStateCode {
    fn to_u8(self) -> u8;
    fn from_u8(value: u8) -> Self;
}

impl BackendStateCode for BackendState {
    fn to_u8(self) -> u8 {
        match self {
            BackendState::Active => 0,
            BackendState::Draining => 1,
            BackendState::Disabled => 2,
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => BackendState::Draining,
            2 => BackendState::Disabled,
            _ => BackendState::Active,
        }
    }
}

/// Seconds in the pinned-request window.
const WINDOW_SECONDS: u64 = 60;

/// One configured backend and its live state.
#[derive(Debug)]
pub struct BackendSlot {
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    /// Mirrored from the health checker; `true` until a check says otherwise.
    pub healthy: AtomicBool,
    /// A health check of this slot has begun (see [`BackendSlot::health_flip_applies`]).
    health_checked: AtomicBool,
    state: AtomicU8,
    /// Requests currently being served.
    pub in_flight: AtomicUsize,
    /// Requests sent to this backend since start.
    pub requests: AtomicU64,
    /// Unix time (ms) of the last request sent here; 0 = never.
    last_used_ms: AtomicU64,
    /// When ([`slow_start::monotonic_ms`]) it last came back to take new sessions; 0: not since
    /// the process started, or its ramp is over.
    ramp_since_ms: AtomicU64,
    /// Per second of the last minute: `(unix second << 32) | pinned requests in that second`.
    pinned_window: [AtomicU64; WINDOW_SECONDS as usize],
    /// Removed at run time (`DELETE /api/pools/{pool}/backends/{name}`, DNS discovery): it
    /// serves nothing until added back.
    removed: AtomicBool,
    /// Template for the upstream peer (address and timeouts).
    pub(super) peer: HttpPeer,
    /// The `Host` for a request that has none ([`crate::headers::backend_host`]).
    pub host_when_missing: http::HeaderValue,
    /// Who put it in the pool: the configuration, the admin API, DNS discovery.
    pub origin: super::members::Origin,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl BackendSlot {
    pub fn new(
        name: String,
        addr: SocketAddr,
        weight: u32,
        state: BackendState,
        peer: HttpPeer,
        host_when_missing: http::HeaderValue,
    ) -> Self {
        BackendSlot {
            name,
            addr,
            weight,
            healthy: AtomicBool::new(true),
            health_checked: AtomicBool::new(false),
            state: AtomicU8::new(state.to_u8()),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_used_ms: AtomicU64::new(0),
            ramp_since_ms: AtomicU64::new(0),
            pinned_window: std::array::from_fn(|_| AtomicU64::new(0)),
            removed: AtomicBool::new(false),
            peer,
            host_when_missing,
            origin: super::members::Origin::Config,
        }
    }

    /// Removed at run time: it serves nothing, pinned or new, until added back.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Relaxed)
    }

    /// Mark it removed (or back); back to taking new sessions, its slow start begins.
    pub(super) fn set_removed(&self, removed: bool) {
        let before = self.takes_new_sessions();
        self.removed.store(removed, Relaxed);
        self.mark_if_back(before);
    }

    /// Added at run time: it comes to take new sessions now (its slow start begins, if it is
    /// active).
    pub(super) fn mark_added(&self) {
        self.mark_if_back(false);
    }

    pub fn state(&self) -> BackendState {
        BackendState::from_u8(self.state.load(Relaxed))
    }

    /// Set the administrative state; back to taking new sessions, its slow start begins.
    pub fn set_state(&self, state: BackendState) {
        let before = self.takes_new_sessions();
        self.state.store(state.to_u8(), Relaxed);
        self.mark_if_back(before);
    }

    /// Set the administrative state the process starts with (from the state file): no slow
    /// start, as for every backend at start.
    pub fn set_state_at_start(&self, state: BackendState) {
        self.state.store(state.to_u8(), Relaxed);
    }

    /// Set the health (from the health checker); back to taking new sessions, its slow start
    /// begins.
    /// A health check of this slot begins.
    pub fn health_check_begins(&self) {
        self.health_checked.store(true, Relaxed);
    }

    /// Whether a health flip reported for this slot's address is about this slot: not before
    /// any check of it began. A check still running for a backend removed meanwhile reports for
    /// its address, where another backend may be now: that backend has not been checked yet
    /// (the checker's passes do not overlap), so the flip is not its own.
    pub fn health_flip_applies(&self) -> bool {
        self.health_checked.load(Relaxed)
    }

    pub fn set_healthy(&self, healthy: bool) {
        let before = self.takes_new_sessions();
        self.healthy.store(healthy, Relaxed);
        self.mark_if_back(before);
    }

    fn mark_if_back(&self, took_new_sessions: bool) {
        if !took_new_sessions && self.takes_new_sessions() {
            self.ramp_since_ms
                .store(slow_start::monotonic_ms(), Relaxed);
        }
    }

    /// The share of its full new-session share it takes now, under a pool's `slow_start`
    /// ([`slow_start::share`]): 1 without slow start, when it has not come back since the
    /// process started, or once its ramp is over.
    pub fn ramp_share(&self, slow_start: Option<Duration>) -> f64 {
        let Some(slow_start) = slow_start else {
            return 1.0;
        };
        let since = self.ramp_since_ms.load(Relaxed);
        if since == 0 {
            return 1.0;
        }
        let elapsed = slow_start::monotonic_ms().saturating_sub(since);
        let share = slow_start::share(Duration::from_millis(elapsed), slow_start);
        if share >= 1.0 {
            // Over: later reads need not look at the clock (unless it came back again since).
            let _ = self
                .ramp_since_ms
                .compare_exchange(since, 0, Relaxed, Relaxed);
        }
        share
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// Can this backend serve a request pinned to it (healthy, not disabled, not removed)?
    pub fn is_usable(&self) -> bool {
        self.is_healthy() && self.state() != BackendState::Disabled && !self.is_removed()
    }

    /// Can this backend take a new session (healthy, active, not removed)?
    pub fn takes_new_sessions(&self) -> bool {
        self.is_healthy() && self.state() == BackendState::Active && !self.is_removed()
    }

    /// Count a request sent here; `pinned` when a session record or hash home chose it.
    pub fn record_request(&self, pinned: bool) {
        self.requests.fetch_add(1, Relaxed);
        let now = unix_ms();
        self.last_used_ms.store(now, Relaxed);
        if pinned {
            let second = now / 1000;
            let bucket = &self.pinned_window[(second % WINDOW_SECONDS) as usize];
            let current = bucket.load(Relaxed);
            if current >> 32 == second & 0xffff_ffff {
                bucket.fetch_add(1, Relaxed);
            } else if bucket
                .compare_exchange(
                    current,
                    ((second & 0xffff_ffff) << 32) | 1,
                    Relaxed,
                    Relaxed,
                )
                .is_err()
            {
                // Another request started this second's bucket first: count on top of it.
                bucket.fetch_add(1, Relaxed);
            }
        }
    }

    /// Unix time (ms) of the last request, if any.
    pub fn last_used_ms(&self) -> Option<u64> {
        let ms = self.last_used_ms.load(Relaxed);
        (ms > 0).then_some(ms)
    }

    /// Pinned requests served in the last minute.
    pub fn pinned_last_minute(&self) -> u64 {
        let second = unix_ms() / 1000;
        self.pinned_window
            .iter()
            .map(|b| b.load(Relaxed))
            .filter(|v| {
                let at = v >> 32;
                let now = second & 0xffff_ffff;
                now >= at && now - at < WINDOW_SECONDS
            })
            .map(|v| v & 0xffff_ffff)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(state: BackendState) -> BackendSlot {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        BackendSlot::new(
            "b".into(),
            addr,
            1,
            state,
            HttpPeer::new(addr, false, String::new()),
            http::HeaderValue::from_static("127.0.0.1:1"),
        )
    }

    #[test]
    fn states_decide_who_takes_pinned_and_new_requests() {
        let active = slot(BackendState::Active);
        assert!(active.is_usable() && active.takes_new_sessions());
        let draining = slot(BackendState::Draining);
        assert!(draining.is_usable() && !draining.takes_new_sessions());
        let disabled = slot(BackendState::Disabled);
        assert!(!disabled.is_usable() && !disabled.takes_new_sessions());
        active.healthy.store(false, Relaxed);
        assert!(!active.is_usable() && !active.takes_new_sessions());
        active.set_state(BackendState::Draining);
        assert_eq!(active.state(), BackendState::Draining);
    }

    #[test]
    fn a_backend_ramps_only_when_it_comes_back_to_taking_new_sessions() {
        let ramp = Some(Duration::from_secs(3600));
        let s = slot(BackendState::Active);
        assert_eq!(s.ramp_share(ramp), 1.0, "not at start");
        s.set_state(BackendState::Active);
        s.set_healthy(true);
        assert_eq!(s.ramp_share(ramp), 1.0, "no change, no ramp");
        s.set_healthy(false);
        assert_eq!(s.ramp_share(ramp), 1.0);
        s.set_healthy(true);
        assert!(s.ramp_share(ramp) < 0.1, "healthy again: ramping");
        assert_eq!(s.ramp_share(None), 1.0, "without slow start: full");

        for from in [BackendState::Draining, BackendState::Disabled] {
            let s = slot(from);
            s.set_healthy(false);
            s.set_healthy(true);
            assert_eq!(
                s.ramp_share(ramp),
                1.0,
                "{from:?}: not taking new sessions yet"
            );
            s.set_state(BackendState::Active);
            assert!(s.ramp_share(ramp) < 0.1, "{from:?} -> active: ramping");
        }

        // A ramp that is over reads 1 from then on.
        let s = slot(BackendState::Disabled);
        s.set_state(BackendState::Active);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.ramp_share(Some(Duration::from_millis(1))), 1.0);
        assert_eq!(s.ramp_share(ramp), 1.0, "cleared once over");
    }

    #[test]
    fn activity_counts_last_use_and_pinned_requests_of_the_last_minute() {
        let s = slot(BackendState::Active);
        assert_eq!(s.last_used_ms(), None);
        s.record_request(false);
        s.record_request(true);
        s.record_request(true);
        assert!(s.last_used_ms().is_some());
        assert_eq!(s.pinned_last_minute(), 2);
        assert_eq!(s.requests.load(Relaxed), 3);
    }
}
