//! The Pingora hooks: `impl ProxyHttp for StickyProxy`. Each hook is thin and calls the pure
//! functions of `affinity`, `pool` and `headers`.
//!
//! | hook | what it does here |
//! |---|---|
//! | `upstream_peer` | reads the request's session records once (`affinity::lookup`; a learned id the local table misses is asked of the shared store, if any, within its lookup timeout), then decides (`affinity::decision::decide`): recorded backend if usable, else the hash key's backend, else a new pick — skipping backends this request already failed on; an upgrade's peer gets its own gated connection ([`upgrade`]) |
//! | `request_filter` | tells the client connection its head was read, turns on pipelining ([`downstream`]); TLS or not (and TLS 1.3 when required), redirect to HTTPS, the route |
//! | `connected_to_upstream` | for a WebSocket upgrade: arms its gate ([`upgrade`]) and registers its upstream socket, so the admin API can close it |
//! | `fail_to_connect` | remembers the failed backend and marks the error retryable, so `upstream_peer` re-picks (nothing was sent yet, so no body is sent twice) |
//! | `upstream_request_filter` | strips the client's hop (hop-by-hop fields, those `Connection` names; refuses a `Connection` naming protected fields: 400), client-sent internal/forwarding headers and (with `indirect`) the proxy's cookies; sets `X-Forwarded-*`; joins HTTP/2's split `Cookie` headers; gives an HTTP/1.0 request without `Host` its backend's (`request`) |
//! | `request_body_filter` | only the test-only delay of an upgrade request's end ([`upgrade`]) |
//! | `response_filter` | `response::apply`: opt-out header, internal headers, the backend's `Set-Cookie` for the listener's affinity cookie names (removed), learning session ids, recording client IPs, `Set-Cookie` for a new or moved session; whether the body is to be pushed out as it comes ([`downstream`]) |
//! | `response_body_filter` | pushes each piece of a `Content-Length` body out at once ([`downstream`]) |
//! | `fail_to_proxy` | answers errors with a short plain body that leaks nothing |
//! | `logging` | the client connection may wait for its next request ([`downstream`]); releases the in-flight count and writes the decision line |

pub mod admission;
pub(crate) mod answer;
pub(crate) mod choose;
pub mod ctx;
pub mod downstream;
mod filtering;
pub(crate) mod log;
pub(crate) mod request;
pub(crate) mod response;
pub mod routes;
pub mod upgrade;

use crate::config::RedirectToHttps;
use answer::{respond_early, respond_plain};
use async_trait::async_trait;
use bytes::Bytes;
use ctx::RequestCtx;
use http::HeaderName;
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;

/// Settings shared by every listener.
#[derive(Debug, Default)]
pub struct ProxySettings {
    /// Response headers removed before the client sees them (and client-sent copies).
    pub hide_headers: Vec<HeaderName>,
    /// Proxies whose forwarding headers are believed for the client IP.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub access_log_format: crate::config::AccessLogFormat,
    /// Set when this process is handing over or shutting down.
    pub leaving: crate::lifecycle::Leaving,
    /// Test aid: delay the end of an upgrade request's body ([`upgrade`]); `None` in production.
    pub upgrade_body_delay: Option<std::time::Duration>,
}

/// The proxy service for one listener: its routes.
pub struct StickyProxy {
    router: routes::Router,
    settings: Arc<ProxySettings>,
    /// A plain listener that sends every request to HTTPS.
    redirect_to_https: Option<RedirectToHttps>,
    /// A TLS listener with `min_version: TLSv1.3`.
    require_tls13: bool,
}

impl StickyProxy {
    pub fn new(
        router: routes::Router,
        settings: Arc<ProxySettings>,
        listener: &crate::config::ListenerConfig,
    ) -> Self {
        StickyProxy {
            router,
            settings,
            redirect_to_https: listener.redirect_to_https,
            require_tls13: listener
                .tls
                .as_ref()
                .is_some_and(|t| t.min_version == crate::config::MinVersion::Tls13),
        }
    }

    /// The route a request was matched to (set by `request_filter`).
    fn route(&self, ctx: &RequestCtx) -> Option<&routes::Route> {
        self.router.routes.get(ctx.route?)
    }
}

#[async_trait]
impl ProxyHttp for StickyProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    /// No downstream modules. Pingora's default adds a response-compression module (disabled,
    /// level 0) whose context is built and whose filters run on every request; the proxy
    /// offers no compression, so that was work for nothing.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        downstream::on_request_head(session);
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let tls = session.digest().and_then(|d| d.ssl_digest.as_ref());
        let req = session.req_header();
        ctx.client = admission::client_of(peer, tls.is_some(), req, &self.settings.trusted_proxies);
        let tls_version = tls.map(|t| t.version.as_ref());
        let early = admission::early_answer(
            req,
            &ctx.client,
            tls_version,
            self.require_tls13,
            self.redirect_to_https,
        );
        if let Some(answer) = early {
            respond_early(session, answer).await;
            return Ok(true);
        }
        ctx.route = self.router.select(session.req_header());
        let Some(route) = self.route(ctx) else {
            respond_plain(session, self.router.unmatched_status).await;
            return Ok(true);
        };
        if route.filters.is_empty() {
            return Ok(false);
        }
        let trusted = &self.settings.trusted_proxies;
        Ok(filtering::on_request(session, route, trusted, ctx).await)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(route) = self.route(ctx) else {
            return Error::e_explain(ErrorType::HTTPStatus(404), "no route");
        };
        let upgrade = is_websocket_opening(session);
        let trusted = &self.settings.trusted_proxies;
        choose::peer(
            route,
            session.req_header(),
            (upgrade, upgrade),
            trusted,
            ctx,
        )
        .await
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        choose::connect_failed(ctx, e)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A WebSocket (upgrade): arm its gate; remember the connection so that an operator can
        // close it, kept only if the backend agrees to the upgrade (see `response_filter`).
        #[cfg(unix)]
        if let Some(gate) = &ctx.attempt.upgrade_gate {
            let fd = upgrade::connected(gate, fd);
            if let (Some(route), Some(backend), Some(ticket)) = (
                self.route(ctx),
                ctx.attempt.backend,
                ctx.attempt.upgrade_ticket,
            ) {
                ctx.attempt.upgraded = route.pool.upgraded.register_socket(backend, fd, ticket);
            }
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(delay) = self.settings.upgrade_body_delay {
            if end_of_stream && is_websocket_opening(session) && !session.was_upgraded() {
                tokio::time::sleep(delay).await;
            }
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let downstream = session.req_header();
        match self.route(ctx) {
            Some(route) => request::prepare(downstream, upstream_request, route, &self.router, ctx),
            None => request::strip_client_hop(downstream, upstream_request, &Default::default()),
        }
    }

    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if session.was_upgraded() {
            return Ok(None);
        }
        // The total timeout also bounds a body that trickles in (each read is within the read
        // timeout): past it, the response is cut (its header has gone out already).
        let total = self.route(ctx).and_then(|r| r.pool.total_timeout);
        if total.is_some_and(|t| !end_of_stream && ctx.started.elapsed() > t) {
            return Error::e_explain(ErrorType::ReadTimedout, "total timeout");
        }
        Ok(None)
    }

    /// Each piece of a response body, before it is written to the client: pushed out at once
    /// while a `Content-Length` answer is still coming ([`downstream::on_response_body`]).
    fn response_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        downstream::on_response_body(session, ctx.attempt.held_body, end_of_stream);
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(route) = self.route(ctx) else {
            return Ok(());
        };
        // 1xx (100 Continue, 103 Early Hints) are not the answer: only the internal headers go.
        // 101 Switching Protocols is the final answer of an upgrade (WebSocket): full treatment.
        if upstream_response.status.is_informational() && upstream_response.status != 101 {
            response::strip_internal(&route.pool, &self.settings, upstream_response);
            return Ok(());
        }
        ctx.attempt.held_body = downstream::on_response_head(session, upstream_response);
        if self.settings.leaving.is_set() {
            // Let kept-alive clients reconnect (to the new process, during an upgrade) rather
            // than be cut off when this one drops its idle connections.
            session.set_keepalive(None);
        }
        let names = &self.router.cookie_names;
        response::on_final(route, names, &self.settings, upstream_response, ctx)?;
        if route.filters.is_empty() {
            return Ok(());
        }
        filtering::on_response(session, route, upstream_response, ctx).await
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = if filtering::failed(ctx) {
            respond_plain(session, 500).await;
            500
        } else {
            answer::on_failure(session, self.route(ctx), e, ctx).await
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        downstream::on_request_done(session);
        let route = self.route(ctx);
        log::count(route, ctx);
        let format = self.settings.access_log_format;
        log::decision_line(session, route, ctx, e, format);
        if let Some(route) = route.filter(|r| !r.filters.is_empty()) {
            filtering::on_log(session, route, ctx);
        }
    }
}

/// A WebSocket opening: the one upgrade passed on to a backend. Another upgrade offer (`Upgrade:
/// h2c` from `curl --http2` on `http://`) is stripped on the way and answered as the plain
/// request it then is — with the pool's total timeout and a pooled connection, not an
/// upgrade's own.
pub(crate) fn is_websocket_opening(session: &Session) -> bool {
    session.is_upgrade_req()
        && crate::headers::hop_by_hop::is_websocket_opening(session.req_header(), true)
}
