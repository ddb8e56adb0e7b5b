//! Request-header stripping and forwarding: the real `StickyProxy::upstream_request_filter`
//! (src/proxy/mod.rs; its stripping is `headers::StripList::apply`) and `request_filter` before
//! it, on a request head that Pingora's own HTTP/1 parser read from fuzzed bytes. The proxy is built from
//! configs loaded by `config::load_str` the way `build_server` builds it; only the TCP peer
//! (address, trusted or not) and TLS are set by hand, as a real connection would set them.
//!
//! Invariants, between the request the client sent (as Pingora parsed it) and the request the
//! backend would get:
//! 1. No header the proxy strips (forwarding headers, `hide_headers`, the opt-out header) nor a
//!    look-alike (`_` for `-`, any case) reaches the backend, except the three the proxy sets.
//! 2. `X-Forwarded-Proto` once, `https` exactly for TLS; `X-Forwarded-For` once when the peer
//!    is known: the peer, or — from a trusted proxy — the client's chain then the peer;
//!    `X-Forwarded-Host` once, the client's `Host` (else the URI authority), or absent.
//! 3. With `indirect`, no `Cookie` header forwarded contains one of the listener's affinity
//!    cookie names; every other cookie pair is forwarded byte for byte, in order; without
//!    `indirect`, every pair is. Split `Cookie` headers are joined into one.
//! 4. Every other header is forwarded as sent (same values, same order); no header is added but
//!    the three forwarding headers; method and URI are untouched.
//! 5. The client's hop stays behind (the pools' peers skip Pingora's own pass, so this filter
//!    is all there is): no hop-by-hop field and no field the client's `Connection` names
//!    reaches the backend, but a WebSocket opening's normalized `Connection: Upgrade` and
//!    `Upgrade: websocket`; a `Connection` header that names a protected field, holds a
//!    malformed token or more than nine is refused (the filter fails: a `400`), any other is not.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pingora_proxy::{ProxyHttp, Session};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use sticky_proxy::config::{load_str, Config};
use sticky_proxy::headers::hop_by_hop;
use sticky_proxy::proxy::ctx::RequestCtx;
use sticky_proxy::proxy::routes::Router;
use sticky_proxy::proxy::{ProxySettings, StickyProxy};

const SECRET: &str = "fuzz-secret-0123456789abcdef";

/// The listeners under test: `indirect` cookies with a twin and hidden headers; routes where
/// one class hides its cookie and another has none (the listener's cookie names are stripped
/// on every route); a cookie that is not `indirect`, with a custom opt-out header, learned
/// sessions and trusted proxies.
fn configs() -> Vec<String> {
    let head = "sticky:\n  listeners: [{ addr: \"127.0.0.1:6188\" }]\n";
    let backends = "backends: [{ name: iis1, addr: \"127.0.0.1:9001\" }, { name: iis2, addr: \"127.0.0.1:9002\" }]";
    vec![
        format!(
            "{head}  hide_headers: [X-ServerName, X-Powered-By]\n  trusted_proxies: [127.0.0.1/32, \"::1/128\"]\n  pools:\n    - name: web\n      {backends}\n      affinity:\n        cookie: {{ name: ARRAffinity, secret: {SECRET}, same_site_none_twin: ARRAffinitySameSite, indirect: true }}\n"
        ),
        format!(
            "{head}  pools:\n    - name: app\n      {backends}\n    - name: api\n      backends: [{{ name: iis3, addr: \"127.0.0.1:9003\" }}]\n  classes:\n    sessions:\n      cookie: {{ name: SRV, secret: {SECRET}, indirect: true }}\n    tenants:\n      hash: {{ sources: [{{ type: header, name: X-Tenant }}] }}\n  routes:\n    - {{ match: {{ host: \"*.api.test\" }}, pool: api, class: tenants }}\n    - {{ match: {{ path_prefix: /static }}, pool: app, class: none }}\n  default_route: {{ pool: app, class: sessions }}\n"
        ),
        format!(
            "{head}  hide_headers: [X-Internal-Token]\n  trusted_proxies: [127.0.0.0/8]\n  pools:\n    - name: web\n      {backends}\n      affinity:\n        opt_out_header: X-No-Affinity\n        cookie: {{ name: BackendId, secret: {SECRET} }}\n        learn: {{ presets: [j2ee, php] }}\n"
        ),
    ]
}

struct Listener {
    proxy: StickyProxy,
    router: Router,
    trusted: Vec<ipnet::IpNet>,
}

/// `lib.rs`' `build_server` / `router_for`, short of a Pingora server. The router is built twice
/// (`StickyProxy` keeps its own): the copy here is for reading what it strips.
fn listeners() -> &'static [Listener] {
    static L: OnceLock<Vec<Listener>> = OnceLock::new();
    L.get_or_init(|| {
        configs()
            .iter()
            .map(|yaml| {
                let config = load_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
                let settings = Arc::new(ProxySettings {
                    hide_headers: config.hide_headers.clone(),
                    trusted_proxies: config.trusted_proxies.clone(),
                    ..Default::default()
                });
                Listener {
                    proxy: StickyProxy::new(router(&config), settings, &config.listeners[0]),
                    router: router(&config),
                    trusted: config.trusted_proxies.clone(),
                }
            })
            .collect()
    })
}

fn router(config: &Config) -> Router {
    // What `build_server` wires for the first listener, short of a Pingora server.
    let runtime = sticky_proxy::server::Runtime::build(config, &Default::default())
        .expect("the listeners' configs name no TLS files");
    runtime.wiring.router_for(config, &config.listeners[0])
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static R: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    R.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Header names worth trying: what the proxy strips or sets, their look-alikes, and any name.
#[derive(Debug, Arbitrary)]
enum Name<'a> {
    Cookie,
    Host,
    /// One of the names the proxy strips (index into a fixed list), spelt with `_` for `-`
    /// and in the given case pattern when asked.
    Stripped {
        which: u8,
        underscore: bool,
        case: u32,
    },
    /// A hop-by-hop field (index into [`HOP`]), `Connection` among them.
    Hop(u8),
    Other(&'a str),
}

const HOP: [&str; 10] = [
    "Connection",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Keep-Alive",
    "Proxy-Connection",
    "HTTP2-Settings",
];

const STRIPPED: [&str; 12] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
    "x-servername",
    "x-powered-by",
    "x-internal-token",
    "arr-disable-session-affinity",
    "x-no-affinity",
    "x-tenant",
    "x-forwarded-port",
];

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    listener: u8,
    method: u8,
    target: &'a str,
    http10: bool,
    headers: Vec<(Name<'a>, &'a str)>,
    /// The TCP peer: `None` unknown; `true` a trusted proxy's address.
    peer: Option<(bool, [u8; 4])>,
    tls: bool,
}

fuzz_target!(|input: Input| check(input));

fn check(input: Input) {
    let listeners = listeners();
    let listener = &listeners[usize::from(input.listener) % listeners.len()];
    let method =
        ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"][usize::from(input.method) % 6];
    let mut raw = format!(
        "{method} {} HTTP/1.{}\r\n",
        input.target,
        if input.http10 { 0 } else { 1 }
    );
    for (name, value) in input.headers.iter().take(24) {
        let name = match name {
            Name::Cookie => "Cookie".to_string(),
            Name::Host => "Host".to_string(),
            Name::Stripped {
                which,
                underscore,
                case,
            } => {
                let n = STRIPPED[usize::from(*which) % STRIPPED.len()];
                let n = if *underscore {
                    n.replace('-', "_")
                } else {
                    n.to_string()
                };
                n.chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if case >> (i % 32) & 1 == 1 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect()
            }
            Name::Hop(which) => HOP[usize::from(*which) % HOP.len()].to_string(),
            Name::Other(n) => n.to_string(),
        };
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");

    let mut session = Session::new_h1(Box::new(std::io::Cursor::new(raw.into_bytes())));
    let rt = runtime();
    match rt.block_on(session.read_request()) {
        Ok(true) => {}
        _ => return, // not a request head Pingora accepts: never reaches the hooks
    }
    let client = session.req_header().clone();
    let mut ctx = RequestCtx::new();
    let answered = rt
        .block_on(listener.proxy.request_filter(&mut session, &mut ctx))
        .expect("request_filter never fails");
    if answered {
        return; // the proxy answered itself (no route): nothing goes upstream
    }
    // What `request_filter` reads from the connection (none here): the peer and TLS.
    ctx.client.peer = input.peer.map(|(trusted, octets)| {
        if trusted {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from([
                10 | (octets[0] & 0x80),
                octets[1],
                octets[2],
                octets[3].max(1),
            ])
        }
    });
    ctx.client.peer_trusted = ctx
        .client
        .peer
        .is_some_and(|ip| sticky_proxy::affinity::client_ip::is_trusted(&ip, &listener.trusted));
    ctx.client.tls = input.tls;
    let values = |req: &pingora_http::RequestHeader, name: &str| -> Vec<Vec<u8>> {
        req.headers
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    };
    let mut upstream = client.clone();
    let filtered = rt.block_on(listener.proxy.upstream_request_filter(
        &mut session,
        &mut upstream,
        &mut ctx,
    ));
    // 5. (refusals)
    let refused = hop_by_hop::refused_connection(&client.headers);
    assert_eq!(
        filtered.is_err(),
        refused.is_some(),
        "{refused:?} {filtered:?}"
    );
    if filtered.is_err() {
        return;
    }
    let websocket = hop_by_hop::is_websocket_opening(&client, !input.http10);
    // 5.
    for name in upstream.headers.keys() {
        if websocket && (name == http::header::CONNECTION || name == http::header::UPGRADE) {
            continue;
        }
        assert!(
            !hop_by_hop::is_hop_by_hop(name),
            "{name:?} (hop-by-hop) forwarded"
        );
        assert!(
            !hop_by_hop::is_nominated(&client.headers, name),
            "{name:?} (named by Connection) forwarded"
        );
    }
    if websocket {
        assert_eq!(values(&upstream, "connection"), vec![b"Upgrade".to_vec()]);
        assert_eq!(values(&upstream, "upgrade"), vec![b"websocket".to_vec()]);
    }
    // The client's hop, stripped: not "dropped" in the sense of 4.
    let hop = |name: &http::HeaderName| {
        hop_by_hop::is_hop_by_hop(name) || hop_by_hop::is_nominated(&client.headers, name)
    };

    let route = &listener.router.routes[ctx.route.expect("a route: the proxy did not answer")];
    let dashed = |n: &str| n.replace('_', "-");
    let stripped: Vec<String> = route
        .strip_request_headers
        .names()
        .iter()
        .map(|n| dashed(n.as_str()))
        .collect();
    const SET: [&str; 3] = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];

    // 1. and 4.
    assert_eq!(upstream.method, client.method);
    assert_eq!(upstream.uri, client.uri);
    for name in upstream.headers.keys() {
        let n = name.as_str();
        if SET.contains(&n) || hop(name) {
            continue;
        }
        assert!(
            !stripped.contains(&dashed(n)),
            "{n:?} reached the backend (strip list {stripped:?})"
        );
        assert!(client.headers.contains_key(name), "{n:?} was added");
        if name != http::header::COOKIE {
            assert_eq!(values(&upstream, n), values(&client, n), "{n:?} changed");
        }
    }
    for name in client.headers.keys() {
        let n = name.as_str();
        if name != http::header::COOKIE
            && !SET.contains(&n)
            && !stripped.contains(&dashed(n))
            && !hop(name)
        {
            assert!(upstream.headers.contains_key(name), "{n:?} was dropped");
        }
    }

    // 2.
    assert_eq!(
        values(&upstream, "x-forwarded-proto"),
        vec![if ctx.client.tls {
            b"https".to_vec()
        } else {
            b"http".to_vec()
        }]
    );
    match ctx.client.peer {
        None => assert!(values(&upstream, "x-forwarded-for").is_empty()),
        Some(peer) => {
            let chain = values(&client, "x-forwarded-for");
            let mut expected = Vec::new();
            if ctx.client.peer_trusted {
                for hop in &chain {
                    expected.extend_from_slice(hop);
                    expected.extend_from_slice(b", ");
                }
            }
            expected.extend_from_slice(peer.to_string().as_bytes());
            assert_eq!(values(&upstream, "x-forwarded-for"), vec![expected]);
        }
    }
    let host = client
        .headers
        .get(http::header::HOST)
        .map(|h| h.as_bytes().to_vec())
        .or_else(|| {
            client
                .uri
                .authority()
                .map(|a| a.as_str().as_bytes().to_vec())
        });
    assert_eq!(
        values(&upstream, "x-forwarded-host"),
        host.into_iter().collect::<Vec<_>>()
    );

    // 3.
    let ours = &listener.router.indirect_cookie_names;
    let is_ours = |pair: &[u8]| ours.iter().any(|n| &n[..] == common::name(pair));
    let sent = values(&client, "cookie");
    let forwarded = values(&upstream, "cookie");
    let sent_pairs: Vec<&[u8]> = sent.iter().flat_map(|v| common::pairs(v)).collect();
    let forwarded_pairs: Vec<&[u8]> = forwarded.iter().flat_map(|v| common::pairs(v)).collect();
    let expected: Vec<&[u8]> = sent_pairs.iter().copied().filter(|p| !is_ours(p)).collect();
    assert_eq!(forwarded_pairs, expected, "cookies forwarded");
    assert!(
        forwarded.len() <= 1 || forwarded.iter().all(|v| common::trim(v).is_empty()),
        "{} Cookie headers forwarded",
        forwarded.len()
    );
    for value in &forwarded {
        assert!(!sticky_proxy::affinity::cookie::contains_any(value, ours));
    }
}
