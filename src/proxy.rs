//! The Pingora hooks: `impl ProxyHttp for StickyProxy`. Each hook is thin and calls the pure
//! functions of `affinity`, `pool` and `headers`.
//!
//! | hook | what it does here |
//! |---|---|
//! | `upstream_peer` | reads the affinity cookie once, then [`decide`]s: pinned backend if usable, else a new pick skipping backends this request already failed on |
//! | `fail_to_connect` | remembers the failed backend and marks the error retryable, so `upstream_peer` re-picks (nothing was sent yet, so no body is sent twice) |
//! | `upstream_request_filter` | strips client-sent internal/forwarding headers and (with `indirect`) the proxy's cookies; sets `X-Forwarded-*` |
//! | `response_filter` | honours the opt-out header, removes internal headers, appends `Set-Cookie` for a new or moved session |
//! | `fail_to_proxy` | answers errors with a short plain body that leaks nothing |
//! | `logging` | releases the in-flight count and writes the decision line |

use crate::affinity::key::RequestView;
use crate::affinity::{client_ip, Outcome, Pin};
use crate::headers;
use crate::pool::ring::RingPick;
use crate::pool::{Pool, Slots};
use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, SET_COOKIE};
use http::HeaderName;
use pingora_core::protocols::http::ServerSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// Settings shared by every listener.
#[derive(Debug, Default)]
pub struct ProxySettings {
    /// Response headers removed before the client sees them (and client-sent copies).
    pub hide_headers: Vec<HeaderName>,
    /// Proxies whose forwarding headers are believed for the client IP.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The proxy service for one listener: the pool it serves.
pub struct StickyProxy {
    pool: Arc<Pool>,
    settings: Arc<ProxySettings>,
}

impl StickyProxy {
    pub fn new(pool: Arc<Pool>, settings: Arc<ProxySettings>) -> Self {
        StickyProxy { pool, settings }
    }
}

/// Counts a request as in flight on a backend for as long as it lives.
pub struct InFlight {
    slots: Slots,
    index: usize,
}

impl InFlight {
    fn start(slots: &Slots, index: usize) -> Self {
        slots[index].in_flight.fetch_add(1, Relaxed);
        InFlight {
            slots: slots.clone(),
            index,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slots[self.index].in_flight.fetch_sub(1, Relaxed);
    }
}

/// Per-request state shared across the hooks.
pub struct RequestCtx {
    started: Instant,
    /// What the request's affinity cookie said; read on the first `upstream_peer` call.
    pin: Option<Pin>,
    /// Backends this request failed to connect to.
    failed: Vec<usize>,
    /// The backend of the current attempt.
    selected: Option<usize>,
    outcome: Outcome,
    /// Whether the response gets the affinity cookie for `selected`.
    issue_cookie: bool,
    in_flight: Option<InFlight>,
}

/// Where a request goes, and what to report about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub backend: Option<usize>,
    pub outcome: Outcome,
    /// The response carries a fresh affinity cookie for `backend`.
    pub issue_cookie: bool,
}

/// Decide where a request goes: a valid cookie wins, then the hash key, then the balancer.
///
/// - `pin`: what the affinity cookie said (`None` when the pool inserts no cookie);
/// - `failed`: backends this request already failed on;
/// - `usable`: whether a backend can take a request now;
/// - `hashed`: the ring's pick for the request's hash key, skipping `failed`; the outer `None`
///   means the request has no key (or the pool no hashing), the inner one that no backend can
///   take it;
/// - `select_new`: the balancer's pick for a new session, skipping `failed`.
pub fn decide(
    pin: Option<Pin>,
    failed: &[usize],
    usable: impl Fn(usize) -> bool,
    hashed: impl FnOnce(&[usize]) -> Option<Option<RingPick>>,
    select_new: impl FnOnce(&[usize]) -> Option<usize>,
) -> Decision {
    let cookies = pin.is_some();
    let was_pinned = matches!(pin, Some(Pin::Backend(_)));
    if let Some(Pin::Backend(index)) = pin {
        if usable(index) && !failed.contains(&index) {
            return Decision {
                backend: Some(index),
                outcome: Outcome::Sticky,
                issue_cookie: false,
            };
        }
    }
    let failed_decision = Decision {
        backend: None,
        outcome: Outcome::Failed,
        issue_cookie: false,
    };
    if let Some(pick) = hashed(failed) {
        let Some(pick) = pick else {
            return failed_decision;
        };
        return Decision {
            backend: Some(pick.backend),
            outcome: if pick.home && !was_pinned {
                Outcome::Sticky
            } else {
                Outcome::Rebalanced
            },
            // A cookie that named a backend which cannot serve is replaced.
            issue_cookie: was_pinned,
        };
    }
    let Some(index) = select_new(failed) else {
        return failed_decision;
    };
    let outcome = match pin {
        None => Outcome::None,
        Some(Pin::Backend(_)) => Outcome::Rebalanced,
        Some(Pin::Absent | Pin::Invalid) => Outcome::New,
    };
    Decision {
        backend: Some(index),
        outcome,
        issue_cookie: cookies,
    }
}

/// The status the proxy answers an error with (0: the client is gone, answer nothing).
pub fn error_status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

#[async_trait]
impl ProxyHttp for StickyProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            pin: None,
            failed: Vec::new(),
            selected: None,
            outcome: Outcome::None,
            issue_cookie: false,
            in_flight: None,
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let pool = &self.pool;
        if ctx.pin.is_none() {
            if let Some(cookie) = &pool.cookie {
                let cookies = session.req_header().headers.get_all(COOKIE);
                ctx.pin = Some(cookie.pinned(cookies.iter().map(|v| v.as_bytes())));
            }
        }
        // A retry: the previous attempt no longer counts as in flight.
        ctx.in_flight = None;
        let decision = decide(
            ctx.pin,
            &ctx.failed,
            |i| pool.slots.get(i).is_some_and(|s| s.is_usable()),
            |failed| {
                let hash = pool.hash.as_ref()?;
                let req = session.req_header();
                let view = RequestView {
                    uri: &req.uri,
                    headers: &req.headers,
                    client_ip: session.client_addr().and_then(|a| a.as_inet()).map(|a| {
                        client_ip::resolve(a.ip(), &req.headers, &self.settings.trusted_proxies)
                    }),
                };
                let key = crate::affinity::key::first_key(&hash.sources, &view)?;
                Some(hash.select(&key, &pool.slots, failed))
            },
            |failed| pool.select_new(failed),
        );
        ctx.outcome = decision.outcome;
        ctx.selected = decision.backend;
        ctx.issue_cookie = decision.issue_cookie;
        let Some(index) = decision.backend else {
            return Error::e_explain(ErrorType::HTTPStatus(503), "no usable backend in the pool");
        };
        ctx.in_flight = Some(InFlight::start(&pool.slots, index));
        pool.slots[index].requests.fetch_add(1, Relaxed);
        Ok(pool.peer(index))
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

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        for name in headers::FORWARDING_HEADERS.iter() {
            upstream_request.remove_header(name);
        }
        for name in self.settings.hide_headers.iter() {
            upstream_request.remove_header(name);
        }
        upstream_request.remove_header(&self.pool.opt_out_header);

        if let Some(cookie) = &self.pool.cookie {
            if cookie.config.indirect {
                strip_affinity_cookies(upstream_request, cookie);
            }
        }

        if let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            upstream_request.insert_header("x-forwarded-for", ip.to_string())?;
        }
        upstream_request.insert_header("x-forwarded-proto", "http")?;
        let host = session.req_header().headers.get(HOST).cloned().or_else(|| {
            let authority = session.req_header().uri.authority()?;
            http::HeaderValue::from_str(authority.as_str()).ok()
        });
        if let Some(host) = host {
            upstream_request.insert_header("x-forwarded-host", host)?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if upstream_response.status.is_informational() {
            return Ok(());
        }
        let opted_out = upstream_response
            .headers
            .get_all(&self.pool.opt_out_header)
            .iter()
            .any(|v| headers::is_opt_out(v.as_bytes()));
        upstream_response.remove_header(&self.pool.opt_out_header);
        for name in self.settings.hide_headers.iter() {
            upstream_response.remove_header(name);
        }
        let Some(affinity) = &self.pool.cookie else {
            return Ok(());
        };
        if opted_out {
            ctx.outcome = Outcome::OptedOut;
            return Ok(());
        }
        if !ctx.issue_cookie {
            return Ok(());
        }
        let Some((main, twin)) = ctx.selected.and_then(|i| affinity.set_cookie_for(i)) else {
            return Ok(());
        };
        upstream_response.append_header(SET_COOKIE, main.clone())?;
        if let Some(twin) = twin {
            upstream_response.append_header(SET_COOKIE, twin.clone())?;
        }
        if affinity.config.nocache {
            let existing = upstream_response.headers.get_all(CACHE_CONTROL);
            if let Some(value) =
                headers::cache_control_for_insert(existing.iter().map(|v| v.as_bytes()))
            {
                upstream_response.insert_header(CACHE_CONTROL, value)?;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = error_status(e);
        if ctx.selected.is_none() && code == 503 {
            ctx.outcome = Outcome::Failed;
        }
        if code > 0 {
            let body = headers::error_body(code);
            let mut resp = ServerSession::generate_error(code);
            let written = resp
                .insert_header(CONTENT_TYPE, "text/plain; charset=utf-8")
                .and_then(|_| resp.insert_header(CACHE_CONTROL, "no-store"))
                .and_then(|_| resp.set_content_length(body.len()));
            let sent = match written {
                Ok(()) => {
                    session
                        .as_downstream_mut()
                        .write_error_response(resp, Bytes::from_static(body.as_bytes()))
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(err) = sent {
                log::debug!("could not send the error response: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.in_flight = None;
        if !log::log_enabled!(target: "sticky_proxy::access", log::Level::Info) {
            return;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let backend = ctx
            .selected
            .and_then(|i| self.pool.slots.get(i))
            .map_or("-", |s| s.name.as_str());
        let client = session
            .client_addr()
            .map_or_else(|| "-".to_string(), |a| a.to_string());
        log::info!(
            target: "sticky_proxy::access",
            "{client} {} {} {status} {}ms pool={} backend={backend} outcome={}{}",
            req.method,
            req.uri.path(),
            ctx.started.elapsed().as_millis(),
            self.pool.name,
            ctx.outcome.as_str(),
            e.map(|e| format!(" error={}", e.etype().as_str())).unwrap_or_default(),
        );
    }
}

/// Remove the proxy's own cookies from the `Cookie` headers forwarded to the backend.
fn strip_affinity_cookies(req: &mut RequestHeader, affinity: &crate::affinity::CookieAffinity) {
    let names: Vec<&[u8]> = affinity.cookie_names().collect();
    let present = req
        .headers
        .get_all(COOKIE)
        .iter()
        .any(|v| crate::affinity::cookie::contains_any(v.as_bytes(), &names));
    if !present {
        return;
    }
    let kept: Vec<Vec<u8>> = req
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| crate::affinity::cookie::without_cookies(v.as_bytes(), &names))
        .collect();
    req.remove_header(&COOKIE);
    for value in kept {
        if let Ok(value) = http::HeaderValue::from_bytes(&value) {
            // Appending a header that was just parsed from the same request cannot fail.
            let _ = req.append_header(COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_key(_: &[usize]) -> Option<Option<RingPick>> {
        None
    }

    fn d(backend: Option<usize>, outcome: Outcome, issue_cookie: bool) -> Decision {
        Decision {
            backend,
            outcome,
            issue_cookie,
        }
    }

    #[test]
    fn valid_pin_to_usable_backend_is_sticky() {
        let got = decide(Some(Pin::Backend(1)), &[], |_| true, no_key, |_| Some(0));
        assert_eq!(got, d(Some(1), Outcome::Sticky, false));
    }

    #[test]
    fn pin_to_unusable_backend_is_rebalanced_with_a_new_cookie() {
        let got = decide(Some(Pin::Backend(1)), &[], |i| i != 1, no_key, |_| Some(0));
        assert_eq!(got, d(Some(0), Outcome::Rebalanced, true));
    }

    #[test]
    fn pin_to_backend_that_failed_this_request_is_rebalanced_elsewhere() {
        let got = decide(
            Some(Pin::Backend(1)),
            &[1],
            |_| true,
            no_key,
            |failed| (0..3).find(|i| !failed.contains(i)),
        );
        assert_eq!(got, d(Some(0), Outcome::Rebalanced, true));
    }

    #[test]
    fn absent_or_invalid_cookie_is_a_new_session() {
        for pin in [Pin::Absent, Pin::Invalid] {
            let got = decide(Some(pin), &[], |_| true, no_key, |_| Some(2));
            assert_eq!(got, d(Some(2), Outcome::New, true));
        }
    }

    #[test]
    fn pool_without_cookies_or_key_reports_none_and_issues_nothing() {
        let got = decide(None, &[], |_| true, no_key, |_| Some(0));
        assert_eq!(got, d(Some(0), Outcome::None, false));
    }

    #[test]
    fn a_hash_key_goes_to_its_home_without_a_cookie() {
        let home = |_: &[usize]| {
            Some(Some(RingPick {
                backend: 2,
                home: true,
            }))
        };
        let got = decide(Some(Pin::Absent), &[], |_| true, home, |_| Some(0));
        assert_eq!(got, d(Some(2), Outcome::Sticky, false));
        let got = decide(None, &[], |_| true, home, |_| Some(0));
        assert_eq!(got, d(Some(2), Outcome::Sticky, false));
    }

    #[test]
    fn a_hash_key_away_from_home_is_rebalanced() {
        let next = |_: &[usize]| {
            Some(Some(RingPick {
                backend: 1,
                home: false,
            }))
        };
        assert_eq!(
            decide(None, &[], |_| true, next, |_| Some(0)),
            d(Some(1), Outcome::Rebalanced, false)
        );
    }

    #[test]
    fn a_valid_cookie_beats_the_hash_key_and_a_dead_one_is_replaced() {
        let home = |_: &[usize]| {
            Some(Some(RingPick {
                backend: 2,
                home: true,
            }))
        };
        assert_eq!(
            decide(Some(Pin::Backend(0)), &[], |_| true, home, |_| Some(1)),
            d(Some(0), Outcome::Sticky, false)
        );
        assert_eq!(
            decide(Some(Pin::Backend(0)), &[], |i| i != 0, home, |_| Some(1)),
            d(Some(2), Outcome::Rebalanced, true)
        );
    }

    #[test]
    fn nothing_usable_fails() {
        let got = decide(Some(Pin::Backend(0)), &[], |_| false, no_key, |_| None);
        assert_eq!(got, d(None, Outcome::Failed, false));
        let got = decide(None, &[], |_| false, |_| Some(None), |_| Some(0));
        assert_eq!(got, d(None, Outcome::Failed, false));
    }

    #[test]
    fn error_statuses_name_no_internal_detail() {
        let e = Error::explain(ErrorType::HTTPStatus(503), "x");
        assert_eq!(error_status(&e), 503);
        assert_eq!(
            error_status(&Error::new_up(ErrorType::ConnectTimedout)),
            504
        );
        assert_eq!(error_status(&Error::new_up(ErrorType::ReadTimedout)), 504);
        assert_eq!(error_status(&Error::new_up(ErrorType::ConnectRefused)), 502);
        assert_eq!(
            error_status(&Error::new_down(ErrorType::ConnectionClosed)),
            0
        );
        assert_eq!(
            error_status(&Error::new_down(ErrorType::InvalidHTTPHeader)),
            400
        );
    }
}
