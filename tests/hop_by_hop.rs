//! Hop-by-hop fields (RFC 9110 §7.6.1) between the client and the backend: the fields of the
//! client's hop and those its `Connection` header names never reach the backend, a body keeps
//! its framing, and `Connection` cannot name what the proxy writes itself. The pools' peers
//! skip Pingora's own pass (`HttpUpstreamRequestPolicy::preserve()`, −3.2 % instructions per
//! request) and the proxy strips these itself (`headers::StripList::apply`, in
//! `upstream_request_filter`): the first test checks that the peers skip Pingora's pass, so
//! that every test here holds the proxy's own stripping (benches/README.md, optimization log).

mod common;
use common::raw_backend;
use common::*;

/// The pools' peers forward the request as the proxy's filter leaves it (Pingora's standard
/// policy is off), and what reaches the backend has lost the client's hop all the same: were
/// the proxy's own stripping removed, the second half fails (the first half says it would not
/// be hidden by Pingora's).
#[tokio::test]
async fn pingoras_own_hop_by_hop_pass_is_off_and_the_proxys_stripping_holds_alone() {
    use pingora_core::upstreams::peer::HttpUpstreamRequestPolicy;
    let backend = raw_backend::RawBackend::start("iis1", |_| {
        raw_backend::response("200 OK", &[], "hello iis1\n")
    })
    .await;
    let yaml = format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  pools:\n    - name: web\n      backends: [{}]\n",
        backend.yaml()
    );
    let config = sticky_proxy::config::load_str(&yaml.replace("{listen}", "127.0.0.1:1"))
        .expect("a valid configuration");
    let (pool, _) = sticky_proxy::pool::Pool::new(&config.pools[0], None);
    assert_eq!(
        pool.peer(&pool.slots()[0], None)
            .options
            .http_upstream_request_policy,
        HttpUpstreamRequestPolicy::preserve(),
        "the peers skip Pingora's own pass: the proxy's stripping is what the tests here hold"
    );

    let proxy = Proxy::start(&yaml).await;
    let raw = raw_request(
        proxy.addr,
        b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: Keep-Alive, x-SECRET, close\r\n\
          Connection: X-Other\r\nX-Secret: 1\r\nX-Other: 2\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAAQAAP__\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
          Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\n\
          X_Forwarded_For: 6.6.6.6\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&raw), 200, "{raw}");
    let head = backend
        .heads()
        .pop()
        .expect("the request reached the backend");
    for gone in [
        "x-secret",
        "x-other",
        "upgrade",
        "http2-settings",
        "keep-alive",
        "te",
        "proxy-connection",
        "proxy-authorization",
        "x_forwarded_for",
    ] {
        assert_eq!(
            raw_backend::header_in(&head, gone),
            None,
            "{gone} in {head}"
        );
    }
    // Pingora writes its own `Connection` for its hop to the backend, if any: never the client's.
    let connection = raw_backend::header_in(&head, "connection").unwrap_or_default();
    assert!(
        !connection.to_ascii_lowercase().contains("secret"),
        "{head}"
    );
    assert_eq!(
        raw_backend::header_in(&head, "x-kept").as_deref(),
        Some("yes")
    );
    assert_eq!(
        raw_backend::header_in(&head, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );

    // A body whose `Content-Length` the client's `Connection` names keeps a framing: Pingora
    // frames it anew (chunked) once the length is gone, never as a body-less request.
    let raw = raw_request(
        proxy.addr,
        b"POST /named-length HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\n\
          Content-Length: 5\r\n\r\nhello",
    )
    .await;
    let head = backend
        .heads()
        .into_iter()
        .find(|h| h.starts_with("POST /named-length"))
        .unwrap_or_else(|| panic!("the request reached the backend: {raw}"));
    let length = raw_backend::header_in(&head, "content-length");
    let chunked = raw_backend::header_in(&head, "transfer-encoding");
    assert!(
        length.as_deref() == Some("5") || chunked.as_deref() == Some("chunked"),
        "{head}"
    );
}

/// What reached the backend for each raw request: hop-by-hop fields (RFC 9110 §7.6.1) and the
/// fields a client names in `Connection` are the client's hop only.
#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_never_reach_the_backend() {
    let backend = raw_backend::RawBackend::start("iis1", |_| {
        raw_backend::response("200 OK", &[], "hello iis1\n")
    })
    .await;
    let proxy = Proxy::start(&format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  pools:\n    - name: web\n      backends: [{}]\n",
        backend.yaml()
    ))
    .await;
    let raw = raw_request(
        proxy.addr,
        b"POST /form HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, X-Secret,close\r\nX-Secret: 1\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n\
          Proxy-Authorization: Basic eA==\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nX-Kept: yes\r\n\
          Content-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(raw_status(&raw), 200, "{raw}");
    let head = backend
        .heads()
        .pop()
        .expect("the request reached the backend");
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "proxy-authorization",
        "http2-settings",
    ] {
        assert_eq!(
            raw_backend::header_in(&head, gone),
            None,
            "{gone} in {head}"
        );
    }
    let connection = raw_backend::header_in(&head, "connection").unwrap_or_default();
    assert!(
        !connection.to_ascii_lowercase().contains("x-secret"),
        "{head}"
    );
    assert_eq!(
        raw_backend::header_in(&head, "x-kept").as_deref(),
        Some("yes")
    );
    assert_eq!(
        raw_backend::header_in(&head, "content-length").as_deref(),
        Some("5")
    );

    // A chunked body stays framed as chunked even when `Connection` names `Transfer-Encoding`.
    // (This backend reads `Content-Length` bodies only: the head is what is checked.)
    let raw = raw_request(
        proxy.addr,
        b"POST /chunked HTTP/1.1\r\nHost: t\r\nConnection: close, Transfer-Encoding\r\n\
          Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&raw), 200, "{raw}");
    let head = backend
        .heads()
        .into_iter()
        .find(|h| h.starts_with("POST /chunked"))
        .expect("the chunked request reached the backend");
    assert_eq!(
        raw_backend::header_in(&head, "transfer-encoding").as_deref(),
        Some("chunked"),
        "{head}"
    );
    assert_eq!(
        raw_backend::header_in(&head, "content-length"),
        None,
        "{head}"
    );
}

/// `Connection` may not name what the proxy itself writes for the backend (the host, the
/// forwarding headers) nor hold a malformed token: such a request is refused with a 400 and
/// the proxy goes on serving.
#[tokio::test]
async fn connection_naming_host_or_forwarding_headers_is_refused() {
    let b1 = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&one_pool(&[&b1], "")).await;
    for connection in [
        "X-Forwarded-For",
        "host",
        "x-forwarded-proto, close",
        "\"x-a\"",
    ] {
        let request = format!("GET / HTTP/1.1\r\nHost: t\r\nConnection: {connection}\r\n\r\n");
        let raw = raw_request(proxy.addr, request.as_bytes()).await;
        assert_eq!(
            raw_status(&raw),
            400,
            "Connection: {connection} → {raw:.200}"
        );
    }
    assert_eq!(b1.hits(), 0);
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 200);
}
