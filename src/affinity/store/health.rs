//! Up/down bookkeeping of a store (or, in a cluster, of one primary): consecutive failures
//! take it down, a probe that answers in time brings it back, and each change of state is
//! reported exactly once (so that it is logged once).

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::Relaxed};

/// Consecutive failed requests to Redis that mark the store (or a cluster node) down.
pub const FAILURES_TO_DOWN: u32 = 3;

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

#[cfg(test)]
mod tests {
    use super::*;

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
