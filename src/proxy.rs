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

use crate::affinity::{Outcome, Pin};
use crate::headers;
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

/// The proxy service for one listener: the pool it serves and the headers it hides.
pub struct StickyProxy {
    pool: Arc<Pool>,
    hide_headers: Arc<[HeaderName]>,
}

impl StickyProxy {
    pub fn new(pool: Arc<Pool>, hide_headers: Arc<[HeaderName]>) -> Self {
        StickyProxy { pool, hide_headers }
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
    in_flight: Option<InFlight>,
}

/// Decide where a request goes.
///
/// `pin` is what its cookie said (`None` when the pool has no affinity), `usable` says whether a
/// backend can take it, `failed` lists backends this request already failed on, and
/// `select_new` balances a new session. Returns the backend and the outcome to report.
pub fn decide(
    pin: Option<Pin>,
    failed: &[usize],
    usable: impl Fn(usize) -> bool,
    select_new: impl FnOnce(&[usize]) -> Option<usize>,
) -> (Option<usize>, Outcome) {
    if let Some(Pin::Backend(index)) = pin {
        if usable(index) && !failed.contains(&index) {
            return (Some(index), Outcome::Sticky);
        }
    }
    match select_new(failed) {
        None => (None, Outcome::Failed),
        Some(index) => {
            let outcome = match pin {
                None => Outcome::None,
                Some(Pin::Backend(_)) => Outcome::Rebalanced,
                Some(Pin::Absent | Pin::Invalid) => Outcome::New,
            };
            (Some(index), outcome)
        }
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
            if let Some(affinity) = &pool.affinity {
                let cookies = session.req_header().headers.get_all(COOKIE);
                ctx.pin = Some(affinity.pinned(cookies.iter().map(|v| v.as_bytes())));
            }
        }
        // A retry: the previous attempt no longer counts as in flight.
        ctx.in_flight = None;
        let (chosen, outcome) = decide(
            ctx.pin,
            &ctx.failed,
            |i| pool.slots.get(i).is_some_and(|s| s.is_usable()),
            |failed| pool.select_new(failed),
        );
        ctx.outcome = outcome;
        ctx.selected = chosen;
        let Some(index) = chosen else {
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
        for name in self.hide_headers.iter() {
            upstream_request.remove_header(name);
        }
        upstream_request.remove_header(&self.pool.opt_out_header);

        if let Some(affinity) = &self.pool.affinity {
            if affinity.config.cookie.indirect {
                strip_affinity_cookies(upstream_request, affinity);
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
        for name in self.hide_headers.iter() {
            upstream_response.remove_header(name);
        }
        let Some(affinity) = &self.pool.affinity else {
            return Ok(());
        };
        if opted_out {
            ctx.outcome = Outcome::OptedOut;
            return Ok(());
        }
        if !ctx.outcome.issues_cookie() {
            return Ok(());
        }
        let Some((main, twin)) = ctx.selected.and_then(|i| affinity.set_cookie_for(i)) else {
            return Ok(());
        };
        upstream_response.append_header(SET_COOKIE, main.clone())?;
        if let Some(twin) = twin {
            upstream_response.append_header(SET_COOKIE, twin.clone())?;
        }
        if affinity.config.cookie.nocache {
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

    #[test]
    fn valid_pin_to_usable_backend_is_sticky() {
        let (b, o) = decide(Some(Pin::Backend(1)), &[], |_| true, |_| Some(0));
        assert_eq!((b, o), (Some(1), Outcome::Sticky));
    }

    #[test]
    fn pin_to_unusable_backend_is_rebalanced() {
        let (b, o) = decide(Some(Pin::Backend(1)), &[], |i| i != 1, |_| Some(0));
        assert_eq!((b, o), (Some(0), Outcome::Rebalanced));
    }

    #[test]
    fn pin_to_backend_that_failed_this_request_is_rebalanced_elsewhere() {
        let (b, o) = decide(
            Some(Pin::Backend(1)),
            &[1],
            |_| true,
            |failed| (0..3).find(|i| !failed.contains(i)),
        );
        assert_eq!((b, o), (Some(0), Outcome::Rebalanced));
    }

    #[test]
    fn absent_or_invalid_cookie_is_a_new_session() {
        assert_eq!(
            decide(Some(Pin::Absent), &[], |_| true, |_| Some(2)),
            (Some(2), Outcome::New)
        );
        assert_eq!(
            decide(Some(Pin::Invalid), &[], |_| true, |_| Some(2)),
            (Some(2), Outcome::New)
        );
    }

    #[test]
    fn pool_without_affinity_reports_none() {
        assert_eq!(
            decide(None, &[], |_| true, |_| Some(0)),
            (Some(0), Outcome::None)
        );
    }

    #[test]
    fn nothing_usable_fails() {
        assert_eq!(
            decide(Some(Pin::Backend(0)), &[], |_| false, |_| None),
            (None, Outcome::Failed)
        );
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
