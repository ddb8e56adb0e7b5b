//! The demo backend: a tiny HTTP/1.1 server that behaves like the IIS sites of ARR's
//! walkthrough, used by `make run` (through the `demo-backend` binary) and by the tests.
//!
//! Every path answers `hello <name>\n` with `X-ServerName: <name>` and `X-Powered-By: demo`.
//! Paths starting with `/disable-affinity` add `Arr-Disable-Session-Affinity: true`; `/login`
//! adds `Set-Cookie: JSESSIONID=<fresh id>; Path=/`; `/healthz` answers 200.
//!
//! Test aids (same `hello <name>` body): `/logout` clears `JSESSIONID` (`Max-Age=0`); every request is echoed back in `X-Echo-*` headers
//! (cookie, forwarding headers, opt-out header, `Authorization`, `X-Request-Id`, body length) so tests can see what reached the
//! backend; `/slow/<ms>` answers after `<ms>` milliseconds; `/cache-control/<value>` sends
//! `Cache-Control: <value>` (`_` stands for a space); `/opt-out/<value>` sends the opt-out header
//! with `<value>`; `/header/<name>/<value>` sends any header. A WebSocket upgrade on a path
//! starting with `/ws` is accepted, each text message is echoed back as `<name>: <text>`, and a
//! Close frame is answered with a Close frame (same code); other paths answer an upgrade request
//! with the normal 200 (they refuse it).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serve the demo backend called `name` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, name: String) {
    let name: Arc<str> = name.into();
    let counter = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        let counter = counter.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let name = name.clone();
                let counter = counter.clone();
                async move { Ok::<_, Infallible>(handle(&name, &counter, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Read the request body, wait if asked to, and answer.
pub async fn handle(
    name: &str,
    counter: &AtomicU64,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.uri().path().starts_with("/ws") && is_websocket_upgrade(req.headers()) {
        return websocket(name, req);
    }
    if let Some(ms) = req
        .uri()
        .path()
        .strip_prefix("/slow/")
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms.min(60_000))).await;
    }
    let (parts, body) = req.into_parts();
    let body_len = http_body_util::BodyExt::collect(body)
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let mut response = respond(name, counter, &Request::from_parts(parts, ()));
    if let Ok(v) = http::HeaderValue::from_str(&body_len.to_string()) {
        response.headers_mut().insert("X-Echo-Body-Length", v);
    }
    response
}

fn is_websocket_upgrade(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && headers.contains_key(http::header::SEC_WEBSOCKET_KEY)
}

/// Accept a WebSocket upgrade and echo text messages as `<name>: <text>` until the client
/// closes.
fn websocket(name: &str, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role, Message};
    let key = req
        .headers()
        .get(http::header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
        .unwrap_or_default();
    let upgrade = hyper::upgrade::on(&mut req);
    let echo_name = name.to_string();
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(message)) = ws.next().await {
            let reply = match message {
                Message::Text(text) => Message::Text(format!("{echo_name}: {text}")),
                Message::Close(_) => {
                    // tungstenite has queued our Close (with the client's code): flushing sends
                    // it, then the connection ends. (Dropping it unsent left browsers with code
                    // 1006; `ws.close` would try to send a second Close and fail.)
                    let _ = ws.flush().await;
                    break;
                }
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(101)
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::SEC_WEBSOCKET_ACCEPT, key)
        .header("X-ServerName", name)
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The demo backend's answer to one request (its body already read).
pub fn respond<B>(name: &str, counter: &AtomicU64, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let mut builder = Response::builder()
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("X-ServerName", name)
        .header("X-Powered-By", "demo");
    if path.starts_with("/disable-affinity") {
        builder = builder.header("Arr-Disable-Session-Affinity", "true");
    }
    if let Some(value) = path.strip_prefix("/cache-control/") {
        builder = builder.header("Cache-Control", value.replace('_', " "));
    }
    if let Some(value) = path.strip_prefix("/opt-out/") {
        builder = builder.header("Arr-Disable-Session-Affinity", value);
    }
    if let Some((header, value)) = path
        .strip_prefix("/header/")
        .and_then(|rest| rest.split_once('/'))
    {
        if let (Ok(h), Ok(v)) = (
            http::HeaderName::from_bytes(header.as_bytes()),
            http::HeaderValue::from_str(&value.replace('_', " ")),
        ) {
            builder = builder.header(h, v);
        }
    }
    if path == "/logout" {
        builder = builder.header("Set-Cookie", "JSESSIONID=; Path=/; Max-Age=0");
    }
    if path == "/login" {
        let id = counter.fetch_add(1, Relaxed);
        builder = builder.header("Set-Cookie", format!("JSESSIONID={name}-{id:08x}; Path=/"));
    }
    for (echo, header) in [
        ("X-Echo-Cookie", "cookie"),
        ("X-Echo-Forwarded-For", "x-forwarded-for"),
        ("X-Echo-Forwarded-Proto", "x-forwarded-proto"),
        ("X-Echo-Forwarded-Host", "x-forwarded-host"),
        ("X-Echo-Opt-Out", "arr-disable-session-affinity"),
        ("X-Echo-Authorization", "authorization"),
        ("X-Echo-Request-Id", "x-request-id"),
    ] {
        let values: Vec<&[u8]> = req
            .headers()
            .get_all(header)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        if !values.is_empty() {
            if let Ok(v) = http::HeaderValue::from_bytes(&values.join(&b" | "[..])) {
                builder = builder.header(echo, v);
            }
        }
    }
    builder
        .body(Full::new(Bytes::from(format!("hello {name}\n"))))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"demo error\n"))))
}
