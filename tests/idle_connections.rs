//! Kept-alive client connections between requests. The proxy runs the HTTP/1 keep-alive loop
//! itself and, while a connection is idle, waits on its socket instead of inside Pingora's next
//! request (src/proxy/downstream/keepalive.rs): these tests hold many idle connections and check
//! that whatever a client sends after an idle period is answered — a pipelined pair in one
//! write, a body with the next request behind it, requests whose size the proxy cannot count —
//! and that idle connections still close after `keepalive_ms` and when the proxy shuts down.
//! Real sockets, generous deadlines, no timing in any assertion.

mod common;
use common::tls::{tls_connector, TestCert};
use common::*;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const GENEROUS: Duration = Duration::from_secs(15);

/// Long enough for a connection to go idle (its answer written, the proxy back to waiting).
const IDLE: Duration = Duration::from_millis(300);

/// Read `n` whole answers (`Content-Length` framed) from `stream`; panic with what came if they
/// do not within [`GENEROUS`].
async fn answers<S: AsyncRead + Unpin>(stream: &mut S, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + GENEROUS;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let (complete, _) = split_answers(&got);
        if complete.len() >= n {
            return complete;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!(
                "closed after {} of {n} answers: {:?}",
                complete.len(),
                String::from_utf8_lossy(&got)
            ),
            Err(_) => panic!(
                "{} of {n} answers in time: {:?}",
                complete.len(),
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(k)) => got.extend_from_slice(&buf[..k]),
        }
    }
}

/// The whole answers at the start of `bytes`, and how many bytes they take.
fn split_answers(bytes: &[u8]) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(end) = bytes[at..].windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[at..at + end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let total = end + 4 + length;
        if bytes.len() < at + total {
            break;
        }
        out.push(String::from_utf8_lossy(&bytes[at..at + total]).into_owned());
        at += total;
    }
    (out, at)
}

/// Whether an answer's head has `name: value` (name in any case).
fn has_header(answer: &str, name: &str, value: &str) -> bool {
    let head = answer.split("\r\n\r\n").next().unwrap_or("");
    head.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(n, v)| n.eq_ignore_ascii_case(name) && v.trim() == value)
    })
}

fn get(order: &str) -> String {
    format!("GET /header/X-Order/{order} HTTP/1.1\r\nHost: t\r\n\r\n")
}

/// Send `requests` in one write and check that the answers come back in order, each with its
/// `X-Order`.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    requests: &[(String, &str)],
) -> Vec<String> {
    let bytes: String = requests.iter().map(|(r, _)| r.as_str()).collect();
    stream.write_all(bytes.as_bytes()).await.unwrap();
    let got = answers(stream, requests.len()).await;
    for (answer, (_, order)) in got.iter().zip(requests) {
        assert!(answer.starts_with("HTTP/1.1 200"), "{order}: {answer}");
        assert!(has_header(answer, "x-order", order), "{order}: {answer}");
    }
    got
}

/// A pipelined pair in one write.
async fn pair<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, tag: &str) {
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    exchange(stream, &[(get(&a), &a), (get(&b), &b)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_idle_kept_alive_connections_each_answer_a_pipelined_pair_sent_after_they_idled(
) {
    let backend = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&one_pool(&[&backend], "")).await;
    let mut connections = Vec::new();
    for i in 0..200 {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let first = format!("first-{i}");
        exchange(&mut stream, &[(get(&first), &first)]).await;
        connections.push(stream);
    }
    tokio::time::sleep(IDLE).await;
    // Every connection idled; a pair in one write on each, then (idle again) one request, then
    // (idle again) a pair: every request answered, in order.
    for (i, stream) in connections.iter_mut().enumerate() {
        pair(stream, &format!("pair-{i}")).await;
    }
    tokio::time::sleep(IDLE).await;
    for (i, stream) in connections.iter_mut().enumerate() {
        let single = format!("single-{i}");
        exchange(stream, &[(get(&single), &single)]).await;
    }
    tokio::time::sleep(IDLE).await;
    for (i, stream) in connections.iter_mut().enumerate() {
        pair(stream, &format!("again-{i}")).await;
    }
}

#[tokio::test]
async fn a_request_with_a_body_and_the_next_request_in_one_segment_are_both_answered() {
    let backend = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&one_pool(&[&backend], "")).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    exchange(&mut stream, &[(get("first"), "first")]).await;
    tokio::time::sleep(IDLE).await;
    let post = "POST /header/X-Order/post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    let got = exchange(
        &mut stream,
        &[(post.to_string(), "post"), (get("behind"), "behind")],
    )
    .await;
    assert!(has_header(&got[0], "x-echo-body-length", "5"), "{}", got[0]);
    // A body alone, then a pair: the connection goes on after each idle period.
    tokio::time::sleep(IDLE).await;
    let got = exchange(&mut stream, &[(post.to_string(), "post")]).await;
    assert!(has_header(&got[0], "x-echo-body-length", "5"), "{}", got[0]);
    tokio::time::sleep(IDLE).await;
    pair(&mut stream, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_longer_than_the_first_read_after_an_idle_period_is_answered_with_the_request_behind_it(
) {
    // The wait between requests reads up to 4 KiB and keeps it for Pingora; a longer head
    // (here 12 KB of one header, a body, then the next request, all in one write) must reach
    // the backend whole, with the request behind it in order.
    let backend = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&one_pool(&[&backend], "")).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    exchange(&mut stream, &[(get("first"), "first")]).await;
    for round in 0..3 {
        tokio::time::sleep(IDLE).await;
        let padding = "p".repeat(12_000 + round * 1_000);
        let post = format!(
            "POST /header/X-Order/long HTTP/1.1\r\nHost: t\r\nX-Padding: {padding}\r\nContent-Length: 5\r\n\r\nhello"
        );
        let got = exchange(&mut stream, &[(post, "long"), (get("behind"), "behind")]).await;
        assert!(has_header(&got[0], "x-echo-body-length", "5"), "{}", got[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_idle_connections_answer_a_pipelined_pair_and_a_body_with_a_request_behind_it() {
    let backend = TestBackend::start("iis1").await;
    let port = Port::new();
    let listen = port.to_string();
    let mut cert = None;
    let proxy = Proxy::start_full(
        |dir| {
            let made = TestCert::generate(dir, "app", &["app.test"]);
            let yaml = format!(
                "{keys}sticky:\n  listeners:\n    - addr: \"{listen}\"\n      tls:\n        certificates: [{cert}]\n  pools:\n    - name: web\n      backends: [{backend}]\n",
                keys = pingora_keys(dir),
                cert = made.yaml(),
                backend = backend.yaml(),
            );
            cert = Some(made);
            yaml
        },
        vec![port],
    )
    .await;
    let connector = tls_connector(&cert.unwrap());
    let post = "POST /header/X-Order/post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    let mut connections = Vec::new();
    for i in 0..20 {
        let tcp = TcpStream::connect(proxy.addr).await.unwrap();
        let name = pingora_rustls::ServerName::try_from("app.test".to_string()).unwrap();
        let mut stream = connector.connect(name, tcp).await.unwrap();
        let first = format!("first-{i}");
        exchange(&mut stream, &[(get(&first), &first)]).await;
        connections.push(stream);
    }
    tokio::time::sleep(IDLE).await;
    for (i, stream) in connections.iter_mut().enumerate() {
        pair(stream, &format!("pair-{i}")).await;
    }
    tokio::time::sleep(IDLE).await;
    for stream in &mut connections {
        exchange(
            stream,
            &[(post.to_string(), "post"), (get("behind"), "behind")],
        )
        .await;
    }
    tokio::time::sleep(IDLE).await;
    for (i, stream) in connections.iter_mut().enumerate() {
        pair(stream, &format!("again-{i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_h2c_listener_http1_connections_answer_a_pair_after_idling_and_http2_clients_are_served(
) {
    let backend = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n      h2c: true\n  pools:\n    - name: web\n      backends: [{}]\n",
        backend.yaml()
    ))
    .await;
    let post = "POST /header/X-Order/post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    let mut connections = Vec::new();
    for i in 0..20 {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let first = format!("first-{i}");
        exchange(&mut stream, &[(get(&first), &first)]).await;
        connections.push(stream);
    }
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .timeout(GENEROUS)
        .build()
        .unwrap();
    for round in 0..3 {
        tokio::time::sleep(IDLE).await;
        for (i, stream) in connections.iter_mut().enumerate() {
            if round == 1 {
                exchange(
                    stream,
                    &[(post.to_string(), "post"), (get("behind"), "behind")],
                )
                .await;
            } else {
                pair(stream, &format!("pair-{round}-{i}")).await;
            }
        }
        let response = h2c
            .get(proxy.url("/header/X-Order/h2"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.headers()["x-order"], "h2");
    }
}

#[tokio::test]
async fn after_a_chunked_body_or_an_escaped_target_a_pair_sent_after_an_idle_period_is_answered() {
    let backend = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&one_pool(&[&backend], "")).await;
    let chunked = "POST /header/X-Order/chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    // A target Pingora percent-encodes (a space), one the client encoded itself, and one with
    // codes Pingora never writes.
    let targets = [
        (
            "GET /header/X-Order/raw?q=a b HTTP/1.1\r\nHost: t\r\n\r\n",
            "raw",
        ),
        (
            "GET /header/X-Order/space?q=a%20b HTTP/1.1\r\nHost: t\r\n\r\n",
            "space",
        ),
        (
            "GET /header/X-Order/plain?q=%2F%3D HTTP/1.1\r\nHost: t\r\n\r\n",
            "plain",
        ),
    ];
    for (request, order) in [(chunked, "chunked")].into_iter().chain(targets) {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        // Alone, then with a request behind it in the same write.
        exchange(&mut stream, &[(request.to_string(), order)]).await;
        tokio::time::sleep(IDLE).await;
        exchange(
            &mut stream,
            &[(request.to_string(), order), (get("behind"), "behind")],
        )
        .await;
        tokio::time::sleep(IDLE).await;
        pair(&mut stream, order).await;
    }
    // Pingora percent-encodes the 22 spaces of this target before it reports the head, which
    // then looks 44 bytes longer than what was read: exactly the length of the request sent
    // behind it. Were the reported head trusted, that request would look consumed, and the
    // proxy would wait on the socket while holding it.
    let spaces = " ".repeat(22);
    let escaped = format!("GET /header/X-Order/esc?q={spaces} HTTP/1.1\r\nHost: t\r\n\r\n");
    let behind = get("bb");
    assert_eq!(behind.len(), 2 * spaces.len());
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    exchange(&mut stream, &[(get("first"), "first")]).await;
    tokio::time::sleep(IDLE).await;
    exchange(&mut stream, &[(escaped, "esc"), (behind, "bb")]).await;
}

#[tokio::test]
async fn idle_connections_close_after_keepalive_ms_whatever_their_last_requests_were() {
    let backend = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n      timeouts: {{ keepalive_ms: 1000, http_request_ms: 60000 }}\n  pools:\n    - name: web\n      backends: [{}]\n",
        backend.yaml()
    ))
    .await;
    let post = "POST /header/X-Order/post HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi";
    let escaped = "GET /header/X-Order/escaped?q=a%20b HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut connections = Vec::new();
    for last in [
        vec![(get("single"), "single")],
        vec![(get("one"), "one"), (get("two"), "two")],
        vec![(post.to_string(), "post"), (get("behind"), "behind")],
        vec![(escaped.to_string(), "escaped")],
    ] {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        exchange(&mut stream, &last).await;
        connections.push(stream);
    }
    for (i, stream) in connections.iter_mut().enumerate() {
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(GENEROUS, stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "connection {i} closed without a word after the 1 s keep-alive timeout: {read:?}"
        );
    }
}

/// Whether process `pid` is still running.
fn running(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn idle_kept_alive_connections_are_closed_as_soon_as_the_proxy_shuts_down() {
    let backend = TestBackend::start("iis1").await;
    let port = Port::new();
    let listen = port.to_string();
    let section = one_pool(&[&backend], "").replace("{listen}", &listen);
    // A 30 s grace period: the process outlives the connections it closes.
    let mut proxy = Proxy::start_full(
        |dir| {
            let keys =
                pingora_keys(dir).replace("grace_period_seconds: 0", "grace_period_seconds: 30");
            format!("{keys}{section}")
        },
        vec![port],
    )
    .await;
    let escaped = "GET /header/X-Order/escaped?q=a%20b HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut connections = Vec::new();
    for last in [
        vec![(get("single"), "single")],
        vec![(get("one"), "one"), (get("two"), "two")],
        vec![(escaped.to_string(), "escaped")],
    ] {
        for _ in 0..5 {
            let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
            exchange(&mut stream, &last).await;
            connections.push(stream);
        }
    }
    tokio::time::sleep(IDLE).await;
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    for (i, stream) in connections.iter_mut().enumerate() {
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(GENEROUS, stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "connection {i} closed at shutdown: {read:?}\n{}",
            proxy.log()
        );
    }
    assert!(
        running(proxy.pid()),
        "closed by the shutdown, not by the process's exit:\n{}",
        proxy.log()
    );
    proxy.stop();
}
