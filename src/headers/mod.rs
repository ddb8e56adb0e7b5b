//! Pure header decisions: what `Cache-Control` a cookie-inserting response gets, whether a
//! backend opted out, which client-sent headers must not reach a backend. No I/O, no sessions:
//! the hooks in `proxy` apply these to Pingora's header types.

use pingora_core::{Error, ErrorSource, ErrorType};

mod forwarding;
pub mod hop_by_hop;

pub use forwarding::*;

/// Is this opt-out header value a "yes"? (`true`, any case, surrounding spaces ignored.)
pub fn is_opt_out(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"true")
}

/// The `Cache-Control` value a response needs when the proxy inserts its cookie into it
/// (HAProxy's `nocache`), given the backend's own `Cache-Control` values.
///
/// `None` means "leave the response as it is": the backend already forbids shared caching
/// (`private` or `no-store`). Otherwise the directives that allow shared caching (`public`,
/// `s-maxage`) are dropped and `private` is added, keeping every other directive.
pub fn cache_control_for_insert<'a>(existing: impl Iterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut kept: Vec<&[u8]> = Vec::new();
    for value in existing {
        for directive in value.split(|b| *b == b',') {
            let directive = directive.trim_ascii();
            if directive.is_empty() {
                continue;
            }
            let name = directive
                .split(|b| *b == b'=')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if name.eq_ignore_ascii_case(b"private") || name.eq_ignore_ascii_case(b"no-store") {
                return None;
            }
            if name.eq_ignore_ascii_case(b"public") || name.eq_ignore_ascii_case(b"s-maxage") {
                continue;
            }
            kept.push(directive);
        }
    }
    let mut out = Vec::new();
    for directive in kept {
        out.extend_from_slice(directive);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(b"private");
    Some(out)
}

/// The short plain-text body of an error the proxy answers itself. It names only the status:
/// never a backend, an address or internal error text.
pub fn error_body(status: u16) -> &'static str {
    match status {
        400 => "400 Bad Request\n",
        404 => "404 Not Found\n",
        405 => "405 Method Not Allowed\n",
        500 => "500 Internal Server Error\n",
        502 => "502 Bad Gateway\n",
        503 => "503 Service Unavailable\n",
        504 => "504 Gateway Timeout\n",
        _ => "error\n",
    }
}

/// The status for a request that ends in error `e` after its connects failed on
/// `connects_failed` backends. A retryable error then means Pingora ran out of attempts
/// (`max_retries`, 16 by default) before the pool ran out of backends — more backends refusing
/// than attempts: nothing reached a backend, so the answer is the `503` of a pool with none
/// usable, not the last connect's `502`.
pub fn final_error_status(e: &Error, connects_failed: usize) -> u16 {
    if connects_failed > 0 && e.retry() {
        503
    } else {
        error_status(e)
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

/// The `Location` of a redirect to HTTPS for a request to `host` (the `Host` header, its port
/// dropped) on `port` (443 is left out). `None` when `host` is not a plain host name or IP
/// literal, so a client cannot steer the redirect with a crafted `Host`.
pub fn https_location(
    host: &str,
    port: u16,
    path_and_query: Option<&http::uri::PathAndQuery>,
) -> Option<http::HeaderValue> {
    let name = if host.starts_with('[') {
        // [v6] or [v6]:port
        let end = host.find(']')?;
        let literal = &host[..=end];
        literal[1..end].parse::<std::net::Ipv6Addr>().ok()?;
        literal
    } else {
        host.split_once(':').map_or(host, |(name, _)| name)
    };
    let plain = !name.is_empty()
        && (name.starts_with('[')
            || name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    if !plain {
        return None;
    }
    let path = path_and_query.map_or("/", |p| p.as_str());
    let path = if path.starts_with('/') { path } else { "/" };
    let location = if port == 443 {
        format!("https://{name}{path}")
    } else {
        format!("https://{name}:{port}{path}")
    };
    http::HeaderValue::from_str(&location).ok()
}

/// The `Host` sent to a backend for a request that has none (HTTP/1.0 allows that, HTTP/1.1
/// does not): the pool's `default_host`, else its TLS name (`sni`, as the backend's certificate
/// and virtual hosts know it), else the backend's address, its port left out where it is the
/// scheme's default — NGINX's `$proxy_host`.
pub fn backend_host(
    default: Option<&http::HeaderValue>,
    sni: Option<&str>,
    addr: std::net::SocketAddr,
    tls: bool,
) -> http::HeaderValue {
    if let Some(host) = default {
        return host.clone();
    }
    if let Some(host) = sni.and_then(|s| http::HeaderValue::from_str(s).ok()) {
        if !host.is_empty() {
            return host;
        }
    }
    let ip = match addr.ip().to_canonical() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let default_port = if tls { 443 } else { 80 };
    let host = if addr.port() == default_port {
        ip
    } else {
        format!("{ip}:{}", addr.port())
    };
    // Digits, dots, colons and brackets: always a valid header value.
    http::HeaderValue::from_str(&host).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_backend_host_is_the_default_the_tls_name_or_the_address() {
        let addr = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        let host = |default: Option<&str>, sni: Option<&str>, a: &str, tls: bool| {
            let default = default.map(|d| http::HeaderValue::from_str(d).unwrap());
            backend_host(default.as_ref(), sni, addr(a), tls)
        };
        assert_eq!(host(None, None, "10.0.0.5:8080", false), "10.0.0.5:8080");
        assert_eq!(host(None, None, "10.0.0.5:80", false), "10.0.0.5");
        assert_eq!(host(None, None, "10.0.0.5:80", true), "10.0.0.5:80");
        assert_eq!(host(None, None, "10.0.0.5:443", true), "10.0.0.5");
        assert_eq!(host(None, None, "[::1]:9001", false), "[::1]:9001");
        assert_eq!(host(None, None, "[::1]:80", false), "[::1]");
        assert_eq!(
            host(None, None, "[::ffff:10.0.0.5]:81", false),
            "10.0.0.5:81"
        );
        assert_eq!(
            host(None, Some("api.internal"), "10.0.0.5:443", true),
            "api.internal"
        );
        assert_eq!(host(None, Some(""), "10.0.0.5:443", true), "10.0.0.5");
        assert_eq!(
            host(
                Some("www.example.com"),
                Some("api.internal"),
                "10.0.0.5:443",
                true
            ),
            "www.example.com"
        );
    }

    #[test]
    fn https_location_keeps_host_and_path_and_drops_the_port() {
        let pq = http::uri::PathAndQuery::from_static("/cart?id=7");
        let loc = |host: &str, port: u16| {
            https_location(host, port, Some(&pq)).map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            loc("shop.test:8080", 443).unwrap(),
            "https://shop.test/cart?id=7"
        );
        assert_eq!(
            loc("shop.test", 6443).unwrap(),
            "https://shop.test:6443/cart?id=7"
        );
        assert_eq!(
            loc("[::1]:6188", 6443).unwrap(),
            "https://[::1]:6443/cart?id=7"
        );
        assert_eq!(
            loc("127.0.0.1", 443).unwrap(),
            "https://127.0.0.1/cart?id=7"
        );
        for bad in ["evil.test/x", "a@b", "", "[nope]", "a b", "x\\y"] {
            assert!(loc(bad, 443).is_none(), "{bad:?}");
        }
        assert_eq!(
            https_location("h.test", 443, None)
                .unwrap()
                .to_str()
                .unwrap(),
            "https://h.test/"
        );
    }

    #[test]
    fn split_cookie_headers_are_joined_into_one() {
        let mut headers = http::HeaderMap::new();
        headers.append(http::header::COOKIE, "a=1".parse().unwrap());
        headers.append(http::header::COOKIE, " b=2 ".parse().unwrap());
        headers.append(http::header::COOKIE, "".parse().unwrap());
        assert_eq!(join_cookie_headers(&headers).unwrap(), "a=1; b=2");
        assert!(join_cookie_headers(&http::HeaderMap::new()).is_none());
    }
    use super::*;

    fn cc(values: &[&str]) -> Option<String> {
        cache_control_for_insert(values.iter().map(|v| v.as_bytes()))
            .map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn ip_header_values_are_the_address_text() {
        for text in [
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "::1",
        ] {
            let ip: std::net::IpAddr = text.parse().unwrap();
            assert_eq!(ip_header_value(ip), ip.to_string().as_str());
        }
        for text in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.200.3.45",
            "192.0.2.100",
        ] {
            let ip: std::net::IpAddr = text.parse().unwrap();
            assert_eq!(ip_header_value(ip), text);
        }
        // Every octet value, in each position.
        for octet in 0..=255u8 {
            let ip = std::net::Ipv4Addr::new(octet, 7, octet, octet / 2);
            assert_eq!(ip_header_value(ip.into()), ip.to_string().as_str());
        }
    }

    #[test]
    fn opt_out_value_is_case_insensitive_true_only() {
        assert!(is_opt_out(b"true"));
        assert!(is_opt_out(b" TRUE "));
        assert!(is_opt_out(b"True"));
        assert!(!is_opt_out(b"false"));
        assert!(!is_opt_out(b"1"));
        assert!(!is_opt_out(b""));
    }

    #[test]
    fn cookie_response_without_cache_control_becomes_private() {
        assert_eq!(cc(&[]).as_deref(), Some("private"));
    }

    #[test]
    fn backend_that_already_forbids_shared_caching_is_left_alone() {
        assert_eq!(cc(&["private, max-age=60"]), None);
        assert_eq!(cc(&["no-store"]), None);
        assert_eq!(cc(&["max-age=0", "No-Store"]), None);
    }

    #[test]
    fn shared_caching_directives_are_replaced_by_private() {
        assert_eq!(
            cc(&["public, max-age=60, s-maxage=600"]).as_deref(),
            Some("max-age=60, private")
        );
        assert_eq!(
            cc(&["no-cache", "must-revalidate"]).as_deref(),
            Some("no-cache, must-revalidate, private")
        );
    }

    #[test]
    fn running_out_of_attempts_after_failed_connects_is_a_503() {
        let mut refused = Error::new_up(ErrorType::ConnectRefused);
        assert_eq!(final_error_status(&refused, 1), 502, "not retryable: as is");
        refused.set_retry(true);
        assert_eq!(final_error_status(&refused, 16), 503);
        assert_eq!(final_error_status(&refused, 0), 502, "no connect failed");
        let timeout = Error::new_up(ErrorType::ReadTimedout);
        assert_eq!(final_error_status(&timeout, 2), 504);
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
