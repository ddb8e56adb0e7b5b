//! WebSocket openings never fail: a client that writes its first frame right after the `101`
//! (as SDK clients do) gets its echo every time, over plain and TLS listeners, to plain and TLS
//! backends — also when the end of the upgrade request reaches Pingora's relay after the `101`,
//! the order in which Pingora 0.9.1 alone closes the tunnel (cloudflare/pingora#946). Upgrades
//! the backend refuses or fails get its answer or the proxy's own, and nobody else notices.

mod common;
use common::tls::{tls_connect_with, tls_connector, TestCert, TlsBackend};
use common::ws::{handshake, open_echo_close};
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "ws-admin-token-0123456789abcdef";

/// A running proxy with a plain listener, a TLS listener (certificate for `app.test`) and an
/// admin listener ([`TOKEN`]).
struct Edge {
    proxy: Proxy,
    tls_addr: SocketAddr,
    cert: TestCert,
}

/// Start the proxy: pool `web` over `web` (keyed cookie), the pools in `extra_pools` (YAML list
/// items, 4 spaces in) reached by `routes` (YAML list items, 4 spaces in; anything else goes to
/// `web`), with `env` in the proxy's environment.
async fn edge(web: &[&TestBackend], extra_pools: &str, routes: &str, env: &[(&str, &str)]) -> Edge {
    let (listen_port, tls_port, admin_port) = (Port::new(), Port::new(), Port::new());
    let (listen, tls_addr, admin) = (listen_port.addr(), tls_port.addr(), admin_port.addr());
    let list: Vec<String> = web.iter().map(|b| b.yaml()).collect();
    let mut cert = None;
    let mut proxy = Proxy::start_full_with_env(
        |dir| {
            let made = TestCert::generate(dir, "app", &["app.test"]);
            let token_file = dir.join("token");
            std::fs::write(&token_file, TOKEN).unwrap();
            let yaml = format!(
                "{keys}sticky:\n  listeners:\n    - addr: \"{listen}\"\n    - addr: \"{tls_addr}\"\n      tls:\n        certificates: [{cert}]\n  admin: {{ addr: \"{admin}\", token_file: \"{token}\" }}\n  routes:\n{routes}  default_route: {{ pool: web }}\n  pools:\n    - name: web\n      backends: [{list}]\n      affinity:\n        cookie: {{ secret: test-secret-0123456789abcdef }}\n{extra_pools}",
                keys = pingora_keys(dir),
                cert = made.yaml(),
                token = token_file.display(),
                list = list.join(", "),
            );
            cert = Some(made);
            yaml
        },
        vec![listen_port, tls_port, admin_port],
        env,
    )
    .await;
    proxy.admin = admin;
    Edge {
        proxy,
        tls_addr,
        cert: cert.unwrap(),
    }
}

/// `count` openings one after another on fresh plain connections to `addr`; the failures.
async fn open_plain(addr: SocketAddr, path: &str, count: usize) -> Vec<String> {
    let mut failures = Vec::new();
    for i in 0..count {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let text = format!("message {i}");
        if let Err(e) = open_echo_close(&mut stream, "app.test", path, "", &text).await {
            failures.push(format!("opening {i}: {e}"));
        }
    }
    failures
}

fn assert_none_failed(failures: &[String], count: usize) {
    assert!(
        failures.is_empty(),
        "{} of {count} openings failed; the first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[tokio::test]
async fn two_thousand_websockets_opened_one_after_another_over_a_plain_listener_all_echo_the_first_frame(
) {
    let backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let edge = edge(&refs, "", "", &[]).await;
    let failures = open_plain(edge.proxy.addr, "/ws/chat", 2000).await;
    assert_none_failed(&failures, 2000);
}

#[tokio::test]
async fn two_thousand_websockets_opened_one_after_another_over_a_tls_listener_all_echo_the_first_frame(
) {
    let backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let edge = edge(&refs, "", "", &[]).await;
    let connector = tls_connector(&edge.cert);
    let mut failures = Vec::new();
    for i in 0..2000 {
        let mut tls = tls_connect_with(&connector, edge.tls_addr, "app.test").await;
        let text = format!("message {i}");
        if let Err(e) = open_echo_close(&mut tls, "app.test", "/ws/chat", "", &text).await {
            failures.push(format!("opening {i}: {e}"));
        }
    }
    assert_none_failed(&failures, 2000);
}

/// A pool `secure` of one HTTPS demo backend (`secure1`), reached by paths under `/wss`.
fn secure_pool(backend: &TlsBackend, ca: &TestCert) -> (String, String) {
    (
        format!(
            "    - name: secure\n      backends: [{{ name: secure1, addr: \"{}\" }}]\n      tls: {{ sni: backend.test, ca_file: \"{}\" }}\n",
            backend.addr,
            ca.cert_file.display()
        ),
        "    - { match: { path_prefix: /wss }, pool: secure }\n".to_string(),
    )
}

#[tokio::test]
async fn openings_survive_when_the_end_of_the_upgrade_request_reaches_the_relay_after_the_101() {
    // The test-only delay holds the end of every upgrade request back until the backend's 101
    // has long been read: without the gate, every one of these openings is cut after its 101.
    let dir = tempfile::tempdir().unwrap();
    let backend_cert = TestCert::generate(dir.path(), "backend", &["backend.test"]);
    let secure = TlsBackend::start("secure1", &backend_cert).await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let (pool, route) = secure_pool(&secure, &backend_cert);
    let delay = [("STICKY_PROXY_TEST_UPGRADE_BODY_DELAY_MS", "20")];
    let edge = edge(&[&b1, &b2], &pool, &route, &delay).await;
    let to_plain_backends = open_plain(edge.proxy.addr, "/ws", 20).await;
    assert_none_failed(&to_plain_backends, 20);
    let to_tls_backend = open_plain(edge.proxy.addr, "/wss", 20).await;
    assert_none_failed(&to_tls_backend, 20);
    let connector = tls_connector(&edge.cert);
    for i in 0..10 {
        let mut tls = tls_connect_with(&connector, edge.tls_addr, "app.test").await;
        let opened = open_echo_close(&mut tls, "app.test", "/ws", "", "over tls").await;
        assert!(
            opened.is_ok(),
            "tls opening {i}: {opened:?}",
            opened = opened.err()
        );
    }
}

#[tokio::test]
async fn a_websocket_to_a_tls_backend_exchanges_messages_and_the_admin_api_can_close_it() {
    let dir = tempfile::tempdir().unwrap();
    let backend_cert = TestCert::generate(dir.path(), "backend", &["backend.test"]);
    let secure = TlsBackend::start("secure1", &backend_cert).await;
    let b1 = TestBackend::start("iis1").await;
    let (pool, route) = secure_pool(&secure, &backend_cert);
    let edge = edge(&[&b1], &pool, &route, &[]).await;
    let url = format!("ws://{}/wss/feed", edge.proxy.addr);
    let (mut ws, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    for i in 0..3 {
        ws.send(Message::Text(format!("m{i}"))).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        assert!(
            matches!(reply, Ok(Some(Ok(Message::Text(ref t)))) if *t == format!("secure1: m{i}")),
            "{reply:?}"
        );
    }
    let client = client();
    let closed = client
        .post(
            edge.proxy
                .admin_url("/api/pools/secure/backends/secure1/close-upgraded"),
        )
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&closed.text().await.unwrap()).unwrap();
    assert_eq!(body["closed"], 1, "{body}");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the WebSocket ended");
}

#[tokio::test]
async fn a_websocket_whose_backend_is_down_opens_on_another_backend_with_a_new_cookie() {
    let (mut b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let edge = edge(&[&b1, &b2], "", "", &[]).await;
    let on1 = cookie_for(&client(), &edge.proxy, "/", "iis1").await;
    b1.stop().await;
    for i in 0..5 {
        let mut stream = tokio::net::TcpStream::connect(edge.proxy.addr)
            .await
            .unwrap();
        let cookie = format!("Cookie: ARRAffinity={on1}\r\n");
        let head = open_echo_close(&mut stream, "app.test", "/ws", &cookie, "moved")
            .await
            .unwrap_or_else(|e| panic!("opening {i}: {e}"));
        assert_eq!(head.header("x-servername"), Some("iis2"));
        let set_cookie = head.header("set-cookie").unwrap_or_default();
        assert!(set_cookie.starts_with("ARRAffinity="), "{}", head.text);
    }
}

#[tokio::test]
async fn the_demo_backend_answers_a_close_frame_with_its_own_directly_and_through_the_proxy() {
    let b1 = TestBackend::start("iis1").await;
    let edge = edge(&[&b1], "", "", &[]).await;
    for addr in [b1.addr, edge.proxy.addr] {
        let url = format!("ws://{addr}/ws");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        };
        ws.close(Some(frame)).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        match reply {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(frame.code, CloseCode::Away, "{addr}")
            }
            other => panic!("{addr}: expected the backend's Close, got {other:?}"),
        }
    }
}

/// How a [`RawBackend`] treats every connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Read the request head, write this, keep the connection until the proxy closes it.
    Answer(&'static str),
    /// Close the connection as soon as it is accepted.
    CloseAtOnce,
    /// Read the request and never answer.
    Silent,
}

/// A backend written by hand, counting the connections the proxy closed.
struct RawBackend {
    addr: SocketAddr,
    closed_by_proxy: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawBackend {
    async fn start(behaviour: Behaviour) -> RawBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let closed_by_proxy = Arc::new(AtomicUsize::new(0));
        let closed = closed_by_proxy.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let closed = closed.clone();
                tokio::spawn(async move {
                    let answer = match behaviour {
                        Behaviour::CloseAtOnce => return,
                        Behaviour::Answer(answer) => Some(answer),
                        Behaviour::Silent => None,
                    };
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    if let Some(answer) = answer {
                        let _ = stream.write_all(answer.as_bytes()).await;
                    }
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    closed.fetch_add(1, Relaxed);
                });
            }
        });
        RawBackend {
            addr,
            closed_by_proxy,
            task,
        }
    }
}

#[tokio::test]
async fn an_upgrade_the_backend_refuses_or_fails_gets_its_answer_or_the_proxys_and_others_are_unaffected(
) {
    let cases = [
        (
            "/r200",
            Behaviour::Answer("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nno\n"),
            200,
        ),
        (
            "/r400",
            Behaviour::Answer("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
            400,
        ),
        (
            "/r502",
            Behaviour::Answer("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"),
            502,
        ),
        ("/closes", Behaviour::CloseAtOnce, 502),
        ("/silent", Behaviour::Silent, 504),
    ];
    let mut raw = Vec::new();
    let (mut pools, mut routes) = (String::new(), String::new());
    for (i, (prefix, behaviour, _)) in cases.iter().enumerate() {
        let backend = RawBackend::start(*behaviour).await;
        // Within the pool's timeouts: the silent backend's answer is awaited for 500 ms.
        pools.push_str(&format!(
            "    - name: raw{i}\n      backends: [{{ name: raw{i}, addr: \"{}\" }}]\n      timeouts: {{ connect_ms: 1000, read_ms: 500 }}\n",
            backend.addr
        ));
        routes.push_str(&format!(
            "    - {{ match: {{ path_prefix: {prefix} }}, pool: raw{i} }}\n"
        ));
        raw.push(backend);
    }
    let b1 = TestBackend::start("iis1").await;
    let edge = edge(&[&b1], &pools, &routes, &[]).await;
    for ((prefix, behaviour, want), backend) in cases.iter().zip(&raw) {
        // Meanwhile another client opens a WebSocket and makes a request.
        let addr = edge.proxy.addr;
        let other = tokio::spawn(async move {
            let failures = open_plain(addr, "/ws", 3).await;
            let reply = get(&client(), &format!("http://{addr}/"), None).await;
            (failures, reply.status)
        });
        let mut stream = tokio::net::TcpStream::connect(edge.proxy.addr)
            .await
            .unwrap();
        let head = handshake(&mut stream, "app.test", &format!("{prefix}/ws"), "")
            .await
            .unwrap_or_else(|e| panic!("{prefix}: {e}"));
        assert_eq!(head.status(), *want, "{prefix}: {}", head.text);
        let length: usize = head
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap());
        let mut rest = head.rest.clone();
        let mut buf = [0u8; 1024];
        while rest.len() < length {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("the body in time")
                .unwrap();
            assert!(n > 0, "{prefix}: the body was cut");
            rest.extend_from_slice(&buf[..n]);
        }
        let answer = format!("{}{}", head.text, String::from_utf8_lossy(&rest));
        assert!(
            !answer.contains(&backend.addr.to_string()),
            "{prefix}: {answer}"
        );
        let (failures, status) = other.await.unwrap();
        assert_none_failed(&failures, 3);
        assert_eq!(status, 200, "{prefix}: another client's request");
        if let Behaviour::Answer(_) = behaviour {
            // A refused upgrade's connection is not kept: nobody could ever use it again.
            let closed = eventually(Duration::from_secs(10), || async {
                backend.closed_by_proxy.load(Relaxed) == 1
            })
            .await;
            assert!(
                closed,
                "{prefix}: the proxy closed the refused upgrade's connection"
            );
        }
    }
}
