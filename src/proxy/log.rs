//! The decision line of a request (what `logging` writes): client, request, status, duration,
//! route and class, Stingray's favoured / required / actual backends, the outcome, and the
//! failure policy when it answered. Rendered only when the access log is on.

use super::ctx::{RequestCtx, Verdict};
use super::routes::Route;
use crate::access_log::{Entry, TARGET};
use crate::affinity::Outcome;
use crate::config::AccessLogFormat;
use crate::filter::{AffinityDecision, RouteNames};
use crate::pool::Slots;
use pingora_core::Error;
use pingora_proxy::Session;

/// Write the request's decision line (target [`TARGET`]), if that target is enabled.
pub(super) fn decision_line(
    session: &Session,
    route: Option<&Route>,
    ctx: &RequestCtx,
    error: Option<&Error>,
    format: AccessLogFormat,
) {
    if !log::log_enabled!(target: TARGET, log::Level::Info) {
        return;
    }
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let req = session.req_header();
    let client = session
        .client_addr()
        .map_or_else(|| "-".to_string(), |a| a.to_string());
    let name = |index: Option<usize>| ctx.backend(index).map_or("-", |s| s.name.as_str());
    let refused_by = route
        .and_then(|r| r.affinity.as_ref())
        .filter(|_| ctx.verdict.refused)
        .map(|a| a.failure.name());
    let entry = Entry {
        client: &client,
        method: req.method.as_str(),
        path: req.uri.path(),
        status,
        duration_ms: ctx.started.elapsed().as_millis(),
        pool: route.map_or("-", |r| r.pool.name.as_str()),
        route: route.map_or("-", |r| r.name.as_str()),
        class: route.map_or("-", |r| r.class.as_str()),
        favoured: name(ctx.verdict.favoured),
        required: name(ctx.verdict.required()),
        actual: name(answered_by(ctx)),
        outcome: ctx.verdict.outcome.as_str(),
        failure_policy: refused_by,
        error: error.map(|e| e.etype().as_str()),
    };
    log::info!(target: TARGET, "{}", entry.render(format));
}

/// The request is over: no longer in flight; counted in its route's metrics.
pub(crate) fn count(route: Option<&Route>, ctx: &mut RequestCtx) {
    ctx.attempt.in_flight = None;
    if let Some(route) = route {
        let answered_by = answered_by(ctx);
        route.metrics.request(answered_by, ctx.verdict.outcome);
    }
}

/// The backend that answered: the attempt's, once its response header reached us.
pub(crate) fn answered_by(ctx: &RequestCtx) -> Option<usize> {
    ctx.attempt.backend.filter(|_| ctx.attempt.responded)
}

/// What affinity decided for a request on `route`, as filters and embedding programs see it:
/// from its verdict, its attempt's backend, and the list of backends its decision saw (`slots`).
pub(crate) fn affinity_decision<'r>(
    route: &'r Route,
    slots: Option<&'r Slots>,
    backend: Option<usize>,
    verdict: &Verdict,
) -> AffinityDecision<'r> {
    let name = |index: Option<usize>| Some(slots?.get(index?)?.name.as_str());
    let cookie = route.affinity.as_ref().is_some_and(|a| a.cookie.is_some());
    AffinityDecision {
        outcome: verdict.outcome,
        backend: name(backend),
        favoured: name(verdict.favoured),
        required: name(verdict.required()),
        issue_cookie: cookie && verdict.issue_cookie && verdict.outcome != Outcome::OptedOut,
        refused: verdict.refused,
        route: route_names(route),
    }
}

/// The names of `route`: pool, route, class.
pub(crate) fn route_names(route: &Route) -> RouteNames<'_> {
    RouteNames {
        pool: &route.pool.name,
        route: &route.name,
        class: &route.class,
    }
}
