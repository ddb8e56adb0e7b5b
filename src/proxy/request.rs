//! The request as it is sent to a backend (what `upstream_request_filter` does): the client's
//! hop (hop-by-hop fields, those its `Connection` names: Pingora's own pass is off for the
//! pools' peers), internal and forwarding headers removed, the proxy's own cookies removed
//! (`indirect`), a `Host` for a request without one, HTTP/2's split cookies joined, the
//! forwarding headers set.

use super::ctx::RequestCtx;
use super::routes::{Route, Router};
use crate::headers;
use crate::pool::BackendSlot;
use http::header::{COOKIE, HOST};
use http::HeaderValue;
use pingora_core::Result;
use pingora_http::RequestHeader;

/// Turn the client's request (`downstream`) into the one its backend gets (`upstream`, a copy
/// Pingora made, its hop-by-hop fields still in: the pools' peers skip Pingora's own
/// sanitising, `HttpUpstreamRequestPolicy::preserve()`). The client's hop and the forwarding
/// headers are removed first (a `Connection` header Pingora's standard policy refuses is
/// refused: 400), so appending sets them.
pub fn prepare(
    downstream: &RequestHeader,
    upstream: &mut RequestHeader,
    route: &Route,
    router: &Router,
    ctx: &RequestCtx,
) -> Result<()> {
    strip_client_hop(downstream, upstream, &route.strip_request_headers)?;
    // Every affinity cookie of this listener (with `indirect`), whatever this route's class:
    // a `class: none` route on the same host receives the browser's cookies too.
    if !router.indirect_cookie_names.is_empty() {
        strip_affinity_cookies(upstream, &router.indirect_cookie_names);
    }
    name_missing_host(downstream, upstream, ctx.backend(ctx.attempt.backend))?;
    if let Some(peer) = ctx.client.peer {
        let chain = downstream.headers.get_all(headers::X_FORWARDED_FOR);
        let value = headers::forwarded_for(chain.iter(), peer, ctx.client.peer_trusted);
        upstream.append_header(headers::X_FORWARDED_FOR, value)?;
    }
    let proto = HeaderValue::from_static(if ctx.client.tls { "https" } else { "http" });
    upstream.append_header(headers::X_FORWARDED_PROTO, proto)?;
    headers::join_split_cookies(upstream)?;
    let host = downstream.headers.get(HOST).cloned().or_else(|| {
        let authority = downstream.uri.authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    });
    if let Some(host) = host {
        upstream.append_header(headers::X_FORWARDED_HOST, host)?;
    }
    Ok(())
}

/// Remove the client's hop and what `strip` names from the backend's copy of the request
/// ([`headers::StripList::apply`]). Also for a request without a route (none reaches a backend
/// today), so that nothing ever leaves with the client's hop-by-hop fields.
pub fn strip_client_hop(
    downstream: &RequestHeader,
    upstream: &mut RequestHeader,
    strip: &headers::StripList,
) -> Result<()> {
    strip.apply(upstream, downstream.version == http::Version::HTTP_11)
}

/// Remove the proxy's own cookies from the `Cookie` headers forwarded to the backend.
pub fn strip_affinity_cookies(req: &mut RequestHeader, names: &[Box<[u8]>]) {
    let present = req
        .headers
        .get_all(COOKIE)
        .iter()
        .any(|v| crate::affinity::cookie::contains_any(v.as_bytes(), names));
    if !present {
        return;
    }
    let kept: Vec<Vec<u8>> = req
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| crate::affinity::cookie::without_cookies(v.as_bytes(), names))
        .collect();
    req.remove_header(&COOKIE);
    for value in kept {
        if let Ok(value) = http::HeaderValue::from_bytes(&value) {
            // Appending a header that was just parsed from the same request cannot fail.
            let _ = req.append_header(COOKIE, value);
        }
    }
}

/// Whether the request is HTTP/1.1 without `Host`, which a server must answer with 400
/// (RFC 9112 §3.2; NGINX and HAProxy do) rather than pass on to a backend.
pub fn lacks_required_host(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11 && !req.headers.contains_key(HOST)
}

/// Give an HTTP/1.0 request that names no host (allowed in HTTP/1.0) the `Host` of its
/// backend: it goes out as HTTP/1.1, where `Host` is required and a strict backend answers 400
/// without one. A request's own `Host`, or the host of an absolute-form target
/// (`GET http://host/ HTTP/1.0`, which Pingora turns into `Host`), is never changed. For other
/// requests this is one comparison.
pub fn name_missing_host(
    downstream: &RequestHeader,
    upstream: &mut RequestHeader,
    backend: Option<&BackendSlot>,
) -> Result<()> {
    if downstream.version != http::Version::HTTP_10
        || upstream.headers.contains_key(HOST)
        || !has_no_authority(upstream)
    {
        return Ok(());
    }
    match backend {
        Some(slot) => upstream.insert_header(HOST, slot.host_when_missing.clone()),
        None => Ok(()),
    }
}

/// An origin-form (`/path`) or asterisk-form (`*`) target, which names no host.
fn has_no_authority(req: &RequestHeader) -> bool {
    req.uri.authority().is_none() && matches!(req.raw_path().first(), Some(b'/' | b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: http::Version, target: &str, host: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        r.set_version(version);
        if let Some(host) = host {
            r.insert_header(HOST, host).unwrap();
        }
        r
    }

    #[test]
    fn only_http11_requests_must_name_their_host() {
        use http::Version;
        assert!(lacks_required_host(&req(Version::HTTP_11, "/", None)));
        assert!(lacks_required_host(&req(
            Version::HTTP_11,
            "http://a/",
            None
        )));
        assert!(!lacks_required_host(&req(Version::HTTP_11, "/", Some("a"))));
        assert!(!lacks_required_host(&req(Version::HTTP_11, "/", Some(""))));
        assert!(!lacks_required_host(&req(Version::HTTP_10, "/", None)));
        assert!(!lacks_required_host(&req(Version::HTTP_2, "/", None)));
    }

    #[test]
    fn only_origin_and_asterisk_form_targets_name_no_host() {
        let v10 = http::Version::HTTP_10;
        assert!(has_no_authority(&req(v10, "/x", None)));
        assert!(has_no_authority(&req(v10, "*", None)));
        assert!(!has_no_authority(&req(v10, "http://a.example/x", None)));
    }
}
