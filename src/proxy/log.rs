//! The decision line of a request (what `logging` writes): client, request, status, duration,
//! route and class, Stingray's favoured / required / actual backends, the outcome, and the
//! failure policy when it answered. Rendered only when the access log is on.

use super::ctx::RequestCtx;
use super::routes::Route;
use crate::access_log::{Entry, TARGET};
use crate::config::AccessLogFormat;
use crate::pool::Pool;
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
    let name = |index: Option<usize>| route.map_or("-", |r| backend_name(&r.pool, index));
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

/// The backend that answered: the attempt's, once its response header reached us.
pub(super) fn answered_by(ctx: &RequestCtx) -> Option<usize> {
    ctx.attempt.backend.filter(|_| ctx.attempt.responded)
}

/// A backend's name, or `-`.
fn backend_name(pool: &Pool, index: Option<usize>) -> &str {
    index
        .and_then(|i| pool.slots.get(i))
        .map_or("-", |s| s.name.as_str())
}
