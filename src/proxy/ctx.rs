//! One request's state across the hooks ([`RequestCtx`]), in four typed parts: who the client
//! is, which route it took, the current attempt at a backend, and the affinity verdict.

use crate::affinity::decision::{Decision, Placement};
use crate::affinity::lookup::SessionLookup;
use crate::affinity::{Outcome, Pin, Reissue};
use crate::filter::FilterState;
use crate::pool::{BackendSlot, Slots};
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// Per-request state shared across the hooks.
pub struct RequestCtx {
    /// When the request began (the pool's total timeout counts from here).
    pub started: Instant,
    pub client: Client,
    /// The matched route (an index into the listener's routes), once `request_filter` has one.
    pub route: Option<usize>,
    pub attempt: Attempt,
    pub verdict: Verdict,
    /// The pool's backends as the request's decision saw them (indexes in `attempt` and
    /// `verdict` are into this list), once `upstream_peer` ran.
    pub slots: Option<Slots>,
    /// What the route's Rust filters share and leave behind (untouched without filters).
    pub(crate) filters: FilterState,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            client: Client::default(),
            route: None,
            attempt: Attempt::default(),
            verdict: Verdict::default(),
            slots: None,
            filters: FilterState::default(),
        }
    }

    /// The backend at `index` of the list the request's decision saw.
    pub fn backend(&self, index: Option<usize>) -> Option<&BackendSlot> {
        self.slots.as_ref()?.get(index?).map(|s| &**s)
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}

/// Who sent the request, read once in `request_filter`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Client {
    /// The request came over TLS, ours or a trusted proxy's (cookies get `Secure`,
    /// `X-Forwarded-Proto: https`).
    pub tls: bool,
    /// The TCP peer's address (canonical: IPv4-mapped addresses as IPv4).
    pub peer: Option<IpAddr>,
    /// The peer is one of the `trusted_proxies`.
    pub peer_trusted: bool,
    /// The client's IP, resolved through trusted proxies (set with the session lookup).
    pub ip: Option<IpAddr>,
}

/// The current attempt at a backend (a failed connect starts another).
#[derive(Default)]
pub struct Attempt {
    /// Backends this request failed to connect to.
    pub failed: Vec<usize>,
    /// The backend of this attempt.
    pub backend: Option<usize>,
    /// When this attempt's backend was chosen.
    pub started: Option<Instant>,
    /// Counts the request as in flight on `backend` while it lives.
    pub in_flight: Option<InFlight>,
    /// A backend's final response header arrived.
    pub responded: bool,
    /// Its body has a `Content-Length` and is pushed to the client as it comes.
    pub held_body: bool,
    /// An upgrade request's gate: see [`crate::pool::upgrade_gate`].
    pub upgrade_gate: Option<std::sync::Arc<crate::pool::upgrade_gate::Gate>>,
    /// Taken before an upgrade's backend was chosen: see [`crate::pool::upgraded::Ticket`].
    pub upgrade_ticket: Option<crate::pool::upgraded::Ticket>,
    /// This request's upgraded upstream connection, while it is registered for closing.
    pub upgraded: Option<crate::pool::upgraded::Registration>,
}

/// What affinity made of the request: its session records, the decision's favourite and
/// outcome, whether the answer gets a cookie, whether the failure policy answered.
#[derive(Debug, Default)]
pub struct Verdict {
    /// `None` until the first `upstream_peer` call reads the records.
    pub lookup: Option<SessionLookup>,
    /// The backend of the first decision (the favourite, Stingray's `%F`).
    pub favoured: Option<usize>,
    pub outcome: Outcome,
    /// The response gets the affinity cookie for the attempt's backend.
    pub issue_cookie: bool,
    /// The response sends the request's valid affinity cookie again (refreshed, or in the
    /// pool's current format).
    pub reissue: Option<Reissue>,
    /// The backend the session requires could not serve: the class's failure policy answered.
    pub refused: bool,
}

impl Verdict {
    /// The backend the request's session records name (usable or not), for the log.
    pub fn required(&self) -> Option<usize> {
        match self.lookup.map(|l| l.pin) {
            Some(Pin::Backend(i)) => Some(i),
            _ => None,
        }
    }

    /// Take a decision in: its placement, or that the failure policy answers (`Refused`) or
    /// nothing can serve (`Unavailable`). The first decision's backend is the favourite.
    pub fn record(&mut self, decision: &Decision) -> Option<Placement> {
        match *decision {
            Decision::Backend(placement) => {
                self.outcome = placement.outcome;
                self.issue_cookie = placement.issue_cookie;
                self.reissue = self.lookup.and_then(|l| l.reissue_for(&placement));
                self.favoured = self.favoured.or(Some(placement.backend));
                Some(placement)
            }
            Decision::Refused { required } => {
                self.refused = true;
                self.reissue = None;
                self.outcome = Outcome::Failed;
                self.favoured = self.favoured.or(required);
                None
            }
            Decision::Unavailable => {
                self.outcome = Outcome::Failed;
                self.reissue = None;
                None
            }
        }
    }
}

/// Counts a request as in flight on a backend for as long as it lives; the backend the
/// attempt went to, as it was when chosen (even if removed since).
pub struct InFlight {
    slot: Arc<BackendSlot>,
}

impl InFlight {
    pub fn start(slot: &Arc<BackendSlot>) -> Self {
        slot.in_flight.fetch_add(1, Relaxed);
        InFlight { slot: slot.clone() }
    }

    /// The attempt's backend.
    pub fn slot(&self) -> &BackendSlot {
        &self.slot
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slot.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_decision_is_the_favourite_and_a_refusal_keeps_the_required_backend() {
        let mut verdict = Verdict::default();
        let placed = Decision::Backend(Placement {
            backend: 2,
            outcome: Outcome::New,
            issue_cookie: true,
        });
        assert_eq!(verdict.record(&placed).map(|p| p.backend), Some(2));
        let retry = Decision::Backend(Placement {
            backend: 0,
            outcome: Outcome::Rebalanced,
            issue_cookie: true,
        });
        verdict.record(&retry);
        assert_eq!(verdict.favoured, Some(2));
        assert_eq!(verdict.outcome, Outcome::Rebalanced);

        let mut refused = Verdict::default();
        assert!(refused
            .record(&Decision::Refused { required: Some(1) })
            .is_none());
        assert!(refused.refused);
        assert_eq!(refused.favoured, Some(1));
        assert_eq!(refused.outcome, Outcome::Failed);
    }
}
