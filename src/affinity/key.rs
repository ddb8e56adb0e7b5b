//! Hash keys: where in a request the affinity key comes from.
//!
//! A [`KeySource`] looks at a [`RequestView`] and returns the key bytes, or `None` when its part
//! of the request is absent (or empty, or a regex does not match), so that the next source in
//! the pool's ordered list is tried. Keys borrow from the request whenever they can; only a
//! multi-parameter query key or a re-cased host allocates.
//!
//! The built-in sources ([`CookieSource`], [`HeaderSource`], [`QuerySource`], [`PathSource`],
//! [`HostSource`], [`ClientIpSource`]) implement the same trait a Rust user implements for a
//! custom key, so the extension point is the same path the built-ins take.

use super::client_ip;
use super::cookie::cookie_values;
use super::custom::ExtensionLookup;
use crate::config::KeySourceConfig;
use http::header::{COOKIE, HOST};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

/// The parts of a request a key source may look at.
pub struct RequestView<'a> {
    /// The request target (path and query; scheme and authority for HTTP/2 and absolute form).
    pub uri: &'a http::Uri,
    /// The request's headers, as the client sent them (and the route's filters left them).
    pub headers: &'a http::HeaderMap,
    /// The client's IP, already resolved through trusted proxies.
    pub client_ip: Option<IpAddr>,
}

/// A source of affinity keys. Implement it to compute a key in Rust (a tenant id inside a
/// token, say), register it with
/// [`Extensions::with_key_source`](crate::extension::Extensions::with_key_source) and name it
/// in a class's `hash: { sources: [{ type: custom, name: … }] }`. The built-in sources
/// implement it too.
///
/// ```
/// use std::borrow::Cow;
/// use sticky_proxy::affinity::key::{KeySource, RequestView};
///
/// /// The tenant is the part of `X-Tenant` before the first dot.
/// #[derive(Debug)]
/// struct Tenant;
///
/// impl KeySource for Tenant {
///     fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
///         let value = request.headers.get("x-tenant")?.as_bytes();
///         let tenant = value.split(|b| *b == b'.').next()?;
///         (!tenant.is_empty()).then_some(Cow::Borrowed(tenant))
///     }
/// }
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-tenant", "acme.eu-west".parse().unwrap());
/// let uri = http::Uri::from_static("/");
/// let view = RequestView { uri: &uri, headers: &headers, client_ip: None };
/// assert_eq!(Tenant.key(&view).as_deref(), Some(&b"acme"[..]));
/// ```
pub trait KeySource: Send + Sync + std::fmt::Debug {
    /// The request's key, or `None` when it carries none (the next source is tried; with none,
    /// the request is balanced as a new session). Borrow from the request where you can.
    fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>>;
}

/// The first key any of `sources` finds in the request.
pub fn first_key<'a>(
    sources: &[Arc<dyn KeySource>],
    request: &RequestView<'a>,
) -> Option<Cow<'a, [u8]>> {
    sources.iter().find_map(|s| s.key(request))
}

/// Build the source a config entry describes; custom sources come from `extensions` (their
/// names were checked at validation, so `None` only for an unknown custom name).
pub fn from_config(
    config: &KeySourceConfig,
    extensions: &dyn ExtensionLookup,
) -> Option<Arc<dyn KeySource>> {
    Some(match config {
        KeySourceConfig::Cookie { name, regex } => Arc::new(CookieSource {
            name: name.clone(),
            regex: regex.clone(),
        }),
        KeySourceConfig::Header { name } => Arc::new(HeaderSource { name: name.clone() }),
        KeySourceConfig::Query { params } => Arc::new(QuerySource {
            params: params.clone(),
        }),
        KeySourceConfig::Path => Arc::new(PathSource { with_query: false }),
        KeySourceConfig::PathAndQuery => Arc::new(PathSource { with_query: true }),
        KeySourceConfig::Host => Arc::new(HostSource),
        KeySourceConfig::ClientIp {
            ipv4_prefix,
            ipv6_prefix,
        } => Arc::new(ClientIpSource {
            ipv4_prefix: *ipv4_prefix,
            ipv6_prefix: *ipv6_prefix,
        }),
        KeySourceConfig::Custom { name } => return extensions.key_source(name),
    })
}

fn non_empty(bytes: &[u8]) -> Option<&[u8]> {
    (!bytes.is_empty()).then_some(bytes)
}

/// An application cookie's value (first occurrence over all `Cookie` headers), or the first
/// capture group of `regex` matched against that value.
#[derive(Debug)]
pub struct CookieSource {
    /// The cookie's name.
    pub name: String,
    /// A pattern whose first capture group is the key, else the whole value.
    pub regex: Option<regex::bytes::Regex>,
}

impl KeySource for CookieSource {
    fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
        let value = request
            .headers
            .get_all(COOKIE)
            .iter()
            .find_map(|h| cookie_values(h.as_bytes(), self.name.as_bytes()).next())?;
        let key = match &self.regex {
            None => value,
            Some(regex) => regex.captures(value)?.get(1)?.as_bytes(),
        };
        non_empty(key).map(Cow::Borrowed)
    }
}

/// A request header's value (the first one, if repeated).
#[derive(Debug)]
pub struct HeaderSource {
    /// The header's name.
    pub name: http::HeaderName,
}

impl KeySource for HeaderSource {
    fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
        let value = request.headers.get(&self.name)?.as_bytes();
        non_empty(value).map(Cow::Borrowed)
    }
}

/// Query parameters, raw (not percent-decoded) values joined with `&` in the configured order.
/// A repeated parameter counts once (its first value); the key is present when at least one
/// parameter is.
#[derive(Debug)]
pub struct QuerySource {
    /// The parameters' names, in key order.
    pub params: Vec<String>,
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a [u8]> {
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then_some(v.as_bytes())
    })
}

impl KeySource for QuerySource {
    fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
        let query = request.uri.query()?;
        if let [single] = self.params.as_slice() {
            return query_param(query, single)
                .and_then(non_empty)
                .map(Cow::Borrowed);
        }
        let values: Vec<Option<&[u8]>> =
            self.params.iter().map(|p| query_param(query, p)).collect();
        if values.iter().all(|v| v.is_none_or(|v| v.is_empty())) {
            return None;
        }
        let mut key = Vec::new();
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                key.push(b'&');
            }
            key.extend_from_slice(value.unwrap_or_default());
        }
        Some(Cow::Owned(key))
    }
}

/// The URL path, optionally with its query string.
#[derive(Debug)]
pub struct PathSource {
    /// The query string is part of the key.
    pub with_query: bool,
}

impl KeySource for PathSource {
    fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
        let text = if self.with_query {
            request.uri.path_and_query()?.as_str()
        } else {
            request.uri.path()
        };
        non_empty(text.as_bytes()).map(Cow::Borrowed)
    }
}

/// The `Host` header (or the URI authority, for HTTP/2), lower-cased.
#[derive(Debug)]
pub struct HostSource;

impl KeySource for HostSource {
    fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
        let host = match request.headers.get(HOST) {
            Some(h) => h.as_bytes(),
            None => request.uri.host()?.as_bytes(),
        };
        let host = non_empty(host)?;
        if host.iter().any(u8::is_ascii_uppercase) {
            Some(Cow::Owned(host.to_ascii_lowercase()))
        } else {
            Some(Cow::Borrowed(host))
        }
    }
}

/// The client IP masked to a prefix: 4 or 16 bytes.
#[derive(Debug)]
pub struct ClientIpSource {
    /// Bits of an IPv4 address kept (32: the address).
    pub ipv4_prefix: u8,
    /// Bits of an IPv6 address kept (128: the address).
    pub ipv6_prefix: u8,
}

impl KeySource for ClientIpSource {
    fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
        let ip = client_ip::masked(request.client_ip?, self.ipv4_prefix, self.ipv6_prefix);
        Some(Cow::Owned(match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(uri: &'a http::Uri, headers: &'a http::HeaderMap) -> RequestView<'a> {
        RequestView {
            uri,
            headers,
            client_ip: Some("192.168.7.99".parse().unwrap()),
        }
    }

    fn headers(pairs: &[(&str, &[u8])]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        map
    }

    fn key_of(source: &dyn KeySource, uri: &str, pairs: &[(&str, &[u8])]) -> Option<Vec<u8>> {
        let uri: http::Uri = uri.parse().unwrap();
        let headers = headers(pairs);
        source.key(&view(&uri, &headers)).map(|k| k.into_owned())
    }

    #[test]
    fn cookie_source_reads_the_value_or_the_first_capture_group() {
        let plain = CookieSource {
            name: "CUserID".into(),
            regex: None,
        };
        assert_eq!(
            key_of(&plain, "/", &[("cookie", b"a=1; CUserID=u.42")]),
            Some(b"u.42".to_vec())
        );
        assert_eq!(
            key_of(&plain, "/", &[("cookie", b"a=1"), ("cookie", b"CUserID=x")]),
            Some(b"x".to_vec())
        );
        assert_eq!(key_of(&plain, "/", &[("cookie", b"CUserID=")]), None);
        assert_eq!(key_of(&plain, "/", &[]), None);
        let regex = CookieSource {
            name: "CUserID".into(),
            regex: Some(regex::bytes::Regex::new("^([0-9.A-Za-z]+)").unwrap()),
        };
        assert_eq!(
            key_of(&regex, "/", &[("cookie", b"CUserID=abc-def")]),
            Some(b"abc".to_vec())
        );
        assert_eq!(
            key_of(&regex, "/", &[("cookie", b"CUserID=-nothing")]),
            None
        );
        assert_eq!(
            key_of(&regex, "/", &[("cookie", b"CUserID=\xff\xfeab")]),
            None
        );
    }

    #[test]
    fn header_path_and_host_sources() {
        let header = HeaderSource {
            name: http::HeaderName::from_static("x-tenant"),
        };
        assert_eq!(
            key_of(&header, "/", &[("x-tenant", b"t1"), ("x-tenant", b"t2")]),
            Some(b"t1".to_vec())
        );
        assert_eq!(key_of(&header, "/", &[("x-tenant", b"")]), None);
        let path = PathSource { with_query: false };
        assert_eq!(key_of(&path, "/a/b?x=1", &[]), Some(b"/a/b".to_vec()));
        let pq = PathSource { with_query: true };
        assert_eq!(key_of(&pq, "/a/b?x=1", &[]), Some(b"/a/b?x=1".to_vec()));
        assert_eq!(
            key_of(&HostSource, "/", &[("host", b"Shop.Example")]),
            Some(b"shop.example".to_vec())
        );
        assert_eq!(
            key_of(&HostSource, "http://h.example/", &[]),
            Some(b"h.example".to_vec())
        );
    }

    #[test]
    fn query_source_joins_values_in_configured_order_and_takes_the_first_repeat() {
        let q = QuerySource {
            params: vec!["uid".into(), "t".into()],
        };
        assert_eq!(key_of(&q, "/?t=2&uid=1", &[]), Some(b"1&2".to_vec()));
        assert_eq!(key_of(&q, "/?uid=1", &[]), Some(b"1&".to_vec()));
        assert_eq!(key_of(&q, "/?x=1", &[]), None);
        assert_eq!(key_of(&q, "/", &[]), None);
        let single = QuerySource {
            params: vec!["uid".into()],
        };
        assert_eq!(key_of(&single, "/?uid=a&uid=b", &[]), Some(b"a".to_vec()));
        assert_eq!(key_of(&single, "/?uid=", &[]), None);
        assert_eq!(key_of(&single, "/?uid", &[]), None);
    }

    #[test]
    fn client_ip_source_masks_to_the_prefix() {
        let ip24 = ClientIpSource {
            ipv4_prefix: 24,
            ipv6_prefix: 64,
        };
        assert_eq!(key_of(&ip24, "/", &[]), Some(vec![192, 168, 7, 0]));
    }

    #[test]
    fn the_first_present_source_wins() {
        let sources: Vec<Arc<dyn KeySource>> = vec![
            Arc::new(CookieSource {
                name: "CUserID".into(),
                regex: None,
            }),
            Arc::new(HeaderSource {
                name: http::HeaderName::from_static("x-tenant"),
            }),
        ];
        let uri: http::Uri = "/".parse().unwrap();
        let h = headers(&[("x-tenant", b"t1")]);
        assert_eq!(
            first_key(&sources, &view(&uri, &h)).as_deref(),
            Some(&b"t1"[..])
        );
        let h = headers(&[("x-tenant", b"t1"), ("cookie", b"CUserID=u")]);
        assert_eq!(
            first_key(&sources, &view(&uri, &h)).as_deref(),
            Some(&b"u"[..])
        );
        let h = headers(&[]);
        assert_eq!(first_key(&sources, &view(&uri, &h)), None);
    }
}
