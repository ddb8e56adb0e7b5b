//! Hop-by-hop fields (RFC 9110 §7.6.1) between the client and the backend: the fields of the
//! client's hop and those its `Connection` header names never reach the backend, a body keeps
//! its framing, and `Connection` cannot name what the proxy writes itself. Pingora's standard
//! upstream request policy does this today; these tests hold whoever does it (see
//! benches/README.md, optimization log: `http_upstream_request_policy`).

mod common;
use common::raw_backend;
use common::*;

/// What reached the backend for each raw request: hop-by-hop fields (RFC 9110 §7.6.1) and the
/// fields a client names in `Connection` are the client's hop only. Pingora's standard upstream
/// request policy strips them today; these tests keep it so whoever strips them.
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
