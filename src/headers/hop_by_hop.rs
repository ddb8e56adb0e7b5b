//! The client's hop (RFC 9110 §7.6.1): the hop-by-hop fields and the fields a request's
//! `Connection` header names are never forwarded to a backend. Pingora's standard upstream
//! request policy does this in a pass of its own; the pools' peers turn that policy off
//! (`HttpUpstreamRequestPolicy::preserve()`, `pool::Pool::new`) and the proxy strips them
//! itself in its one pass over the request's header names ([`super::StripList::apply`]), with
//! the same rules: what is stripped, what is refused, and a WebSocket opening's
//! `Connection: Upgrade` / `Upgrade: websocket` put back normalized.

use http::header::{self, HeaderName};
use http::HeaderMap;
use pingora_http::RequestHeader;

/// At most nine `Connection` tokens (Pingora's standard policy's bound, after Envoy's): a tenth
/// is refused, so that a request cannot make the proxy compare every name with a long list.
pub const MAX_CONNECTION_TOKENS: usize = 9;

/// Whether `name` is a hop-by-hop field: `Connection`, `TE`, `Trailer`, `Transfer-Encoding`,
/// `Upgrade`, `Proxy-Authenticate`, `Proxy-Authorization`, and the legacy `Keep-Alive`,
/// `Proxy-Connection`, `HTTP2-Settings` (Pingora's standard policy's list). A body keeps its
/// framing: Pingora frames it anew (chunked) after the hooks when neither `Content-Length` nor
/// `Transfer-Encoding` is left.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || *name == header::PROXY_AUTHENTICATE
        || *name == header::PROXY_AUTHORIZATION
        || matches!(
            name.as_str(),
            "keep-alive" | "proxy-connection" | "http2-settings"
        )
}

/// The non-empty tokens of every `Connection` value, trimmed.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Why the request's `Connection` header is refused (a `400`), as Pingora's standard policy
/// refuses it: more than [`MAX_CONNECTION_TOKENS`] tokens, a token that is not an HTTP token
/// (RFC 9110 §5.6.2, so `"X-Forwarded-For"` cannot slip past the next check), or one naming a
/// pseudo-header, `Host` or a forwarding header (the proxy writes those itself; stripping them
/// would let a client decide what the backend is told). `None`: forward it.
pub fn refused_connection(headers: &HeaderMap) -> Option<&'static str> {
    for (i, token) in connection_tokens(headers).enumerate() {
        if i >= MAX_CONNECTION_TOKENS {
            return Some("too many Connection header nominations");
        }
        if token.starts_with(b":") {
            return Some("protected header cannot be nominated by the Connection header");
        }
        if !token.iter().all(|b| is_tchar(*b)) {
            return Some("invalid token nominated by the Connection header");
        }
        let protected = [
            "host",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
        ];
        if protected
            .iter()
            .any(|p| token.eq_ignore_ascii_case(p.as_bytes()))
        {
            return Some("protected header cannot be nominated by the Connection header");
        }
    }
    None
}

/// Whether the request's `Connection` header names `name` (in any case).
pub fn is_nominated(headers: &HeaderMap, name: &HeaderName) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(name.as_str().as_bytes()))
}

/// An HTTP `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether the client's request opens a WebSocket: HTTP/1.1 (`downstream_is_http11`) with
/// `Upgrade: websocket`. Read before the hop-by-hop fields are stripped.
pub fn is_websocket_opening(req: &RequestHeader, downstream_is_http11: bool) -> bool {
    downstream_is_http11
        && req
            .headers
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// After the stripping, a WebSocket opening gets its upgrade fields back, normalized
/// (`Connection: Upgrade`, `Upgrade: websocket`), as Pingora's standard policy does; any other
/// upgrade (`h2c`, ...) is not passed on.
pub fn restore_websocket_upgrade(req: &mut RequestHeader) -> pingora_core::Result<()> {
    req.insert_header(header::CONNECTION, "Upgrade")?;
    req.insert_header(header::UPGRADE, "websocket")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(fields: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in fields {
            r.append_header(name.to_string(), *value).unwrap();
        }
        r
    }

    fn name(n: &str) -> HeaderName {
        HeaderName::from_bytes(n.as_bytes()).unwrap()
    }

    #[test]
    fn the_hop_by_hop_fields_are_pingoras_standard_list() {
        for hop in [
            "connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authenticate",
            "proxy-authorization",
            "keep-alive",
            "proxy-connection",
            "http2-settings",
        ] {
            assert!(is_hop_by_hop(&name(hop)), "{hop}");
        }
        for kept in [
            "content-length",
            "host",
            "cookie",
            "x-keep-alive",
            "trailers",
        ] {
            assert!(!is_hop_by_hop(&name(kept)), "{kept}");
        }
    }

    #[test]
    fn connection_names_fields_in_any_case_across_its_values() {
        let r = request(&[
            ("Connection", "keep-alive, X-Secret"),
            ("connection", " x-b ,"),
        ]);
        assert!(is_nominated(&r.headers, &name("x-secret")));
        assert!(is_nominated(&r.headers, &name("x-b")));
        assert!(is_nominated(&r.headers, &name("keep-alive")));
        assert!(!is_nominated(&r.headers, &name("x-secret-2")));
        assert!(!is_nominated(&request(&[]).headers, &name("x-secret")));
        assert_eq!(refused_connection(&r.headers), None);
    }

    #[test]
    fn connection_naming_protected_fields_or_malformed_or_too_many_tokens_is_refused() {
        for value in [
            "Host",
            "close, X-Forwarded-For",
            "x-forwarded-host",
            "X-FORWARDED-PROTO",
            ":authority",
            "\"x-a\"",
            "x a",
            "a,b,c,d,e,f,g,h,i,j",
        ] {
            let r = request(&[("Connection", value)]);
            assert!(refused_connection(&r.headers).is_some(), "{value}");
        }
        for value in [
            "a,b,c,d,e,f,g,h,i",
            "close",
            "Upgrade",
            "x-forwarded-for-2",
            "",
        ] {
            let r = request(&[("Connection", value)]);
            assert_eq!(refused_connection(&r.headers), None, "{value}");
        }
        // The bound counts tokens over every `Connection` field.
        let r = request(&[("Connection", "a,b,c,d,e"), ("Connection", "f,g,h,i,j")]);
        assert!(refused_connection(&r.headers).is_some());
    }

    #[test]
    fn only_an_http11_upgrade_to_websocket_is_an_opening_and_it_is_put_back_normalized() {
        let mut r = request(&[
            ("Upgrade", "WebSocket"),
            ("Connection", "keep-alive, upgrade"),
        ]);
        assert!(is_websocket_opening(&r, true));
        assert!(!is_websocket_opening(&r, false));
        assert!(!is_websocket_opening(&request(&[("Upgrade", "h2c")]), true));
        restore_websocket_upgrade(&mut r).unwrap();
        assert_eq!(r.headers.get_all("connection").iter().count(), 1);
        assert_eq!(r.headers["connection"], "Upgrade");
        assert_eq!(r.headers["upgrade"], "websocket");
    }
}
