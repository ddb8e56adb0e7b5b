//! HTTP/1.0 clients may leave out `Host`; the proxy speaks HTTP/1.1 to backends, where `Host` is
//! required (RFC 9112 §3.2: a server answers 400 without it). So a request without one is sent
//! with the pool's `default_host`, else the backend's address (NGINX's `$proxy_host`). A
//! request's own `Host` is always forwarded as it came.

mod common;
use common::raw_backend::{header_in, response, RawBackend};
use common::*;

/// A strict HTTP/1.1 backend: 400 for a request without exactly one `Host`, else 200 naming
/// the `Host` it got.
async fn strict_backend(name: &str) -> RawBackend {
    RawBackend::start(name, |head| {
        let version = head.lines().next().unwrap_or_default().rsplit(' ').next();
        let hosts = head
            .lines()
            .skip(1)
            .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
            .count();
        if version == Some("HTTP/1.1") && hosts != 1 {
            return response("400 Bad Request", &["Connection: close"], "no Host\n");
        }
        let host = header_in(head, "host").unwrap_or_default();
        response("200 OK", &[], &format!("host={host}\n"))
    })
    .await
}

fn section(backend: &RawBackend, pool_extra: &str) -> String {
    format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  pools:\n    - name: web\n      backends: [{}]\n{pool_extra}",
        backend.yaml()
    )
}

fn body(raw: &str) -> &str {
    raw.split("\r\n\r\n").nth(1).unwrap_or_default().trim()
}

#[tokio::test]
async fn an_http10_request_without_host_reaches_a_strict_backend_with_the_backends_address_as_host()
{
    let backend = strict_backend("iis1").await;
    let proxy = Proxy::start(&section(&backend, "")).await;
    let raw = raw_request(proxy.addr, b"GET /page HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&raw), 200, "{raw}");
    assert_eq!(body(&raw), format!("host={}", backend.addr));
    let head = backend.heads().pop().unwrap();
    assert!(head.starts_with("GET /page HTTP/1.1\r\n"), "{head}");
    assert_eq!(
        header_in(&head, "x-forwarded-host"),
        None,
        "the client named no host"
    );
}

#[tokio::test]
async fn an_http10_request_without_host_gets_the_pools_default_host() {
    let backend = strict_backend("iis1").await;
    let proxy = Proxy::start(&section(&backend, "      default_host: www.example.com\n")).await;
    let raw = raw_request(proxy.addr, b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&raw), 200, "{raw}");
    assert_eq!(body(&raw), "host=www.example.com");
    // A kept-alive HTTP/1.0 client gets the same on each request.
    let raw = raw_request(
        proxy.addr,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&raw), 200, "{raw}");
    assert_eq!(body(&raw), "host=www.example.com");
}

#[tokio::test]
async fn a_request_that_names_its_host_keeps_it_whatever_its_version() {
    let backend = strict_backend("iis1").await;
    let proxy = Proxy::start(&section(&backend, "      default_host: www.example.com\n")).await;
    for request in [
        &b"GET / HTTP/1.0\r\nHost: shop.example:8080\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: shop.example:8080\r\nConnection: close\r\n\r\n",
        b"GET http://shop.example:8080/ HTTP/1.0\r\n\r\n",
    ] {
        let raw = raw_request(proxy.addr, request).await;
        assert_eq!(raw_status(&raw), 200, "{raw}");
        assert_eq!(body(&raw), "host=shop.example:8080");
    }
    let reply = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(reply.body.trim(), format!("host={}", proxy.addr));
}

#[tokio::test]
async fn an_http11_request_without_host_is_answered_400_by_the_proxy_and_never_reaches_a_backend() {
    let backend = strict_backend("iis1").await;
    let proxy = Proxy::start(&section(&backend, "")).await;
    for request in [
        &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET http://shop.example/ HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let raw = raw_request(proxy.addr, request).await;
        assert_eq!(raw_status(&raw), 400, "{raw}");
        assert_eq!(
            body(&raw),
            "400 Bad Request",
            "the proxy's own answer: {raw}"
        );
    }
    assert!(backend.heads().is_empty(), "{:?}", backend.heads());
}
