//! What a client's connection sees, byte by byte: response bodies streamed as the backend sends
//! them (a stalled backend does not hold back what it already sent), pipelined requests
//! answered in order, and the proxy's own answers without a `Server` header.

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const GENEROUS: Duration = Duration::from_secs(15);

/// A backend that plays `parts` on each connection after reading a request head: it writes
/// `parts[0]`, then waits for a go from the test before each next part.
async fn stalling_backend(parts: Vec<&'static [u8]>) -> (SocketAddr, mpsc::UnboundedSender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, mut go_rx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        for (i, part) in parts.iter().enumerate() {
            if i > 0 && go_rx.recv().await.is_none() {
                return;
            }
            if stream.write_all(part).await.is_err() {
                return;
            }
        }
        // Hold the connection until the test ends.
        let _ = go_rx.recv().await;
    });
    (addr, go)
}

async fn proxy_for(backend: SocketAddr) -> Proxy {
    Proxy::start(&format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  pools:\n    - name: web\n      backends: [{{ name: iis1, addr: \"{backend}\" }}]\n"
    ))
    .await
}

/// Read from `stream` until `got` contains `want` (or the deadline passes: panic with what came).
async fn read_until(stream: &mut TcpStream, got: &mut Vec<u8>, want: &str) {
    let deadline = tokio::time::Instant::now() + GENEROUS;
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(got).contains(want) {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "{want:?} not received while the backend waits; got {:?}",
                String::from_utf8_lossy(got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => panic!(
                "closed before {want:?}; got {:?}",
                String::from_utf8_lossy(got)
            ),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_content_length_body_reaches_the_client_as_it_arrives_while_the_backend_stalls() {
    let (backend, go) = stalling_backend(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 22\r\n\r\nhello world",
        b"hello again",
    ])
    .await;
    let proxy = proxy_for(backend).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    // The backend sent its head and 11 bytes, and waits for the test: they must arrive now.
    read_until(&mut stream, &mut got, "\r\n\r\nhello world").await;
    go.send(()).unwrap();
    read_until(&mut stream, &mut got, "hello worldhello again").await;
}

#[tokio::test]
async fn a_response_head_reaches_the_client_while_the_backend_stalls_before_the_body() {
    let (backend, go) = stalling_backend(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Head: sent\r\n\r\n",
        b"later",
    ])
    .await;
    let proxy = proxy_for(backend).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, "\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&got).contains("X-Head: sent"));
    go.send(()).unwrap();
    read_until(&mut stream, &mut got, "\r\n\r\nlater").await;
}

#[tokio::test]
async fn server_sent_events_reach_the_client_one_by_one() {
    let (backend, go) = stalling_backend(vec![
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"d\r\ndata: first\n\n\r\n",
        b"e\r\ndata: second\n\n\r\n",
        b"0\r\n\r\n",
    ])
    .await;
    let proxy = proxy_for(backend).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, "\r\n\r\n").await;
    go.send(()).unwrap();
    read_until(&mut stream, &mut got, "data: first").await;
    assert!(!String::from_utf8_lossy(&got).contains("second"));
    go.send(()).unwrap();
    read_until(&mut stream, &mut got, "data: second").await;
    go.send(()).unwrap();
    read_until(&mut stream, &mut got, "0\r\n\r\n").await;
}

/// Read `count` complete `Content-Length` responses from `stream`; each as text.
async fn responses(stream: &mut TcpStream, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + GENEROUS;
    while out.len() < count {
        if let Some(len) = complete_response(&got) {
            out.push(String::from_utf8_lossy(&got[..len]).into_owned());
            got.drain(..len);
            continue;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => panic!(
                "{} of {count} answers, then nothing; after them: {:?}",
                out.len(),
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// The length of the first complete `Content-Length` response in `bytes`, if there is one.
fn complete_response(bytes: &[u8]) -> Option<usize> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))?
        .trim()
        .parse()
        .ok()?;
    (bytes.len() >= end + length).then_some(end + length)
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_in_order() {
    let backend = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&one_pool(&[&backend], "")).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // Three requests in one write, before any answer.
    stream
        .write_all(
            b"GET /header/X-Order/first HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /header/X-Order/second HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /header/X-Order/third HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .await
        .unwrap();
    let answers = responses(&mut stream, 3).await;
    for (answer, order) in answers.iter().zip(["first", "second", "third"]) {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(has_header(answer, "x-order", order), "{answer}");
        assert!(answer.contains("Connection: keep-alive"), "{answer}");
    }
    // The connection is still usable afterwards.
    stream
        .write_all(b"GET /header/X-Order/fourth HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let more = responses(&mut stream, 1).await;
    assert!(has_header(&more[0], "x-order", "fourth"), "{}", more[0]);
}

#[tokio::test]
async fn a_request_pipelined_while_the_first_answer_is_on_its_way_is_answered_after_it() {
    let backend = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&one_pool(&[&backend], "")).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /slow/700 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // The second request arrives while the backend is still preparing the first answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream
        .write_all(b"GET /header/X-Order/second HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let answers = responses(&mut stream, 2).await;
    assert!(answers[0].starts_with("HTTP/1.1 200"), "{}", answers[0]);
    assert!(!answers[0].contains("x-order"), "{}", answers[0]);
    assert!(
        has_header(&answers[1], "x-order", "second"),
        "{}",
        answers[1]
    );
}

/// Whether a raw response's head has `name: value` (name in any case).
fn has_header(response: &str, name: &str, value: &str) -> bool {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    head.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(n, v)| n.eq_ignore_ascii_case(name) && v.trim() == value)
    })
}

/// Whether a raw response head names the server (`Server:` in any case).
fn names_server(response: &str) -> bool {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .any(|l| l.to_ascii_lowercase().starts_with("server:"))
}

#[tokio::test]
async fn the_proxys_own_answers_carry_no_server_header() {
    // A pool whose only backend refuses connections, one with a silent backend behind a short
    // read timeout, a class with a sorry page, a route table with a default status, and a
    // listener that redirects to HTTPS.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let up = TestBackend::start("iis1").await;
    let mut away = TestBackend::start("iis2").await;
    let section = format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  classes:\n    pinned:\n      cookie: {{ secret: test-secret-0123456789abcdef }}\n      failure: {{ policy: sorry, status: 503, body: \"away\" }}\n  pools:\n    - name: down\n      backends: [{{ name: gone, addr: \"{refused}\" }}]\n    - name: silent\n      backends: [{{ name: mute, addr: \"{silent_addr}\" }}]\n      timeouts: {{ read_ms: 300 }}\n    - name: up\n      backends: [{}]\n    - name: away\n      backends: [{}]\n  routes:\n    - {{ match: {{ path_prefix: /down }}, pool: down }}\n    - {{ match: {{ path_prefix: /silent }}, pool: silent }}\n    - {{ match: {{ path_prefix: /pinned }}, pool: away, class: pinned }}\n    - {{ match: {{ path_prefix: /header }}, pool: up }}\n  default_route: {{ status: 404 }}\n",
        up.yaml(),
        away.yaml()
    );
    let proxy = Proxy::start(&section).await;
    let redirecting = Proxy::start(&format!(
        "sticky:\n  listeners:\n    - {{ addr: \"{{listen}}\", redirect_to_https: {{ port: 8443, status: 308 }} }}\n  pools:\n    - name: up\n      backends: [{}]\n",
        up.yaml()
    ))
    .await;
    let redirect = redirecting.addr;
    let pinned = get(&client(), &proxy.url("/pinned"), None).await;
    let cookie = format!("ARRAffinity={}", pinned.cookie("ARRAffinity").unwrap());
    away.stop().await;
    let sorry = format!("GET /pinned HTTP/1.1\r\nHost: t\r\nCookie: {cookie}\r\n\r\n");
    let cases: Vec<(SocketAddr, &[u8], u16)> = vec![
        (proxy.addr, b"GET /down HTTP/1.1\r\nHost: t\r\n\r\n", 503),
        (proxy.addr, b"GET /silent HTTP/1.1\r\nHost: t\r\n\r\n", 504),
        (proxy.addr, b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n", 404),
        (proxy.addr, sorry.as_bytes(), 503),
        (redirect, b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n", 308),
        // Pingora's own answers, before any hook of the proxy: a malformed head, CONNECT.
        (
            proxy.addr,
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rX-B: 1\r\n\r\n",
            400,
        ),
        (
            proxy.addr,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            405,
        ),
    ];
    for (addr, request, status) in cases {
        let response = raw_request(addr, request).await;
        assert_eq!(raw_status(&response), status, "{response}");
        assert!(!names_server(&response), "{response}");
    }
    // A backend's own Server header is its business: passed on.
    let response = raw_request(
        proxy.addr,
        b"GET /header/Server/backend-httpd HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    assert!(
        has_header(&response, "server", "backend-httpd"),
        "{response}"
    );
}

#[tokio::test]
async fn a_connect_request_over_http2_gets_the_proxys_own_405_and_reaches_no_backend() {
    let backend = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&format!(
        "sticky:\n  listeners:\n    - {{ addr: \"{{listen}}\", h2c: true }}\n  pools:\n    - name: web\n      backends: [{}]\n",
        backend.yaml()
    ))
    .await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("example.com:443")
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(GENEROUS, response)
        .await
        .expect("an answer in time")
        .expect("an answer, not a reset");
    assert_eq!(response.status(), 405);
    assert!(
        !response.headers().contains_key(http::header::SERVER),
        "{:?}",
        response.headers()
    );
    assert_eq!(backend.hits(), 0, "no tunnel, no backend");
}
