//! Choosing a request's backend (what `upstream_peer` does): read the session records once
//! (asking the shared store for a learned id the local table misses), [`decide`], take the
//! decision into the request's verdict, and build the peer to connect to.

use super::ctx::{Client, InFlight, RequestCtx};
use super::routes::Route;
use crate::affinity::client_ip;
use crate::affinity::decision::{decide, Decision, Placement};
use crate::affinity::key::RequestView;
use crate::affinity::lookup::{look_up_session, SessionLookup};
use crate::affinity::Outcome;
use crate::pool::{BackendSlot, Slots};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything `upstream_peer` does, for the hook and for programs that embed the engine: read
/// the session records on the first call, [`decide`] (skipping backends this request failed
/// on), take the decision into the verdict, and start the attempt — or the error that answers
/// the request (the failure policy, 503, 504 for a spent total timeout). `upgrade`: the request
/// asks for an upgrade (no total timeout); `gate`: give its peer the gated connection of
/// [`crate::pool::upgrade_gate`] (the proxy's `connected_to_upstream` arms it).
pub(crate) async fn peer(
    route: &Route,
    req: &RequestHeader,
    (upgrade, gate): (bool, bool),
    trusted_proxies: &[ipnet::IpNet],
    ctx: &mut RequestCtx,
) -> Result<Box<HttpPeer>> {
    let remaining = remaining_time(route, ctx.started, upgrade)?;
    if ctx.verdict.lookup.is_none() {
        let lookup = look_up(route, req, &mut ctx.client, trusted_proxies);
        ctx.verdict.lookup = Some(lookup.await);
    }
    // A retry: the previous attempt no longer counts as in flight.
    ctx.attempt.in_flight = None;
    // An upgrade's ticket, taken before its backend is chosen: a close of that backend's
    // upgraded connections from now on also closes this one (`pool::upgraded`).
    ctx.attempt.upgrade_ticket = gate.then(|| route.pool.upgraded.ticket());
    // One list of the pool's backends for the decision and the attempt (backends added or
    // removed meanwhile count from the next request on).
    let slots = route.pool.slots();
    let decision = decision(route, &slots, req, ctx);
    let placed = ctx.verdict.record(&decision);
    let slot = placed.and_then(|p| slots.get(p.backend)).cloned();
    ctx.slots = Some(slots);
    match (placed, slot) {
        (Some(placement), Some(slot)) => {
            Ok(start_attempt(route, &slot, placement, remaining, gate, ctx))
        }
        _ => {
            ctx.attempt.backend = None;
            Err(no_attempt(&decision))
        }
    }
}

/// A connect to the attempt's backend failed: remember the backend and mark the error
/// retryable, so that the next `upstream_peer` call picks another one. Nothing reached the
/// backend, so trying another one cannot send the request twice; once every backend has
/// failed, the decision is `Unavailable` (503).
pub(crate) fn connect_failed(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    if let Some(index) = ctx.attempt.backend {
        if !ctx.attempt.failed.contains(&index) {
            ctx.attempt.failed.push(index);
        }
    }
    e.set_retry(true);
    e
}

/// What is left of the pool's total timeout (retries included) for a request that began at
/// `started`: `Ok(None)` without one (or for an upgrade: a WebSocket lives as long as its ends
/// want), an error (answered 504) when nothing is left.
fn remaining_time(route: &Route, started: Instant, upgrade: bool) -> Result<Option<Duration>> {
    let Some(total) = route.pool.total_timeout.filter(|_| !upgrade) else {
        return Ok(None);
    };
    match total.checked_sub(started.elapsed()) {
        Some(left) if !left.is_zero() => Ok(Some(left)),
        _ => Error::e_explain(ErrorType::ReadTimedout, "total timeout"),
    }
}

/// The request's session records, read once: the local tables, then (for a learned id they
/// miss) the shared store, within its lookup timeout. Resolves the client IP on the way.
async fn look_up(
    route: &Route,
    req: &RequestHeader,
    client: &mut Client,
    trusted_proxies: &[ipnet::IpNet],
) -> SessionLookup {
    client.ip = client
        .peer
        .map(|ip| client_ip::resolve(ip, &req.headers, trusted_proxies));
    let affinity = route.affinity.as_deref();
    let mut lookup = look_up_session(&route.pool, affinity, &req.uri, &req.headers, client.ip);
    if lookup.cookie_invalid {
        route.metrics.cookie_verification_failure();
    }
    if let Some(expiry) = lookup.cookie_expired {
        route.metrics.cookie_expired(expiry);
    }
    let learned = affinity.and_then(|a| a.learned.as_ref());
    if let (Some(key), Some(learned)) = (lookup.learned_miss(), learned) {
        if learned.store.is_some() {
            lookup.learned_hit = learned.remote(key).await;
            lookup.settle();
        }
    }
    lookup
}

/// The decision for this attempt: the session's backend if usable, else the hash key's, else
/// the balancer's pick — skipping backends this request already failed on.
fn decision(route: &Route, slots: &Slots, req: &RequestHeader, ctx: &RequestCtx) -> Decision {
    let (pool, affinity) = (&route.pool, route.affinity.as_deref());
    let lookup = ctx.verdict.lookup.unwrap_or_default();
    decide(
        lookup.pin,
        affinity.map(|a| a.mechanisms()).unwrap_or_default(),
        &ctx.attempt.failed,
        |i| slots.get(i).is_some_and(|s| s.is_usable()),
        |failed| {
            let hash = affinity?.hash.as_ref()?;
            let view = RequestView {
                uri: &req.uri,
                headers: &req.headers,
                client_ip: ctx.client.ip,
            };
            Some(hash.select(&hash.key(&view)?, slots, failed))
        },
        |failed| pool.select_new(slots, failed),
    )
}

/// Start the attempt at `placement`'s backend: counted in flight and served, and the peer to
/// connect to (its timeouts capped to `remaining`; with `gate`, an upgrade's own gated
/// connection).
fn start_attempt(
    route: &Route,
    slot: &Arc<BackendSlot>,
    placement: Placement,
    remaining: Option<Duration>,
    gate: bool,
    ctx: &mut RequestCtx,
) -> Box<HttpPeer> {
    ctx.attempt.backend = Some(placement.backend);
    ctx.attempt.in_flight = Some(InFlight::start(slot));
    ctx.attempt.started = Some(Instant::now());
    slot.record_request(placement.outcome == Outcome::Sticky);
    let mut peer = route.pool.peer(slot, remaining);
    if gate {
        ctx.attempt.upgrade_gate = Some(crate::pool::upgrade_gate::gate_peer(&mut peer));
    }
    peer
}

/// The error `upstream_peer` returns when no attempt starts: the class's failure policy
/// answers (`fail_to_proxy`), or no backend can serve (503).
fn no_attempt(decision: &Decision) -> Box<Error> {
    match decision {
        Decision::Refused { .. } => Error::explain(ErrorType::HTTPStatus(503), "failure policy"),
        _ => Error::explain(ErrorType::HTTPStatus(503), "no usable backend in the pool"),
    }
}
