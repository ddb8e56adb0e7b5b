//! The Pingora hooks: `impl ProxyHttp for StickyProxy`. Each hook is thin and calls the pure
//! functions of `affinity`, `pool` and `headers`.
//!
//! | hook | what it does here |
//! |---|---|
//! | `upstream_peer` | reads the request's session records once ([`ctx::look_up_session`]; a learned id the local table misses is asked of the shared store, if any, within its lookup timeout), then [`decide`]s: recorded backend if usable, else the hash key's backend, else a new pick — skipping backends this request already failed on; an upgrade's peer gets its own gated connection ([`upgrade`]) |
//! | `request_filter` | tells the client connection its head was read, turns on pipelining ([`downstream`]); TLS or not (and TLS 1.3 when required), redirect to HTTPS, the route |
//! | `connected_to_upstream` | for a WebSocket upgrade: arms its gate ([`upgrade`]) and registers its upstream socket, so the admin API can close it |
//! | `fail_to_connect` | remembers the failed backend and marks the error retryable, so `upstream_peer` re-picks (nothing was sent yet, so no body is sent twice) |
//! | `upstream_request_filter` | strips client-sent internal/forwarding headers and (with `indirect`) the proxy's cookies; sets `X-Forwarded-*`; joins HTTP/2's split `Cookie` headers; gives an HTTP/1.0 request without `Host` its backend's ([`request`]) |
//! | `request_body_filter` | only the test-only delay of an upgrade request's end ([`upgrade`]) |
//! | `response_filter` | [`response::apply`]: opt-out header, internal headers, the backend's `Set-Cookie` for the listener's affinity cookie names (removed), learning session ids, recording client IPs, `Set-Cookie` for a new or moved session; whether the body is to be pushed out as it comes ([`downstream`]) |
//! | `response_body_filter` | pushes each piece of a `Content-Length` body out at once ([`downstream`]) |
//! | `fail_to_proxy` | answers errors with a short plain body that leaks nothing |
//! | `logging` | the client connection may wait for its next request ([`downstream`]); releases the in-flight count and writes the decision line |

mod answer;
pub mod ctx;
pub mod downstream;
mod request;
mod response;
pub mod routes;
pub mod upgrade;

use crate::access_log;
use crate::affinity::decision::decide;
use crate::affinity::key::RequestView;
use crate::affinity::{client_ip, Outcome, Pin};
use crate::config::{FailurePolicy, RedirectToHttps};
use crate::headers;
use crate::pool::Pool;
use answer::{respond, respond_plain, respond_policy, TEXT_PLAIN};
use async_trait::async_trait;
use bytes::Bytes;
use ctx::{InFlight, RequestCtx};
use http::header::{COOKIE, HOST};
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

    /// A trusted proxy in front (`trusted_proxies`) says the client spoke HTTPS to it
    /// (`X-Forwarded-Proto: https`): the request counts as HTTPS (Secure cookie, the header
    /// passed on). Anyone else's `X-Forwarded-Proto` is ignored and replaced.
    fn https_by_trusted_proxy(session: &Session, peer_trusted: bool) -> bool {
        peer_trusted
            && session
                .req_header()
                .headers
                .get(headers::X_FORWARDED_PROTO)
                .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"https"))
    }

    /// The route a request was matched to (set by `request_filter`).
    fn route(&self, ctx: &RequestCtx) -> Option<&routes::Route> {
        self.router.routes.get(ctx.route)
    }
}

/// A backend's name, or `-`.
fn backend_name(pool: &Pool, index: Option<usize>) -> &str {
    index
        .and_then(|i| pool.slots.get(i))
        .map_or("-", |s| s.name.as_str())
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
        // CONNECT gets this far (`allow_connect_method_proxying`) only for the proxy's own 405:
        // it opens no tunnels, and Pingora's 405 names Pingora.
        if session.req_header().method == http::Method::CONNECT {
            respond_plain(session, 405).await;
            return Ok(true);
        }
        ctx.peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_canonical());
        ctx.peer_trusted = ctx
            .peer
            .is_some_and(|ip| client_ip::is_trusted(&ip, &self.settings.trusted_proxies));
        if let Some(ssl) = session.digest().and_then(|d| d.ssl_digest.as_ref()) {
            ctx.tls = true;
            // Clients that offer no TLS 1.3 suite are refused in the handshake; one that
            // offered 1.3 suites but still negotiated 1.2 is refused here, before any routing.
            if self.require_tls13 && !crate::tls::is_tls13(&ssl.version) {
                let body = Bytes::from_static(b"426 TLS 1.3 required\n");
                // (Pingora drops an `Upgrade` header from any answer but a 101, so the body
                // says what is needed.) The connection is closed after the answer.
                respond(session, 426, TEXT_PLAIN, body, None).await;
                return Ok(true);
            }
        }
        if !ctx.tls && Self::https_by_trusted_proxy(session, ctx.peer_trusted) {
            ctx.tls = true;
        }
        // (Not when a trusted TLS terminator in front says the client spoke HTTPS: that would
        // redirect forever.)
        if let Some(redirect) = self.redirect_to_https.filter(|_| !ctx.tls) {
            let req = session.req_header();
            let host = req
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri.authority().map(|a| a.as_str()));
            let target = host.and_then(|host| {
                headers::https_location(host, redirect.port, req.uri.path_and_query())
            });
            match target {
                Some(location) => {
                    let body = Bytes::from_static(b"Moved to HTTPS\n");
                    let location = (http::header::LOCATION, location);
                    respond(session, redirect.status, TEXT_PLAIN, body, Some(location)).await;
                }
                None => respond_plain(session, 400).await,
            }
            return Ok(true);
        }
        if request::lacks_required_host(session.req_header()) {
            respond_plain(session, 400).await;
            return Ok(true);
        }
        match self.router.select(session.req_header()) {
            Some(index) => {
                ctx.route = index;
                Ok(false)
            }
            None => {
                respond_plain(session, self.router.unmatched_status).await;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(route) = self.route(ctx) else {
            return Error::e_explain(ErrorType::HTTPStatus(404), "no route");
        };
        let pool = &route.pool;
        let upgrade = session.is_upgrade_req();
        // What is left of the pool's total timeout (retries included); none left: 504. Not for
        // upgrades: a WebSocket lives as long as its ends want.
        let total = pool.total_timeout.filter(|_| !upgrade);
        let remaining = match total {
            Some(total) => match total.checked_sub(ctx.started.elapsed()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Error::e_explain(ErrorType::ReadTimedout, "total timeout"),
            },
            None => None,
        };
        let affinity = route.affinity.as_deref();
        let req = session.req_header();
        if ctx.session.is_none() {
            ctx.client_ip = ctx
                .peer
                .map(|ip| client_ip::resolve(ip, &req.headers, &self.settings.trusted_proxies));
            let mut lookup =
                ctx::look_up_session(pool, affinity, &req.uri, &req.headers, ctx.client_ip);
            if lookup.cookie_invalid {
                route.metrics.cookie_verification_failure();
            }
            // A learned id the local table misses: ask the shared store, if any (bounded by
            // its lookup timeout; nothing when it is down).
            let learned = affinity.and_then(|a| a.learned.as_ref());
            if let (Some(key), Some(learned)) = (lookup.learned_miss(), learned) {
                if learned.store.is_some() {
                    lookup.learned_hit = learned.remote(key).await;
                    lookup.settle();
                }
            }
            ctx.session = Some(lookup);
        }
        let req = session.req_header();
        let lookup = ctx.session.unwrap_or_default();
        // A retry: the previous attempt no longer counts as in flight.
        ctx.in_flight = None;
        let client_ip = ctx.client_ip;
        let decision = decide(
            lookup.pin,
            affinity.map(|a| a.mechanisms()).unwrap_or_default(),
            &ctx.failed,
            |i| pool.slots.get(i).is_some_and(|s| s.is_usable()),
            |failed| {
                let hash = affinity?.hash.as_ref()?;
                let view = RequestView {
                    uri: &req.uri,
                    headers: &req.headers,
                    client_ip,
                };
                let key = crate::affinity::key::first_key(&hash.sources, &view)?;
                Some(hash.select(&key, &pool.slots, failed))
            },
            |failed| pool.select_new(failed),
        );
        if let Some(policy) = affinity.map(|a| &a.failure) {
            let required_moved = match lookup.pin {
                Pin::Backend(i) => decision.backend != Some(i),
                Pin::Missing => true,
                Pin::Absent | Pin::Invalid => false,
            };
            if required_moved && *policy != FailurePolicy::Rebalance {
                // The backend the session requires cannot serve: the class's policy answers.
                ctx.failure_policy = Some(policy.name());
                ctx.outcome = Outcome::Failed;
                ctx.selected = None;
                ctx.favoured = ctx.favoured.or(match lookup.pin {
                    Pin::Backend(i) => Some(i),
                    _ => None,
                });
                return Error::e_explain(ErrorType::HTTPStatus(503), "failure policy");
            }
        }
        ctx.outcome = decision.outcome;
        ctx.selected = decision.backend;
        if ctx.favoured.is_none() {
            ctx.favoured = decision.backend;
        }
        ctx.issue_cookie = decision.issue_cookie;
        let Some(index) = decision.backend else {
            return Error::e_explain(ErrorType::HTTPStatus(503), "no usable backend in the pool");
        };
        ctx.in_flight = Some(InFlight::start(&pool.slots, index));
        ctx.upstream_started = Some(std::time::Instant::now());
        pool.slots[index].record_request(decision.outcome == Outcome::Sticky);
        let mut peer = pool.peer(index, remaining);
        if upgrade {
            ctx.upgrade_gate = Some(crate::pool::upgrade_gate::gate_peer(&mut peer));
        }
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(index) = ctx.selected {
            if !ctx.failed.contains(&index) {
                ctx.failed.push(index);
            }
        }
        // Nothing reached the backend, so trying another one cannot send the request twice.
        // `upstream_peer` answers 503 once every backend has failed.
        e.set_retry(true);
        e
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
        if let Some(gate) = &ctx.upgrade_gate {
            let fd = upgrade::connected(gate, fd);
            if let (Some(route), Some(backend)) = (self.route(ctx), ctx.selected) {
                ctx.upgraded = route.pool.upgraded.register_socket(backend, fd);
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
            if end_of_stream && session.is_upgrade_req() && !session.was_upgraded() {
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
        let Some(route) = self.route(ctx) else {
            return Ok(());
        };
        // One pass over the request's few header names (not a map lookup per name to strip):
        // the names to strip, and their underscore look-alikes (`X_Forwarded_For`) that
        // CGI-style backends read as the same variable. Most requests carry none: no removal,
        // no allocation.
        let strip = &route.strip_request_headers;
        let doomed: Vec<HeaderName> = upstream_request
            .headers
            .keys()
            .filter(|n| {
                strip.contains(n)
                    || (n.as_str().contains('_') && {
                        let dashed = n.as_str().replace('_', "-");
                        strip.iter().any(|s| s.as_str() == dashed)
                    })
            })
            .cloned()
            .collect();
        for name in doomed {
            upstream_request.remove_header(&name);
        }
        // Every affinity cookie of this listener (with `indirect`), whatever this route's class:
        // a `class: none` route on the same host receives the browser's cookies too.
        if !self.router.indirect_cookie_names.is_empty() {
            request::strip_affinity_cookies(upstream_request, &self.router.indirect_cookie_names);
        }
        request::name_missing_host(session.req_header(), upstream_request, route, ctx.selected)?;
        // The forwarding headers were removed above, so appending sets them. A trusted proxy's
        // chain is kept and the peer appended; anyone else's is replaced by the peer.
        if let Some(ip) = ctx.peer {
            let trusted = ctx.peer_trusted;
            let chain = session
                .req_header()
                .headers
                .get_all(headers::X_FORWARDED_FOR);
            let value = match chain.iter().next() {
                Some(_) if trusted => {
                    let mut joined: Vec<u8> = Vec::new();
                    for hop in chain.iter() {
                        joined.extend_from_slice(hop.as_bytes());
                        joined.extend_from_slice(b", ");
                    }
                    joined.extend_from_slice(headers::ip_header_value(ip).as_bytes());
                    http::HeaderValue::from_bytes(&joined)
                        .unwrap_or_else(|_| headers::ip_header_value(ip))
                }
                _ => headers::ip_header_value(ip),
            };
            upstream_request.append_header("x-forwarded-for", value)?;
        }
        let proto = if ctx.tls { "https" } else { "http" };
        upstream_request
            .append_header("x-forwarded-proto", http::HeaderValue::from_static(proto))?;
        // HTTP/2 clients may split cookies over several headers; an HTTP/1.1 backend expects
        // one (RFC 9113 §8.2.3).
        if upstream_request
            .headers
            .get_all(COOKIE)
            .iter()
            .nth(1)
            .is_some()
        {
            if let Some(joined) = headers::join_cookie_headers(&upstream_request.headers) {
                upstream_request.insert_header(COOKIE, joined)?;
            }
        }
        if let Some(host) = session.req_header().headers.get(HOST).cloned().or_else(|| {
            let authority = session.req_header().uri.authority()?;
            http::HeaderValue::from_str(authority.as_str()).ok()
        }) {
            upstream_request.append_header("x-forwarded-host", host)?;
        }
        Ok(())
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
        if let Some(total) = total {
            if !end_of_stream && ctx.started.elapsed() > total {
                return Error::e_explain(ErrorType::ReadTimedout, "total timeout");
            }
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
        downstream::on_response_body(session, ctx.held_body, end_of_stream);
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // 1xx (100 Continue, 103 Early Hints) are not the answer: only the internal headers go.
        // 101 Switching Protocols is the final answer of an upgrade (WebSocket): full treatment.
        if upstream_response.status.is_informational() && upstream_response.status != 101 {
            if let Some(route) = self.route(ctx) {
                response::strip_internal(&route.pool, &self.settings, upstream_response);
            }
            return Ok(());
        }
        ctx.responded = true;
        ctx.held_body = downstream::on_response_head(session, upstream_response);
        if upstream_response.status != 101 {
            // Not upgraded: the connection may go back to the pool for other requests.
            ctx.upgraded = None;
        }
        if self.settings.leaving.is_set() {
            // Let kept-alive clients reconnect (to the new process, during an upgrade) rather
            // than be cut off when this one drops its idle connections.
            session.set_keepalive(None);
        }
        let Some(route) = self.route(ctx) else {
            return Ok(());
        };
        if let (Some(started), Some(backend)) = (ctx.upstream_started.take(), ctx.selected) {
            route
                .metrics
                .upstream_latency(backend, started.elapsed().as_secs_f64());
        }
        let names = &self.router.cookie_names;
        response::apply(route, names, &self.settings, upstream_response, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        if ctx.failure_policy.is_some() {
            let policy = self
                .route(ctx)
                .and_then(|r| r.affinity.as_ref())
                .map(|a| a.failure.clone())
                .unwrap_or_default();
            let code = respond_policy(session, &policy).await;
            return FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            };
        }
        let code = headers::final_error_status(e, ctx.failed.len());
        if code == 503 && (ctx.selected.is_none() || !ctx.responded) {
            ctx.outcome = Outcome::Failed;
        }
        if code > 0 {
            respond_plain(session, code).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        downstream::on_request_done(session);
        ctx.in_flight = None;
        let route = self.route(ctx);
        // The backend that answered: one whose response header reached us.
        let actual = if ctx.responded { ctx.selected } else { None };
        if let Some(route) = route {
            route.metrics.request(actual, ctx.outcome);
        }
        if !log::log_enabled!(target: access_log::TARGET, log::Level::Info) {
            return;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let required = match ctx.session.map(|s| s.pin) {
            Some(Pin::Backend(i)) => Some(i),
            _ => None,
        };
        let client = session
            .client_addr()
            .map_or_else(|| "-".to_string(), |a| a.to_string());
        let name = |index: Option<usize>| route.map_or("-", |r| backend_name(&r.pool, index));
        let entry = access_log::Entry {
            client: &client,
            method: req.method.as_str(),
            path: req.uri.path(),
            status,
            duration_ms: ctx.started.elapsed().as_millis(),
            pool: route.map_or("-", |r| r.pool.name.as_str()),
            route: route.map_or("-", |r| r.name.as_str()),
            class: route.map_or("-", |r| r.class.as_str()),
            favoured: name(ctx.favoured),
            required: name(required),
            actual: name(actual),
            outcome: ctx.outcome.as_str(),
            failure_policy: ctx.failure_policy,
            error: e.map(|e| e.etype().as_str()),
        };
        log::info!(target: access_log::TARGET, "{}", entry.render(self.settings.access_log_format));
    }
}
