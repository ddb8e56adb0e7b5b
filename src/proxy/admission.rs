//! What `request_filter` decides before any routing: who the client is ([`client_of`]), and
//! whether the proxy answers the request itself ([`early_answer`]) — `CONNECT`, a TLS 1.3
//! listener reached over TLS 1.2, a plain listener that redirects to HTTPS, a request HTTP/1.1
//! cannot route (no `Host`, a target that is no path). Pure functions of the request head and
//! the listener's settings.

use super::ctx::Client;
use crate::affinity::client_ip;
use crate::config::RedirectToHttps;
use crate::headers;
use http::header::HOST;
use http::HeaderValue;
use pingora_http::RequestHeader;
use std::net::IpAddr;

/// An answer the proxy gives itself, before any backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EarlyAnswer {
    /// A short plain answer naming only the status (`400`, `405`).
    Plain(u16),
    /// `426`: the listener requires TLS 1.3 and the connection negotiated 1.2.
    Tls13Required,
    /// A redirect to the same host and path over HTTPS.
    Redirect { status: u16, location: HeaderValue },
}

/// Who sent the request: TLS (ours, or a trusted proxy's `X-Forwarded-Proto: https`), the
/// TCP peer, and whether the peer is one of `trusted_proxies`.
pub fn client_of(
    peer: Option<IpAddr>,
    our_tls: bool,
    req: &RequestHeader,
    trusted_proxies: &[ipnet::IpNet],
) -> Client {
    let peer = peer.map(|ip| ip.to_canonical());
    let peer_trusted = peer.is_some_and(|ip| client_ip::is_trusted(&ip, trusted_proxies));
    // A trusted proxy in front says the client spoke HTTPS to it: the request counts as HTTPS
    // (Secure cookie, the header passed on). Anyone else's `X-Forwarded-Proto` is replaced.
    let https_in_front = peer_trusted
        && req
            .headers
            .get(headers::X_FORWARDED_PROTO)
            .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"https"));
    Client {
        tls: our_tls || https_in_front,
        peer,
        peer_trusted,
        ip: None,
    }
}

/// [`client_of`] for the request of `session`: its TCP peer, over our TLS or not.
pub(crate) fn client_of_session(
    session: &pingora_proxy::Session,
    trusted_proxies: &[ipnet::IpNet],
) -> Client {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    client_of(peer, tls, session.req_header(), trusted_proxies)
}

/// What the listener's settings say about a request before routing it, if anything.
/// `tls_version`: the version our TLS negotiated (`None`: plain); `tls13_required`: the
/// listener's `min_version: TLSv1.3`; `redirect`: a plain listener's redirect to HTTPS.
pub fn early_answer(
    req: &RequestHeader,
    client: &Client,
    tls_version: Option<&str>,
    tls13_required: bool,
    redirect: Option<RedirectToHttps>,
) -> Option<EarlyAnswer> {
    // CONNECT gets this far (`allow_connect_method_proxying`) only for the proxy's own 405: it
    // opens no tunnels, and Pingora's 405 names Pingora.
    if req.method == http::Method::CONNECT {
        return Some(EarlyAnswer::Plain(405));
    }
    // Clients that offer no TLS 1.3 suite are refused in the handshake; one that offered 1.3
    // suites but still negotiated 1.2 is refused here, before any routing.
    if tls13_required && tls_version.is_some_and(|v| !crate::tls::is_tls13(v)) {
        return Some(EarlyAnswer::Tls13Required);
    }
    // (Not when a trusted TLS terminator in front says the client spoke HTTPS: that would
    // redirect forever.)
    if let Some(redirect) = redirect.filter(|_| !client.tls) {
        let host = req
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let location = host.and_then(|host| {
            headers::https_location(host, redirect.port, req.uri.path_and_query())
        });
        return Some(match location {
            Some(location) => EarlyAnswer::Redirect {
                status: redirect.status,
                location,
            },
            None => EarlyAnswer::Plain(400),
        });
    }
    if super::request::lacks_required_host(req) || !routable_target(req) {
        return Some(EarlyAnswer::Plain(400));
    }
    None
}

/// Whether the request target is one the router can read: a path (`/…`), `*`, or an absolute
/// URL. Pingora 0.9.1 accepts other targets (`GET admin/x HTTP/1.1`) with `uri` set to `/` and
/// the raw bytes kept for the backend: such a request would take the route of `/` whatever it
/// asks for. HAProxy and NGINX answer 400; so does the proxy.
fn routable_target(req: &RequestHeader) -> bool {
    let raw = req.raw_path();
    let absolute = |scheme: &[u8]| {
        raw.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    };
    raw.first() == Some(&b'/') || raw == b"*" || absolute(b"http://") || absolute(b"https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &[u8], host: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build(method, target, None).unwrap();
        if let Some(host) = host {
            req.insert_header(HOST, host).unwrap();
        }
        req
    }

    const PLAIN: Client = Client {
        tls: false,
        peer: None,
        peer_trusted: false,
        ip: None,
    };

    #[test]
    fn ordinary_requests_get_no_early_answer() {
        for target in [&b"/"[..], b"/a?b=c", b"*", b"http://a.example/x"] {
            let req = request("GET", target, Some("a.example"));
            assert_eq!(early_answer(&req, &PLAIN, None, false, None), None);
        }
    }

    #[test]
    fn a_target_that_is_no_path_is_refused_with_400() {
        for target in [&b"admin/x"[..], b"%01="] {
            let req = request("GET", target, Some("a"));
            let answer = early_answer(&req, &PLAIN, None, false, None);
            assert_eq!(answer, Some(EarlyAnswer::Plain(400)), "{target:?}");
        }
    }

    #[test]
    fn connect_is_refused_and_http11_without_host_is_a_400() {
        let connect = request("CONNECT", b"a.example:443", Some("a.example:443"));
        assert_eq!(
            early_answer(&connect, &PLAIN, None, false, None),
            Some(EarlyAnswer::Plain(405))
        );
        let no_host = request("GET", b"/", None);
        assert_eq!(
            early_answer(&no_host, &PLAIN, None, false, None),
            Some(EarlyAnswer::Plain(400))
        );
    }

    #[test]
    fn tls13_listeners_refuse_tls12_and_plain_listeners_redirect() {
        let req = request("GET", b"/p?q=1", Some("a.example"));
        let tls = Client { tls: true, ..PLAIN };
        assert_eq!(
            early_answer(&req, &tls, Some("TLSv1_2"), true, None),
            Some(EarlyAnswer::Tls13Required)
        );
        assert_eq!(early_answer(&req, &tls, Some("TLSv1_3"), true, None), None);
        let redirect = RedirectToHttps {
            port: 8443,
            status: 308,
        };
        assert_eq!(
            early_answer(&req, &PLAIN, None, false, Some(redirect)),
            Some(EarlyAnswer::Redirect {
                status: 308,
                location: HeaderValue::from_static("https://a.example:8443/p?q=1"),
            })
        );
        // Already HTTPS (a trusted terminator in front): served, not redirected again.
        assert_eq!(early_answer(&req, &tls, None, false, Some(redirect)), None);
    }

    #[test]
    fn only_a_trusted_peer_can_say_the_client_spoke_https() {
        let mut req = request("GET", b"/", Some("a"));
        req.insert_header("x-forwarded-proto", "https").unwrap();
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let from = |ip: &str| client_of(Some(ip.parse().unwrap()), false, &req, &trusted);
        assert!(from("10.1.2.3").tls && from("10.1.2.3").peer_trusted);
        assert!(!from("192.0.2.1").tls);
        let mapped = from("::ffff:10.1.2.3");
        assert_eq!(mapped.peer, Some("10.1.2.3".parse().unwrap()));
    }
}
