//! Routes at run time: which pool and which persistence class a request gets.
//!
//! A listener without `sticky.routes` has one catch-all route to its pool with the pool's own
//! affinity. With routes, the first whose conditions all hold wins (host exact or
//! `*.suffix`, path prefix, method, header); a request matching none gets the default route —
//! a pool, or a status answered by the proxy (404 unless configured).

use crate::affinity::persistence::Affinity;
use crate::config::{HostMatch, RouteConfig};
use crate::filter::FilterChain;
use crate::headers;
use crate::metrics::PoolMetrics;
use crate::pool::Pool;
use http::header::HOST;
use http::HeaderName;
use pingora_http::RequestHeader;
use std::sync::Arc;

/// The conditions of a route; all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub host: Option<HostMatch>,
    pub path_prefix: Option<String>,
    pub ignore_case: bool,
    pub methods: Vec<http::Method>,
    pub header: Option<(HeaderName, Option<http::HeaderValue>)>,
}

impl Matcher {
    pub fn of(route: &RouteConfig) -> Self {
        Matcher {
            host: route.host.clone(),
            path_prefix: route.path_prefix.clone(),
            ignore_case: route.ignore_case,
            methods: route.methods.clone(),
            header: route.header.clone(),
        }
    }

    /// Does the request satisfy every condition?
    pub fn matches(&self, req: &RequestHeader) -> bool {
        if let Some(prefix) = &self.path_prefix {
            let path = normalized_path(req.uri.path());
            let matched = if self.ignore_case {
                crate::config::starts_with_ignore_case(&path, prefix)
            } else {
                path.starts_with(prefix.as_str())
            };
            if !matched {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.contains(&req.method) {
            return false;
        }
        if let Some((name, value)) = &self.header {
            let mut values = req.headers.get_all(name).iter();
            let ok = match value {
                None => values.next().is_some(),
                Some(expected) => values.any(|v| v == expected),
            };
            if !ok {
                return false;
            }
        }
        if let Some(host) = &self.host {
            let Some(actual) = request_host(req) else {
                return false;
            };
            let ok = match host {
                HostMatch::Exact(h) => actual.eq_ignore_ascii_case(h),
                HostMatch::Suffix(suffix) => {
                    actual.len() > suffix.len()
                        && actual[actual.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// The path as a backend will understand it, for matching (as NGINX matches locations):
/// percent-escapes decoded, `.` and `..` segments resolved, repeated slashes merged. So
/// `/static/../servlet/x` and `/%73ervlet/x` match `/servlet`. Paths that need none of this (the
/// usual case) are returned as they are, without allocating.
pub fn normalized_path(path: &str) -> std::borrow::Cow<'_, str> {
    let needs_work = path.contains('%') || path.contains("//") || path.contains("/.");
    if !needs_work {
        return std::borrow::Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                decoded.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || (decoded.ends_with('/') && !segments.is_empty()) {
        out.push('/');
    }
    std::borrow::Cow::Owned(out)
}

/// The request's host without a port: `Host`, or the URI authority (HTTP/2).
fn request_host(req: &RequestHeader) -> Option<&str> {
    let raw = match req.headers.get(HOST) {
        Some(h) => h.to_str().ok()?,
        // (`host()` leaves out any `user@` part of the authority.)
        None => return req.uri.host(),
    };
    Some(match raw.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || raw.starts_with('[') => {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                host
            } else {
                raw
            }
        }
        _ => raw,
    })
}

/// One route, resolved: where matching requests go and with which affinity.
pub struct Route {
    /// For the access log: `routes[i]`, `default`, or `-` for a listener's own pool.
    pub name: String,
    /// For the access log: the class name, `pool` (the pool's own affinity) or `-`.
    pub class: String,
    pub matcher: Matcher,
    pub pool: Arc<Pool>,
    pub affinity: Option<Arc<Affinity>>,
    pub metrics: Arc<PoolMetrics>,
    /// Client-sent headers never forwarded: forwarding headers, `hide_headers`, the opt-out.
    pub strip_request_headers: headers::StripList,
    /// The Rust filters of this route's requests: the listener's, then the route's own.
    pub(crate) filters: FilterChain,
}

impl Route {
    pub fn new(
        name: String,
        matcher: Matcher,
        pool: Arc<Pool>,
        affinity: Option<Arc<Affinity>>,
        metrics: Arc<PoolMetrics>,
        hide_headers: &[HeaderName],
    ) -> Self {
        let extra = hide_headers.iter().cloned();
        let strip_request_headers =
            headers::StripList::new(extra.chain([pool.opt_out_header.clone()]));
        let class = match &affinity {
            None => "-".to_string(),
            Some(a) => a.class.clone().unwrap_or_else(|| "pool".to_string()),
        };
        Route {
            name,
            class,
            matcher,
            pool,
            affinity,
            metrics,
            strip_request_headers,
            filters: FilterChain::default(),
        }
    }
}

/// The routes of a listener, in order, and what unmatched requests get.
pub struct Router {
    pub routes: Vec<Route>,
    /// The names of every affinity cookie with `indirect` used by this listener's routes: they
    /// are removed from every request forwarded, whatever its route.
    pub indirect_cookie_names: Vec<Box<[u8]>>,
    /// The names of every affinity cookie (main and twin) used by this listener's routes: a
    /// backend's `Set-Cookie` for one of them is removed from every response, whatever its
    /// route (the client's cookie for one route would be overwritten by another's backend).
    pub cookie_names: Vec<Box<[u8]>>,
    /// The status for requests that match no route (when there is no default pool).
    pub unmatched_status: u16,
}

impl Router {
    pub fn new(routes: Vec<Route>, unmatched_status: u16) -> Self {
        let mut all: Vec<Box<[u8]>> = Vec::new();
        let mut indirect: Vec<Box<[u8]>> = Vec::new();
        for cookie in routes
            .iter()
            .filter_map(|r| r.affinity.as_ref()?.cookie.as_ref())
        {
            for name in cookie.cookie_names() {
                if !all.contains(name) {
                    all.push(name.clone());
                }
                if cookie.config.indirect && !indirect.contains(name) {
                    indirect.push(name.clone());
                }
            }
        }
        Router {
            routes,
            indirect_cookie_names: indirect,
            cookie_names: all,
            unmatched_status,
        }
    }

    /// The index of the first route that matches.
    pub fn select(&self, req: &RequestHeader) -> Option<usize> {
        self.routes.iter().position(|r| r.matcher.matches(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn hosts_match_exactly_or_by_suffix_ignoring_port_and_case() {
        let exact = Matcher {
            host: Some(HostMatch::Exact("shop.example.com".into())),
            ..Default::default()
        };
        assert!(exact.matches(&req("GET", "/", &[("Host", "Shop.Example.com:8080")])));
        assert!(!exact.matches(&req("GET", "/", &[("Host", "api.example.com")])));
        assert!(!exact.matches(&req("GET", "/", &[])));
        let suffix = Matcher {
            host: Some(HostMatch::Suffix(".example.com".into())),
            ..Default::default()
        };
        assert!(suffix.matches(&req("GET", "/", &[("Host", "a.b.example.com")])));
        assert!(!suffix.matches(&req("GET", "/", &[("Host", "example.com")])));
        assert!(!suffix.matches(&req("GET", "/", &[("Host", "badexample.com")])));
    }

    #[test]
    fn paths_are_matched_as_the_backend_will_read_them() {
        for (raw, normal) in [
            ("/servlet/x", "/servlet/x"),
            ("/static/../servlet/x", "/servlet/x"),
            ("/%73ervlet/x", "/servlet/x"),
            ("//servlet//x", "/servlet/x"),
            ("/./servlet/./x/", "/servlet/x/"),
            ("/../../servlet", "/servlet"),
            ("/static/%2e%2e/servlet", "/servlet"),
            ("/a%zz", "/a%zz"),
            ("/", "/"),
        ] {
            assert_eq!(normalized_path(raw), normal, "{raw}");
        }
        let servlet = Matcher {
            path_prefix: Some("/servlet".into()),
            ..Default::default()
        };
        assert!(servlet.matches(&req("GET", "/static/../servlet/x", &[])));
        assert!(servlet.matches(&req("GET", "/%73ervlet/x", &[])));
        assert!(!servlet.matches(&req("GET", "/static/servlet", &[])));
        assert!(!servlet.matches(&req("GET", "/Servlet/x", &[])));
        let any_case = Matcher {
            ignore_case: true,
            ..servlet
        };
        assert!(any_case.matches(&req("GET", "/SERVLET/x", &[])));
        assert!(any_case.matches(&req("GET", "/static/../SerVlet", &[])));
        assert!(!any_case.matches(&req("GET", "/servle", &[])));
    }

    #[test]
    fn path_method_and_header_conditions_all_hold() {
        let m = Matcher {
            path_prefix: Some("/servlet".into()),
            methods: vec![http::Method::GET, http::Method::POST],
            header: Some((HeaderName::from_static("x-app"), Some("a".parse().unwrap()))),
            ..Default::default()
        };
        assert!(m.matches(&req("GET", "/servlet/x", &[("X-App", "a")])));
        assert!(!m.matches(&req("GET", "/static/x", &[("X-App", "a")])));
        assert!(!m.matches(&req("PUT", "/servlet/x", &[("X-App", "a")])));
        assert!(!m.matches(&req("GET", "/servlet/x", &[("X-App", "b")])));
        assert!(!m.matches(&req("GET", "/servlet/x", &[])));
        assert!(Matcher::default().matches(&req("DELETE", "/anything", &[])));
    }
}
