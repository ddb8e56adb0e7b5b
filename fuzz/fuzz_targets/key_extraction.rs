//! Key extraction (`src/affinity/key.rs`: every built-in `KeySource` and `first_key` over a
//! `RequestView` built from a fuzzed URI and headers), the client IP behind trusted proxies
//! (`src/affinity/client_ip.rs`, which the `client_ip` source keys on), and the learned-session
//! id (`LearnedSessions::request_id`, `path_parameter`, `observe_set_cookie` in
//! `src/affinity/learned.rs`).
//!
//! Invariants:
//! 1. A key is never empty; `first_key` is the key of the first source that has one.
//! 2. Each source returns exactly what its documentation says, computed here independently:
//!    cookie = first occurrence over all `Cookie` headers (through the regex's first group),
//!    header = the first value, query = the raw first value of each parameter joined with `&`,
//!    path / path-and-query = the URI's, host = the `Host` header (else the URI's host)
//!    lower-cased, client IP = the address masked to its prefix (4 or 16 bytes).
//! 3. The resolved client IP is the peer unless the peer is trusted; then it is the peer or an
//!    address written in `X-Forwarded-For` / `Forwarded`.
//! 4. A learned id is non-empty and a piece of the request; a learned cookie wins over the path
//!    parameter, which wins over the query, each found as documented.
//! 5. Observing a `Set-Cookie` line reports only a non-empty value taken from the line.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use sticky_proxy::affinity::client_ip;
use sticky_proxy::affinity::key::{first_key, from_config, KeySource, RequestView};
use sticky_proxy::affinity::learned::{
    observe_set_cookie, path_parameter, LearnedSessions, Observed,
};
use sticky_proxy::affinity::sessions::SessionTable;
use sticky_proxy::config::KeySourceConfig;
use sticky_proxy::config::TableConfig;

/// Header names the sources look at, and a fuzzed one.
#[derive(Debug, Arbitrary)]
enum Name<'a> {
    Cookie,
    Host,
    XTenant,
    XForwardedFor,
    Forwarded,
    Other(&'a [u8]),
}

#[derive(Debug, Arbitrary)]
enum Source<'a> {
    Cookie { name: &'a [u8], regex: u8 },
    Header { name: &'a [u8] },
    Query { params: Vec<&'a str> },
    Path,
    PathAndQuery,
    Host,
    ClientIp { v4: u8, v6: u8 },
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    uri: &'a [u8],
    headers: Vec<(Name<'a>, &'a [u8])>,
    peer: Option<([u8; 16], bool)>,
    trusted: Vec<([u8; 16], bool, u8)>,
    sources: Vec<Source<'a>>,
    learned_cookies: Vec<&'a [u8]>,
    path_parameter: Option<&'a [u8]>,
    query_parameters: Vec<&'a str>,
    set_cookie: &'a [u8],
}

/// Fixed regexes (compiling a fuzzed one per run would fuzz the regex crate, not us): anchored,
/// unanchored, an optional group, a nested repetition.
const REGEXES: [&str; 4] = ["^([0-9.A-Za-z]+)", "u=([^&]*)", "^(x)?y", "^((a+)+)$"];

fn regexes() -> &'static [regex::bytes::Regex] {
    static R: OnceLock<Vec<regex::bytes::Regex>> = OnceLock::new();
    R.get_or_init(|| {
        REGEXES
            .iter()
            .map(|r| regex::bytes::Regex::new(r).unwrap())
            .collect()
    })
}

fn table() -> Arc<SessionTable> {
    static T: OnceLock<Arc<SessionTable>> = OnceLock::new();
    T.get_or_init(|| {
        Arc::new(SessionTable::new(TableConfig {
            capacity: 16,
            idle_timeout: std::time::Duration::from_secs(60),
            max_lifetime: None,
        }))
    })
    .clone()
}

fn ip((bytes, v4): ([u8; 16], bool)) -> IpAddr {
    if v4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(bytes)
    }
}

fuzz_target!(|input: Input| check(input));

fn check(input: Input) {
    let Ok(uri) = http::Uri::try_from(input.uri) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    for (name, value) in input.headers.iter().take(16) {
        let name = match name {
            Name::Cookie => http::header::COOKIE,
            Name::Host => http::header::HOST,
            Name::XTenant => http::HeaderName::from_static("x-tenant"),
            Name::XForwardedFor => http::HeaderName::from_static("x-forwarded-for"),
            Name::Forwarded => http::HeaderName::from_static("forwarded"),
            Name::Other(raw) => match http::HeaderName::from_bytes(raw) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }

    // 3. The client IP.
    let trusted: Vec<ipnet::IpNet> = input
        .trusted
        .iter()
        .take(4)
        .filter_map(|(bytes, v4, prefix)| {
            let addr = ip((*bytes, *v4));
            let max = if *v4 { 32 } else { 128 };
            ipnet::IpNet::new(addr, prefix % (max + 1)).ok()
        })
        .collect();
    let client_ip = input.peer.map(|peer| {
        let peer = ip(peer);
        let resolved = client_ip::resolve(peer, &headers, &trusted);
        let canonical = peer.to_canonical();
        assert_eq!(
            resolved,
            resolved.to_canonical(),
            "resolved IPs are canonical"
        );
        if !client_ip::is_trusted(&canonical, &trusted) {
            assert_eq!(
                resolved, canonical,
                "an untrusted peer's headers are ignored"
            );
        } else if resolved != canonical {
            assert!(
                forwarded_hops(&headers).contains(&resolved),
                "resolved {resolved} is neither the peer nor a forwarded hop"
            );
        }
        resolved
    });

    // 1. and 2. The key sources.
    let view = RequestView {
        uri: &uri,
        headers: &headers,
        client_ip,
    };
    let mut built: Vec<(Arc<dyn KeySource>, Expect)> = Vec::new();
    for source in input.sources.iter().take(6) {
        let (config, expect) = match source {
            Source::Cookie { name, regex } => {
                let name = common::token(name, "CUserID");
                let regex = (*regex as usize % (REGEXES.len() + 1))
                    .checked_sub(1)
                    .map(|i| regexes()[i].clone());
                (
                    KeySourceConfig::Cookie {
                        name: name.clone(),
                        regex: regex.clone(),
                    },
                    Expect::Cookie(name, regex),
                )
            }
            Source::Header { name } => {
                let Ok(name) = http::HeaderName::from_bytes(name) else {
                    continue;
                };
                (
                    KeySourceConfig::Header { name: name.clone() },
                    Expect::Header(name),
                )
            }
            Source::Query { params } => {
                let params: Vec<String> = params
                    .iter()
                    .take(4)
                    .filter(|p| !p.is_empty() && !p.contains(['&', '=', '#']))
                    .map(|p| p.to_string())
                    .collect();
                if params.is_empty() {
                    continue;
                }
                (
                    KeySourceConfig::Query {
                        params: params.clone(),
                    },
                    Expect::Query(params),
                )
            }
            Source::Path => (KeySourceConfig::Path, Expect::Path(false)),
            Source::PathAndQuery => (KeySourceConfig::PathAndQuery, Expect::Path(true)),
            Source::Host => (KeySourceConfig::Host, Expect::Host),
            Source::ClientIp { v4, v6 } => {
                let (v4, v6) = (v4 % 33, v6 % 129);
                (
                    KeySourceConfig::ClientIp {
                        ipv4_prefix: v4,
                        ipv6_prefix: v6,
                    },
                    Expect::ClientIp(v4, v6),
                )
            }
        };
        let source = from_config(&config, &sticky_proxy::extension::Extensions::default())
            .expect("a built-in source");
        built.push((source, expect));
    }
    let mut first: Option<Vec<u8>> = None;
    for (source, expect) in &built {
        let key = source.key(&view).map(|k| k.into_owned());
        if let Some(k) = &key {
            assert!(!k.is_empty(), "an empty key from {expect:?}");
        }
        assert_eq!(key, expect.key(&view), "{expect:?}");
        if first.is_none() {
            first = key;
        }
    }
    let sources: Vec<Arc<dyn KeySource>> = built.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(
        first_key(&sources, &view).map(|k| k.into_owned()),
        first,
        "first_key"
    );

    // 4. The learned session id.
    let learned = LearnedSessions {
        cookies: input
            .learned_cookies
            .iter()
            .take(3)
            .map(|c| common::token(c, "JSESSIONID"))
            .collect(),
        path_parameter: input.path_parameter.map(|p| common::token(p, "jsessionid")),
        query_parameters: input
            .query_parameters
            .iter()
            .take(3)
            .filter(|p| !p.is_empty() && !p.contains(['&', '=', '#']))
            .map(|p| p.to_string())
            .collect(),
        table: table(),
        store: None,
    };
    let id = learned.request_id(&uri, &headers);
    let from_cookie = learned.cookies.iter().find_map(|name| {
        headers.get_all(http::header::COOKIE).iter().find_map(|h| {
            common::values(h.as_bytes(), name.as_bytes())
                .into_iter()
                .find(|v| !v.is_empty())
        })
    });
    let from_path = learned.path_parameter.as_ref().and_then(|p| {
        uri.path().split('/').find_map(|segment| {
            segment.split(';').skip(1).find_map(|param| {
                let (n, v) = param.split_once('=')?;
                (n.eq_ignore_ascii_case(p) && !v.is_empty()).then_some(v.as_bytes())
            })
        })
    });
    if let Some(p) = &learned.path_parameter {
        assert_eq!(path_parameter(uri.path(), p), from_path);
    }
    let from_query = uri.query().and_then(|q| {
        learned.query_parameters.iter().find_map(|name| {
            q.split('&').find_map(|pair| {
                let (n, v) = pair.split_once('=')?;
                (n == name && !v.is_empty()).then_some(v.as_bytes())
            })
        })
    });
    assert_eq!(id, from_cookie.or(from_path).or(from_query), "learned id");
    if let Some(id) = id {
        assert!(!id.is_empty());
        let in_cookie = headers
            .get_all(http::header::COOKIE)
            .iter()
            .any(|v| common::is_piece_of(id, v.as_bytes()));
        assert!(in_cookie || common::is_piece_of(id, uri.to_string().as_bytes()));
    }

    // 5. A backend's Set-Cookie line.
    let names = if learned.cookies.is_empty() {
        vec!["JSESSIONID".to_string()]
    } else {
        learned.cookies.clone()
    };
    match observe_set_cookie(input.set_cookie, &names) {
        Observed::Other | Observed::Cleared(None) => {}
        Observed::Set(v) | Observed::Cleared(Some(v)) => {
            assert!(!v.is_empty());
            assert!(common::is_piece_of(&v, input.set_cookie));
        }
    }
}

/// Every address written in the request's `X-Forwarded-For` and `Forwarded` headers, read
/// loosely (any token that parses as an address, or does before a `:port`), canonical.
fn forwarded_hops(headers: &http::HeaderMap) -> Vec<IpAddr> {
    let separators = |b: &u8| matches!(b, b',' | b';' | b'=' | b'"' | b'[' | b']' | b' ' | b'\t');
    headers
        .get_all("x-forwarded-for")
        .iter()
        .chain(headers.get_all("forwarded").iter())
        .flat_map(|v| v.as_bytes().split(separators))
        .filter_map(|token| {
            let text = std::str::from_utf8(token).ok()?.trim();
            text.parse::<IpAddr>()
                .or_else(|_| text.split(':').next().unwrap_or_default().trim().parse())
                .ok()
        })
        .map(|ip| ip.to_canonical())
        .collect()
}

/// What a source should return, computed from its documentation.
#[derive(Debug)]
enum Expect {
    Cookie(String, Option<regex::bytes::Regex>),
    Header(http::HeaderName),
    Query(Vec<String>),
    Path(bool),
    Host,
    ClientIp(u8, u8),
}

impl Expect {
    fn key(&self, view: &RequestView) -> Option<Vec<u8>> {
        let non_empty = |k: Vec<u8>| (!k.is_empty()).then_some(k);
        match self {
            Expect::Cookie(name, regex) => {
                let value = view
                    .headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .find_map(|h| {
                        common::values(h.as_bytes(), name.as_bytes())
                            .first()
                            .copied()
                    })?;
                let key = match regex {
                    None => value,
                    Some(r) => r.captures(value)?.get(1)?.as_bytes(),
                };
                non_empty(key.to_vec())
            }
            Expect::Header(name) => non_empty(view.headers.get(name)?.as_bytes().to_vec()),
            Expect::Query(params) => {
                let query = view.uri.query()?;
                let first = |p: &str| {
                    query.split('&').find_map(|pair| {
                        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                        (n == p).then_some(v)
                    })
                };
                let values: Vec<Option<&str>> = params.iter().map(|p| first(p)).collect();
                if values.iter().all(|v| v.is_none_or(str::is_empty)) {
                    return None;
                }
                let key = values
                    .iter()
                    .map(|v| v.unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("&");
                Some(key.into_bytes())
            }
            Expect::Path(with_query) => {
                let text = if *with_query {
                    view.uri.path_and_query()?.as_str()
                } else {
                    view.uri.path()
                };
                non_empty(text.as_bytes().to_vec())
            }
            Expect::Host => {
                let host = match view.headers.get(http::header::HOST) {
                    Some(h) => h.as_bytes(),
                    None => view.uri.host()?.as_bytes(),
                };
                non_empty(host.to_ascii_lowercase())
            }
            Expect::ClientIp(v4, v6) => {
                let ip = view.client_ip?;
                Some(match ip {
                    IpAddr::V4(a) => {
                        let bits =
                            u32::from(a) & u32::MAX.checked_shl(32 - u32::from(*v4)).unwrap_or(0);
                        bits.to_be_bytes().to_vec()
                    }
                    IpAddr::V6(a) => {
                        let bits = u128::from(a)
                            & u128::MAX.checked_shl(128 - u32::from(*v6)).unwrap_or(0);
                        bits.to_be_bytes().to_vec()
                    }
                })
            }
        }
    }
}
