//! The affinity decision: where a request goes and what to report, as a pure function of what
//! the request's session says, the backends' state, the ring, the balancer and the class's
//! failure policy.

use super::{Outcome, Pin};
use crate::pool::ring::RingPick;

/// Which session mechanisms a class has, and what it does when a session's backend is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mechanisms {
    /// The proxy inserts its affinity cookie.
    pub cookie: bool,
    /// The proxy records sessions server-side (learned ids, client-IP table).
    pub tables: bool,
    /// The failure policy keeps a session whose backend cannot serve (`strict`, `sorry`,
    /// `redirect`, `close`) instead of moving it (`rebalance`, the default).
    pub keeps_sessions: bool,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// To a backend.
    Backend(Placement),
    /// The backend the request's session requires (`required`; `None`: a named node no backend
    /// has) cannot serve it, and the class's failure policy answers instead of moving the
    /// session.
    Refused { required: Option<usize> },
    /// No backend can take the request.
    Unavailable,
}

/// A backend chosen for a request, and what to report about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub backend: usize,
    pub outcome: Outcome,
    /// The response carries a fresh affinity cookie for `backend`.
    pub issue_cookie: bool,
}

impl Decision {
    /// The chosen backend, if any.
    pub fn backend(&self) -> Option<usize> {
        match self {
            Decision::Backend(p) => Some(p.backend),
            _ => None,
        }
    }
}

/// Decide where a request goes: the backend its session is recorded on (cookie, learned id,
/// client-IP table, named node) if that one can serve, else its hash key's backend, else the
/// balancer's pick — unless the session's backend cannot serve and the failure policy keeps
/// sessions ([`Decision::Refused`]).
///
/// - `pin`: the backend the request's session is recorded on, if any;
/// - `failed`: backends this request already failed on;
/// - `usable`: whether a backend can take a request now;
/// - `hashed`: the ring's pick for the request's hash key, skipping `failed`; the outer `None`
///   means the request has no key (or the pool no hashing), the inner one that no backend can
///   take it;
/// - `select_new`: the balancer's pick for a new session, skipping `failed`.
pub fn decide(
    pin: Pin,
    mechanisms: Mechanisms,
    failed: &[usize],
    usable: impl Fn(usize) -> bool,
    hashed: impl FnOnce(&[usize]) -> Option<Option<RingPick>>,
    select_new: impl FnOnce(&[usize]) -> Option<usize>,
) -> Decision {
    if let Pin::Backend(index) = pin {
        if usable(index) && !failed.contains(&index) {
            return Decision::Backend(Placement {
                backend: index,
                outcome: Outcome::Sticky,
                issue_cookie: false,
            });
        }
    }
    let required = match pin {
        Pin::Backend(index) => Some(Some(index)),
        Pin::Missing => Some(None),
        Pin::Absent | Pin::Invalid => None,
    };
    if let (Some(required), true) = (required, mechanisms.keeps_sessions) {
        return Decision::Refused { required };
    }
    place_elsewhere(pin, mechanisms, failed, hashed, select_new)
}

/// A request whose session (if any) cannot be followed: its hash key's backend, else the
/// balancer's pick.
fn place_elsewhere(
    pin: Pin,
    mechanisms: Mechanisms,
    failed: &[usize],
    hashed: impl FnOnce(&[usize]) -> Option<Option<RingPick>>,
    select_new: impl FnOnce(&[usize]) -> Option<usize>,
) -> Decision {
    let was_pinned = matches!(pin, Pin::Backend(_) | Pin::Missing);
    if let Some(pick) = hashed(failed) {
        let Some(pick) = pick else {
            return Decision::Unavailable;
        };
        return Decision::Backend(Placement {
            backend: pick.backend,
            outcome: if pick.home && !was_pinned {
                Outcome::Sticky
            } else {
                Outcome::Rebalanced
            },
            // A cookie that named a backend which cannot serve, or no backend at all (forged,
            // stale), is replaced.
            issue_cookie: mechanisms.cookie && (was_pinned || pin == Pin::Invalid),
        });
    }
    let Some(backend) = select_new(failed) else {
        return Decision::Unavailable;
    };
    let outcome = if was_pinned {
        Outcome::Rebalanced
    } else if mechanisms.cookie || mechanisms.tables {
        Outcome::New
    } else {
        Outcome::None
    };
    Decision::Backend(Placement {
        backend,
        outcome,
        issue_cookie: mechanisms.cookie,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOKIE: Mechanisms = Mechanisms {
        cookie: true,
        tables: false,
        keeps_sessions: false,
    };
    const NONE: Mechanisms = Mechanisms {
        cookie: false,
        tables: false,
        keeps_sessions: false,
    };
    const TABLES: Mechanisms = Mechanisms {
        cookie: false,
        tables: true,
        keeps_sessions: false,
    };
    const STRICT_COOKIE: Mechanisms = Mechanisms {
        cookie: true,
        tables: false,
        keeps_sessions: true,
    };

    fn no_key(_: &[usize]) -> Option<Option<RingPick>> {
        None
    }

    fn home(backend: usize) -> impl FnOnce(&[usize]) -> Option<Option<RingPick>> {
        move |_| {
            Some(Some(RingPick {
                backend,
                home: true,
            }))
        }
    }

    fn d(backend: usize, outcome: Outcome, issue_cookie: bool) -> Decision {
        Decision::Backend(Placement {
            backend,
            outcome,
            issue_cookie,
        })
    }

    #[test]
    fn valid_pin_to_usable_backend_is_sticky() {
        let got = decide(Pin::Backend(1), COOKIE, &[], |_| true, no_key, |_| Some(0));
        assert_eq!(got, d(1, Outcome::Sticky, false));
    }

    #[test]
    fn pin_to_unusable_backend_is_rebalanced_with_a_new_cookie() {
        let got = decide(
            Pin::Backend(1),
            COOKIE,
            &[],
            |i| i != 1,
            no_key,
            |_| Some(0),
        );
        assert_eq!(got, d(0, Outcome::Rebalanced, true));
    }

    #[test]
    fn pin_to_backend_that_failed_this_request_is_rebalanced_elsewhere() {
        let next = |failed: &[usize]| (0..3).find(|i| !failed.contains(i));
        let got = decide(Pin::Backend(1), COOKIE, &[1], |_| true, no_key, next);
        assert_eq!(got, d(0, Outcome::Rebalanced, true));
    }

    #[test]
    fn absent_or_invalid_cookie_is_a_new_session() {
        for pin in [Pin::Absent, Pin::Invalid] {
            let got = decide(pin, COOKIE, &[], |_| true, no_key, |_| Some(2));
            assert_eq!(got, d(2, Outcome::New, true));
        }
    }

    #[test]
    fn a_table_miss_is_a_new_session_without_a_cookie() {
        let got = decide(Pin::Absent, TABLES, &[], |_| true, no_key, |_| Some(2));
        assert_eq!(got, d(2, Outcome::New, false));
        let moved = decide(Pin::Backend(0), TABLES, &[], |_| false, no_key, |_| Some(2));
        assert_eq!(moved, d(2, Outcome::Rebalanced, false));
    }

    #[test]
    fn pool_without_sessions_or_key_reports_none_and_issues_nothing() {
        let got = decide(Pin::Absent, NONE, &[], |_| true, no_key, |_| Some(0));
        assert_eq!(got, d(0, Outcome::None, false));
    }

    #[test]
    fn a_hash_key_goes_to_its_home_without_a_cookie() {
        let got = decide(Pin::Absent, COOKIE, &[], |_| true, home(2), |_| Some(0));
        assert_eq!(got, d(2, Outcome::Sticky, false));
        let got = decide(Pin::Absent, NONE, &[], |_| true, home(2), |_| Some(0));
        assert_eq!(got, d(2, Outcome::Sticky, false));
    }

    #[test]
    fn an_invalid_cookie_is_replaced_even_when_a_hash_key_routes_the_request() {
        let got = decide(Pin::Invalid, COOKIE, &[], |_| true, home(2), |_| Some(0));
        assert_eq!(got, d(2, Outcome::Sticky, true));
    }

    #[test]
    fn a_hash_key_away_from_home_is_rebalanced() {
        let next = |_: &[usize]| {
            Some(Some(RingPick {
                backend: 1,
                home: false,
            }))
        };
        let got = decide(Pin::Absent, NONE, &[], |_| true, next, |_| Some(0));
        assert_eq!(got, d(1, Outcome::Rebalanced, false));
    }

    #[test]
    fn a_valid_pin_beats_the_hash_key_and_a_dead_one_is_replaced() {
        let got = decide(Pin::Backend(0), COOKIE, &[], |_| true, home(2), |_| Some(1));
        assert_eq!(got, d(0, Outcome::Sticky, false));
        let got = decide(
            Pin::Backend(0),
            COOKIE,
            &[],
            |i| i != 0,
            home(2),
            |_| Some(1),
        );
        assert_eq!(got, d(2, Outcome::Rebalanced, true));
    }

    #[test]
    fn nothing_usable_fails() {
        let got = decide(Pin::Backend(0), COOKIE, &[], |_| false, no_key, |_| None);
        assert_eq!(got, Decision::Unavailable);
        let got = decide(
            Pin::Absent,
            NONE,
            &[],
            |_| false,
            |_| Some(None),
            |_| Some(0),
        );
        assert_eq!(got, Decision::Unavailable);
    }

    #[test]
    fn a_policy_that_keeps_sessions_refuses_instead_of_moving_one_whose_backend_cannot_serve() {
        let got = decide(
            Pin::Backend(1),
            STRICT_COOKIE,
            &[],
            |i| i != 1,
            no_key,
            |_| Some(0),
        );
        assert_eq!(got, Decision::Refused { required: Some(1) });
        let failed_here = decide(
            Pin::Backend(1),
            STRICT_COOKIE,
            &[1],
            |_| true,
            home(1),
            |_| Some(0),
        );
        assert_eq!(failed_here, Decision::Refused { required: Some(1) });
        let unknown_name = decide(
            Pin::Missing,
            STRICT_COOKIE,
            &[],
            |_| true,
            no_key,
            |_| Some(0),
        );
        assert_eq!(unknown_name, Decision::Refused { required: None });
        // A usable backend is followed, and requests without a session record are placed.
        let home_up = decide(
            Pin::Backend(1),
            STRICT_COOKIE,
            &[],
            |_| true,
            no_key,
            |_| Some(0),
        );
        assert_eq!(home_up, d(1, Outcome::Sticky, false));
        for pin in [Pin::Absent, Pin::Invalid] {
            let new = decide(pin, STRICT_COOKIE, &[], |_| true, no_key, |_| Some(2));
            assert_eq!(new, d(2, Outcome::New, true));
        }
    }
}
