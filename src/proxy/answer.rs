//! The proxy's own answers (never a backend's): failure-policy pages, redirects, and short
//! plain-text errors that name only the status. Never cached; the connection is not reused; no
//! `Server` header.

use super::admission::EarlyAnswer;
use super::ctx::RequestCtx;
use super::routes::Route;
use crate::affinity::Outcome;
use crate::config::FailurePolicy;
use crate::headers;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, SERVER};
use pingora_core::protocols::http::ServerSession;
use pingora_proxy::Session;

/// Write an answer from the proxy itself (never cached, the connection not reused).
pub(super) async fn respond(
    session: &mut Session,
    status: u16,
    content_type: http::HeaderValue,
    body: Bytes,
    extra: &[(http::HeaderName, http::HeaderValue)],
) {
    let mut resp = ServerSession::generate_error(status);
    // Pingora names itself (`Server: Pingora`); an edge does not advertise its stack.
    resp.remove_header(&SERVER);
    let mut written = resp
        .insert_header(CONTENT_TYPE, content_type)
        .and_then(|_| resp.insert_header(CACHE_CONTROL, "no-store"))
        .and_then(|_| resp.set_content_length(body.len()));
    for (name, value) in extra {
        written = written.and_then(|_| resp.insert_header(name.clone(), value.clone()));
    }
    let sent = match written {
        Ok(()) => {
            session
                .as_downstream_mut()
                .write_error_response(resp, body)
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(err) = sent {
        log::debug!("could not send the proxy's own answer: {err}");
    }
}

pub(super) const TEXT_PLAIN: http::HeaderValue =
    http::HeaderValue::from_static("text/plain; charset=utf-8");

/// A short plain-text answer naming only the status.
pub(super) async fn respond_plain(session: &mut Session, status: u16) {
    let body = Bytes::from_static(headers::error_body(status).as_bytes());
    respond(session, status, TEXT_PLAIN, body, &[]).await;
}

/// Write the answer a failure policy prescribes; the status written (0: none).
pub(super) async fn respond_policy(session: &mut Session, policy: &FailurePolicy) -> u16 {
    match policy {
        FailurePolicy::Sorry {
            status,
            content_type,
            body,
        } => {
            respond(session, *status, content_type.clone(), body.clone(), &[]).await;
            *status
        }
        FailurePolicy::Redirect { location } => {
            let body = Bytes::from_static(b"302 Found\n");
            let location = (http::header::LOCATION, location.clone());
            respond(session, 302, TEXT_PLAIN, body, &[location]).await;
            302
        }
        FailurePolicy::Close => 0,
        FailurePolicy::Strict | FailurePolicy::Rebalance => {
            respond_plain(session, 503).await;
            503
        }
    }
}

/// Answer a request that failed (what `fail_to_proxy` does): the class's failure policy when
/// it refused the request, else the plain status for `e` (nothing for a client that is gone,
/// and a 503 from no backend counts as a failed request). The status written (0: none).
pub(crate) async fn on_failure(
    session: &mut Session,
    route: Option<&Route>,
    e: &pingora_core::Error,
    ctx: &mut RequestCtx,
) -> u16 {
    let affinity = route.and_then(|r| r.affinity.as_ref());
    if let Some(affinity) = affinity.filter(|_| ctx.verdict.refused) {
        return respond_policy(session, &affinity.failure).await;
    }
    let code = headers::final_error_status(e, ctx.attempt.failed.len());
    if code == 503 && super::log::answered_by(ctx).is_none() {
        ctx.verdict.outcome = Outcome::Failed;
    }
    if code > 0 {
        respond_plain(session, code).await;
    }
    code
}

/// Write an answer decided before routing ([`EarlyAnswer`]).
pub(super) async fn respond_early(session: &mut Session, answer: EarlyAnswer) {
    match answer {
        EarlyAnswer::Plain(status) => respond_plain(session, status).await,
        EarlyAnswer::Tls13Required => {
            // (Pingora drops an `Upgrade` header from any answer but a 101, so the body says
            // what is needed.) The connection is closed after the answer.
            let body = Bytes::from_static(b"426 TLS 1.3 required\n");
            respond(session, 426, TEXT_PLAIN, body, &[]).await;
        }
        EarlyAnswer::Redirect { status, location } => {
            let body = Bytes::from_static(b"Moved to HTTPS\n");
            let location = (http::header::LOCATION, location);
            respond(session, status, TEXT_PLAIN, body, &[location]).await;
        }
    }
}
