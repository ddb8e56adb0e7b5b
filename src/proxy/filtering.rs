//! A route's Rust filters in the hooks ([`crate::filter`]): their request hooks once the route
//! is known (a filter's answer, or the proxy's 500 for a failed filter), their response hooks
//! after affinity applied to a backend's answer, their log hooks at the end. The hooks call these
//! only for a route that has filters.

use super::answer::{respond, respond_plain, TEXT_PLAIN};
use super::ctx::RequestCtx;
use super::log::affinity_decision;
use super::routes::Route;
use crate::affinity::client_ip;
use crate::filter::chain::{run_log, run_request, run_response, RequestStep};
use crate::filter::{ClientInfo, Exchange, FilterRequest, FilterResponse};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Run the route's request hooks; whether the request was answered (by a filter, or with the
/// proxy's plain 500 when one failed).
pub(super) async fn on_request(
    session: &mut Session,
    route: &Route,
    trusted_proxies: &[ipnet::IpNet],
    ctx: &mut RequestCtx,
) -> bool {
    let header = session.req_header_mut();
    let client = ClientInfo {
        ip: ctx
            .client
            .peer
            .map(|ip| client_ip::resolve(ip, &header.headers, trusted_proxies)),
        tls: ctx.client.tls,
    };
    let mut request = FilterRequest {
        header,
        client,
        route: super::log::route_names(route),
        data: &mut ctx.filters.data,
    };
    let step = run_request(&route.filters, &mut request).await;
    ctx.filters.record(&step);
    match step {
        RequestStep::Continue => return false,
        RequestStep::Answer(_, answer) => {
            let body = answer.body().clone();
            respond(session, answer.status(), TEXT_PLAIN, body, answer.headers()).await;
        }
        RequestStep::Failed(_) => respond_plain(session, 500).await,
    }
    true
}

/// Run the route's response hooks on a backend's final response head. A failed filter is an
/// error, which `fail_to_proxy` answers with a plain 500 ([`failed`]).
pub(super) async fn on_response(
    session: &Session,
    route: &Route,
    response: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let slots = ctx.slots.clone();
    let mut filtered = FilterResponse {
        header: response,
        request: session.req_header(),
        affinity: affinity_decision(route, slots.as_ref(), ctx.attempt.backend, &ctx.verdict),
        data: &mut ctx.filters.data,
    };
    match run_response(&route.filters, &mut filtered).await {
        Ok(()) => Ok(()),
        Err(name) => {
            ctx.filters.fail(name);
            Error::e_explain(ErrorType::InternalError, "a filter failed")
        }
    }
}

/// A filter failed after the request was sent on: `fail_to_proxy` answers 500.
pub(super) fn failed(ctx: &RequestCtx) -> bool {
    ctx.filters.failed
}

/// Run the route's log hooks.
pub(super) fn on_log(session: &Session, route: &Route, ctx: &RequestCtx) {
    let exchange = Exchange {
        request: session.req_header(),
        status: session.response_written().map_or(0, |r| r.status.as_u16()),
        affinity: affinity_decision(route, ctx.slots.as_ref(), ctx.attempt.backend, &ctx.verdict),
        answered_by: ctx.filters.answered_by.as_deref(),
        data: &ctx.filters.data,
    };
    run_log(&route.filters, &exchange);
}
