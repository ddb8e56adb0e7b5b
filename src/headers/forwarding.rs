//! The forwarding side of a request: the client-sent headers a backend must never see (the
//! proxy's own forwarding headers, `hide_headers`, the opt-out header, and their `_` look-alikes
//! that CGI-style backends read as the same variable; the client's hop, [`super::hop_by_hop`]),
//! and the values the proxy sets instead (`X-Forwarded-For` and the rest). Pure functions over
//! Pingora's header types.

use super::hop_by_hop;
use http::header::{HeaderName, CONNECTION, COOKIE};
use http::HeaderValue;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use std::net::IpAddr;

/// The forwarding headers the proxy reads, as parsed names (a lookup by `&str` parses the name
/// on every request).
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`, parsed.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`, parsed.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Forwarding headers that the proxy sets itself; client-sent copies are removed first so that
/// a client cannot spoof them.
pub static FORWARDING_HEADERS: [HeaderName; 5] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("forwarded"),
];

/// An IP address as a header value, formatted without a `String` (and an IPv4 address, the
/// usual client, without `core::fmt`: that was a tenth of the proxy's own work per request).
pub fn ip_header_value(ip: std::net::IpAddr) -> http::HeaderValue {
    use std::io::Write;
    if let std::net::IpAddr::V4(v4) = ip {
        return ipv4_header_value(v4);
    }
    let mut buf = [0u8; 45]; // the longest IPv6 text form
    let len = {
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        // 45 bytes always fit an address.
        let _ = write!(cursor, "{ip}");
        cursor.position() as usize
    };
    http::HeaderValue::from_bytes(&buf[..len])
        .unwrap_or_else(|_| http::HeaderValue::from_static("-"))
}

/// Dotted-quad text of an IPv4 address (`192.0.2.7`).
fn ipv4_header_value(ip: std::net::Ipv4Addr) -> http::HeaderValue {
    let mut buf = [0u8; 15]; // 255.255.255.255
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    http::HeaderValue::from_bytes(&buf[..len])
        .unwrap_or_else(|_| http::HeaderValue::from_static("-"))
}

/// All `Cookie` header values joined with `"; "` into one (HTTP/2 clients send one header per
/// cookie; HTTP/1.1 servers expect a single header). `None` when there is nothing to join.
pub fn join_cookie_headers(headers: &http::HeaderMap) -> Option<http::HeaderValue> {
    let mut joined: Vec<u8> = Vec::new();
    for value in headers.get_all(http::header::COOKIE) {
        let part = value.as_bytes().trim_ascii();
        if part.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(part);
    }
    if joined.is_empty() {
        return None;
    }
    http::HeaderValue::from_bytes(&joined).ok()
}

/// The names of the client-sent headers a route never forwards, each in its dashed form: a
/// request header whose name, with `_` read as `-`, is one of them is removed. (A name written
/// with `_` in the configuration therefore also catches its dashed spelling, and the reverse.)
#[derive(Debug, Clone, Default)]
pub struct StripList(Vec<HeaderName>);

impl StripList {
    /// The forwarding headers, then `extra` (`hide_headers`, the opt-out header).
    pub fn new(extra: impl IntoIterator<Item = HeaderName>) -> Self {
        let mut names: Vec<HeaderName> = Vec::new();
        for name in FORWARDING_HEADERS.iter().cloned().chain(extra) {
            let dashed = dashed(&name).unwrap_or(name);
            if !names.contains(&dashed) {
                names.push(dashed);
            }
        }
        StripList(names)
    }

    /// The names, each in its dashed form.
    pub fn names(&self) -> &[HeaderName] {
        &self.0
    }

    /// Whether a request header called `name` is one of them (or a `_` look-alike).
    pub fn strips(&self, name: &HeaderName) -> bool {
        if self.0.contains(name) {
            return true;
        }
        // Only names with an underscore need their dashed form (most requests carry none).
        name.as_str().contains('_') && {
            let dashed = name.as_str().replace('_', "-");
            self.0.iter().any(|s| s.as_str() == dashed)
        }
    }

    /// Make `req` (the backend's copy of the client's request) leave the client's hop behind:
    /// remove every header the list strips, the hop-by-hop fields and the fields the request's
    /// `Connection` names ([`super::hop_by_hop`]); a WebSocket opening (`downstream_is_http11`
    /// and `Upgrade: websocket`) then gets `Connection: Upgrade` / `Upgrade: websocket` back.
    /// One pass over the request's few header names, not a map lookup per name to strip; no
    /// allocation when nothing matches. A `Connection` header that names a protected field,
    /// holds a malformed token or too many is refused: `InvalidHTTPHeader` (a `400`), and
    /// nothing is removed.
    pub fn apply(&self, req: &mut RequestHeader, downstream_is_http11: bool) -> Result<()> {
        if let Some(why) = hop_by_hop::refused_connection(&req.headers) {
            return Err(Error::explain(ErrorType::InvalidHTTPHeader, why).into_down());
        }
        let websocket = hop_by_hop::is_websocket_opening(req, downstream_is_http11);
        let nominates = req.headers.contains_key(CONNECTION);
        let doomed: Vec<HeaderName> = req
            .headers
            .keys()
            .filter(|n| {
                hop_by_hop::is_hop_by_hop(n)
                    || self.strips(n)
                    || nominates && hop_by_hop::is_nominated(&req.headers, n)
            })
            .cloned()
            .collect();
        for name in doomed {
            req.remove_header(&name);
        }
        if websocket {
            hop_by_hop::restore_websocket_upgrade(req)?;
        }
        Ok(())
    }
}

/// `name` with `_` turned into `-`, if it has one.
fn dashed(name: &HeaderName) -> Option<HeaderName> {
    let s = name.as_str();
    s.contains('_')
        .then(|| HeaderName::from_bytes(s.replace('_', "-").as_bytes()).ok())
        .flatten()
}

/// The `X-Forwarded-For` the backend gets: from a trusted proxy (`trusted`), the chain it sent
/// (`chain`: every `X-Forwarded-For` value of the request) with the peer appended; from anyone
/// else, the peer alone.
pub fn forwarded_for<'a>(
    mut chain: impl Iterator<Item = &'a HeaderValue>,
    peer: IpAddr,
    trusted: bool,
) -> HeaderValue {
    let peer_value = ip_header_value(peer);
    let first = match chain.next() {
        Some(first) if trusted => first,
        _ => return peer_value,
    };
    let mut joined: Vec<u8> = first.as_bytes().to_vec();
    for hop in chain {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(hop.as_bytes());
    }
    joined.extend_from_slice(b", ");
    joined.extend_from_slice(peer_value.as_bytes());
    HeaderValue::from_bytes(&joined).unwrap_or(peer_value)
}

/// HTTP/2 clients may split cookies over several headers; an HTTP/1.1 backend expects one (RFC
/// 9113 §8.2.3): join them, in place, when there are several.
pub fn join_split_cookies(req: &mut RequestHeader) -> pingora_core::Result<()> {
    if req.headers.get_all(COOKIE).iter().nth(1).is_none() {
        return Ok(());
    }
    match join_cookie_headers(&req.headers) {
        Some(joined) => req.insert_header(COOKIE, joined),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<HeaderName> {
        list.iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
            .collect()
    }

    #[test]
    fn a_strip_list_catches_each_name_in_either_spelling() {
        let list = StripList::new(names(&["x_debug_user", "x-internal"]));
        for stripped in [
            "x-debug-user",
            "x_debug_user",
            "x-internal",
            "x_internal",
            "x_forwarded_for",
            "forwarded",
        ] {
            assert!(
                list.strips(&HeaderName::from_bytes(stripped.as_bytes()).unwrap()),
                "{stripped}"
            );
        }
        for kept in ["x-debug", "cookie", "x-debug-user-2", "host"] {
            assert!(
                !list.strips(&HeaderName::from_bytes(kept.as_bytes()).unwrap()),
                "{kept}"
            );
        }
    }

    #[test]
    fn forwarded_for_keeps_a_trusted_chain_and_replaces_anyone_elses() {
        let hops = [
            HeaderValue::from_static("203.0.113.9"),
            HeaderValue::from_static("10.0.0.1"),
        ];
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            forwarded_for(hops.iter(), peer, true),
            "203.0.113.9, 10.0.0.1, 192.0.2.7"
        );
        assert_eq!(forwarded_for(hops.iter(), peer, false), "192.0.2.7");
        assert_eq!(forwarded_for([].iter(), peer, true), "192.0.2.7");
    }
}
