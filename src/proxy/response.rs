//! The response side of affinity, applied to every final response from a backend: honour and
//! remove the opt-out header, remove internal headers, remove the backend's `Set-Cookie` for the
//! proxy's own cookie names, learn or forget session ids from the backend's `Set-Cookie`, record
//! the client IP, append the proxy's own cookie for a new or moved session (or send a valid one
//! again: a refresh under lifetimes), and name the backend in `served_by_header`.

use super::ctx::RequestCtx;
use super::routes::Route;
use super::ProxySettings;
use crate::affinity::cookie;
use crate::affinity::learned::{Observed, Source};
use crate::affinity::persistence::Affinity;
use crate::affinity::sessions::key_of;
use crate::affinity::{CookieAffinity, Outcome};
use crate::headers;
use crate::pool::{BackendSlot, Pool};
use http::header::{CACHE_CONTROL, SET_COOKIE};
use pingora_core::Result;
use pingora_http::ResponseHeader;

/// A backend's final (non-1xx) response head arrived for `route`: its latency counted, then
/// the response side of affinity applied ([`apply`]). `cookie_names` are the affinity cookie
/// names of the route's listener.
pub fn on_final(
    route: &Route,
    cookie_names: &[Box<[u8]>],
    settings: &ProxySettings,
    response: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    ctx.attempt.responded = true;
    if response.status != 101 {
        // Not upgraded: the connection may go back to the pool for other requests.
        ctx.attempt.upgraded = None;
    }
    if let (Some(started), Some(backend)) = (ctx.attempt.started.take(), ctx.attempt.backend) {
        let seconds = started.elapsed().as_secs_f64();
        route.metrics.upstream_latency(backend, seconds);
    }
    apply(route, cookie_names, settings, response, ctx)
}

/// Apply the response side of affinity to a final (non-1xx) response of `route`.
fn apply(
    route: &Route,
    cookie_names: &[Box<[u8]>],
    settings: &ProxySettings,
    response: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let (pool, affinity) = (&*route.pool, route.affinity.as_deref());
    let backend = ctx.attempt.backend;
    let opted_out = strip_internal(pool, settings, response);
    remove_overwrites(route, cookie_names, response, ctx);
    served_by(pool, response, ctx.backend(backend))?;
    let (Some(backend), Some(affinity)) = (backend, affinity) else {
        return Ok(());
    };
    if opted_out {
        // The backend asked for no affinity from this response: no cookie, nothing recorded.
        let m = affinity.mechanisms();
        if m.cookie || m.tables {
            ctx.verdict.outcome = Outcome::OptedOut;
        }
        return Ok(());
    }
    record_sessions(affinity, response, ctx, backend);
    let reissue = ctx.verdict.reissue;
    if ctx.verdict.issue_cookie || reissue.is_some() {
        if let Some(cookie) = &affinity.cookie {
            let issued = reissue.and_then(|r| r.issued());
            insert_cookie(cookie, response, backend, ctx.client.tls, issued)?;
        }
    }
    Ok(())
}

/// `served_by_header`: the name of the backend that served the response (never its address),
/// replacing any the backend sent.
fn served_by(
    pool: &Pool,
    response: &mut ResponseHeader,
    backend: Option<&BackendSlot>,
) -> Result<()> {
    let (Some(header), Some(slot)) = (&pool.served_by_header, backend) else {
        return Ok(());
    };
    // (Names are validated as visible ASCII where this header is configured.)
    if let Ok(name) = http::HeaderValue::from_str(&slot.name) {
        response.insert_header(header.clone(), name)?;
    }
    Ok(())
}

/// Remove the opt-out header and `hide_headers`; returns whether the backend opted out.
pub fn strip_internal(
    pool: &Pool,
    settings: &ProxySettings,
    response: &mut ResponseHeader,
) -> bool {
    let opted_out = response
        .headers
        .get_all(&pool.opt_out_header)
        .iter()
        .any(|v| headers::is_opt_out(v.as_bytes()));
    response.remove_header(&pool.opt_out_header);
    for name in settings.hide_headers.iter() {
        response.remove_header(name);
    }
    opted_out
}

/// Remove the backend's `Set-Cookie` lines for the proxy's own cookie names, which would
/// overwrite the client's affinity cookie (HAProxy's `cookie … insert` removes them too); count
/// them, and warn once per backend. Nothing is allocated when there are none.
fn remove_overwrites(
    route: &Route,
    names: &[Box<[u8]>],
    response: &mut ResponseHeader,
    ctx: &RequestCtx,
) {
    let backend = ctx.attempt.backend;
    if names.is_empty() {
        return;
    }
    let lines = response.headers.get_all(SET_COOKIE).iter();
    let Some((removed, name)) = cookie::setting_any(lines.map(|v| v.as_bytes()), names) else {
        return;
    };
    let kept: Vec<http::HeaderValue> = response
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| cookie::setting_any(std::iter::once(v.as_bytes()), names).is_none())
        .cloned()
        .collect();
    response.remove_header(&SET_COOKIE);
    for line in kept {
        // (Lines that came in the response are valid header values.)
        let _ = response.append_header(SET_COOKIE, line);
    }
    let Some(backend) = backend else {
        return;
    };
    if route.metrics.cookie_overwrites(backend, removed) {
        log::warn!(
            "backend {} of pool {} sent Set-Cookie for the proxy's affinity cookie {:?}: \
             removed, as every later one (counted in sticky_backend_cookie_overwrites_total), \
             so that it cannot overwrite the client's session",
            ctx.backend(Some(backend)).map_or("-", |s| s.name.as_str()),
            route.pool.name,
            String::from_utf8_lossy(name),
        );
    }
}

/// Learn (or forget) session ids the backend handed out, and record the client IP.
fn record_sessions(
    affinity: &Affinity,
    response: &ResponseHeader,
    ctx: &RequestCtx,
    backend: usize,
) {
    let session = ctx.verdict.lookup.unwrap_or_default();
    if let Some(learned) = &affinity.learned {
        let mut handled_request_id = false;
        for line in response.headers.get_all(SET_COOKIE) {
            match learned.observe(line.as_bytes()) {
                Observed::Other => {}
                Observed::Set(id) => {
                    let key = key_of(&id);
                    learned.record(key, backend, Source::SetCookie);
                    handled_request_id |= Some(key) == session.learned_key;
                }
                Observed::Cleared(Some(id)) => {
                    let key = key_of(&id);
                    learned.forget(key);
                    handled_request_id |= Some(key) == session.learned_key;
                }
                Observed::Cleared(None) => {
                    if let Some(key) = session.learned_key {
                        learned.forget(key);
                    }
                    handled_request_id = true;
                }
            }
        }
        // An id the table did not know (a restart, an eviction) or that had to move is recorded
        // where it was served, so the table rebuilds itself from traffic.
        if let Some(key) = session.learned_key {
            // (Only for answers that are not errors: a 4xx/5xx for an id nobody issued does
            // not earn it an entry.)
            if !handled_request_id
                && session.learned_hit != Some(backend)
                && response.status.as_u16() < 400
            {
                learned.record(key, backend, Source::Request);
            }
        }
    }
    if let (Some(table), Some(key)) = (&affinity.ip_table, session.ip_key) {
        if session.ip_hit != Some(backend) {
            table.table.insert(key, backend);
        }
    }
}

/// Append the `Set-Cookie` (and twin) for `backend` (dated: first issued at `issued`, `None`
/// for now); mark the response private.
fn insert_cookie(
    cookie: &CookieAffinity,
    response: &mut ResponseHeader,
    backend: usize,
    tls: bool,
    issued: Option<u32>,
) -> Result<()> {
    let Some((main, twin)) = cookie.issue(backend, tls, issued) else {
        return Ok(());
    };
    response.append_header(SET_COOKIE, main)?;
    if let Some(twin) = twin {
        response.append_header(SET_COOKIE, twin)?;
    }
    if cookie.config.nocache {
        let existing = response.headers.get_all(CACHE_CONTROL);
        if let Some(value) =
            headers::cache_control_for_insert(existing.iter().map(|v| v.as_bytes()))
        {
            response.insert_header(CACHE_CONTROL, value)?;
        }
    }
    Ok(())
}
