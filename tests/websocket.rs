//! WebSocket through the proxy with affinity: the upgrade request is routed by the session's
//! cookie like any other request, messages flow both ways, long-polling stays on one backend,
//! and an operator can close the upgraded connections of a backend through the admin API.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const TOKEN: &str = "ws-admin-token-0123456789abcdef";

/// A proxy over `backends` with the keyed cookie and an admin listener with [`TOKEN`].
/// Does the proxy close `ws` (a close frame, an error or the end) within 10 s?
async fn closed_within_10_s<S>(ws: &mut S) -> bool
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
            }
        }
    });
    ended.await == Ok(true)
}

async fn proxy_with_admin(backends: &[&TestBackend]) -> Proxy {
    let list: Vec<String> = backends.iter().map(|b| b.yaml()).collect();
    let (listen, admin) = (Port::new(), Port::new());
    let (listen_addr, admin_addr) = (listen.addr(), admin.addr());
    let mut proxy = Proxy::start_full(
        |dir| {
            let token_file = dir.join("token");
            std::fs::write(&token_file, TOKEN).unwrap();
            format!(
                "{keys}sticky:\n  listeners:\n    - addr: \"{listen_addr}\"\n  admin: {{ addr: \"{admin_addr}\", token_file: \"{token}\" }}\n  pools:\n    - name: web\n      backends: [{list}]\n      affinity:\n        cookie: {{ secret: test-secret-0123456789abcdef }}\n",
                keys = pingora_keys(dir),
                token = token_file.display(),
                list = list.join(", "),
            )
        },
        vec![listen, admin],
    )
    .await;
    proxy.admin = admin_addr;
    proxy
}

/// Open a WebSocket to `path` through the proxy, with an optional `Cookie`, and check that it
/// carries a message both ways at once (one attempt: no opening may be cut); also returns the
/// handshake response's `Set-Cookie` lines.
async fn open(proxy: &Proxy, path: &str, cookie: Option<&str>) -> (Ws, Vec<String>) {
    let mut request = format!("ws://{}{}", proxy.addr, path)
        .into_client_request()
        .unwrap();
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("Cookie", cookie.parse().unwrap());
    }
    let (mut ws, response) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("handshake in time")
    .expect("handshake accepted");
    assert_eq!(response.status(), 101);
    let set_cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let handshake_backend = response
        .headers()
        .get("x-servername")
        .map(|v| v.to_str().unwrap().to_string())
        .expect("the backend that answered the upgrade");
    assert_eq!(
        echo(&mut ws, "probe").await,
        format!("{handshake_backend}: probe")
    );
    (ws, set_cookies)
}

/// Send `text`, return the backend's echo (`<name>: <text>`).
async fn echo(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::Text(text.to_string())).await.unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("echo in time")
            .expect("stream open")
            .expect("no error");
        if let Message::Text(reply) = message {
            return reply;
        }
    }
}

#[tokio::test]
async fn a_websocket_opened_with_the_session_cookie_reaches_the_same_backend_and_exchanges_messages(
) {
    let backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let proxy = proxy_with_admin(&refs).await;
    let client = client();
    for want in ["iis1", "iis2", "iis3"] {
        // An HTTP request starts the session ...
        let value = cookie_for(&client, &proxy, "/", want).await;
        // ... and the WebSocket, opened with its cookie, lands on the same backend every time.
        for round in 0..3 {
            let (mut ws, set_cookies) =
                open(&proxy, "/ws/chat", Some(&format!("ARRAffinity={value}"))).await;
            assert!(set_cookies.is_empty(), "{set_cookies:?}");
            for i in 0..5 {
                let text = format!("message {round}.{i}");
                assert_eq!(echo(&mut ws, &text).await, format!("{want}: {text}"));
            }
            ws.close(None).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_websocket_without_a_session_gets_the_cookie_in_its_handshake_and_later_requests_follow_it(
) {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = proxy_with_admin(&[&b1, &b2]).await;
    let (mut ws, set_cookies) = open(&proxy, "/ws", None).await;
    let value = set_cookies
        .iter()
        .find_map(|l| l.strip_prefix("ARRAffinity="))
        .and_then(|rest| rest.split(';').next())
        .expect("the 101 response carries the affinity cookie")
        .to_string();
    let reply = echo(&mut ws, "hi").await;
    let backend = reply.split(':').next().unwrap().to_string();
    let client = client();
    for _ in 0..6 {
        let reply = get(
            &client,
            &proxy.url("/"),
            Some(&format!("ARRAffinity={value}")),
        )
        .await;
        assert_eq!(reply.backend(), backend);
    }
}

#[tokio::test]
async fn a_session_pinned_long_polling_loop_stays_on_one_backend_over_50_polls() {
    let backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let proxy = proxy_with_admin(&refs).await;
    let client = client();
    // Socket.IO's fallback: a handshake, then polls that must all reach the same server.
    let first = get(
        &client,
        &proxy.url("/socket.io/?EIO=4&transport=polling"),
        None,
    )
    .await;
    let value = first.cookie("ARRAffinity").unwrap();
    let mut answered = std::collections::BTreeSet::new();
    for i in 0..50 {
        let path = if i % 2 == 0 {
            format!("/socket.io/?EIO=4&transport=polling&t={i}")
        } else {
            format!("/slow/5?transport=polling&t={i}")
        };
        let reply = get(
            &client,
            &proxy.url(&path),
            Some(&format!("io=sid{i}; ARRAffinity={value}")),
        )
        .await;
        assert_eq!(reply.status, 200);
        answered.insert(reply.backend().to_string());
    }
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert!(answered.contains(first.backend()));
    // Without the cookie the same polls are spread over all three.
    let mut spread = std::collections::BTreeSet::new();
    for i in 0..6 {
        let path = format!("/socket.io/?EIO=4&transport=polling&t={i}");
        spread.insert(
            get(&client, &proxy.url(&path), None)
                .await
                .backend()
                .to_string(),
        );
    }
    assert_eq!(spread.len(), 3, "{spread:?}");
}

#[tokio::test]
async fn closing_upgraded_connections_of_a_disabled_backend_ends_its_websockets_and_no_others() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = proxy_with_admin(&[&b1, &b2]).await;
    let client = client();
    let on1 = cookie_for(&client, &proxy, "/", "iis1").await;
    let on2 = cookie_for(&client, &proxy, "/", "iis2").await;
    let (mut ws1, _) = open(&proxy, "/ws", Some(&format!("ARRAffinity={on1}"))).await;
    let (mut ws1b, _) = open(&proxy, "/ws", Some(&format!("ARRAffinity={on1}"))).await;
    let (mut ws2, _) = open(&proxy, "/ws", Some(&format!("ARRAffinity={on2}"))).await;
    assert_eq!(echo(&mut ws1, "a").await, "iis1: a");
    assert_eq!(echo(&mut ws1b, "a").await, "iis1: a");
    assert_eq!(echo(&mut ws2, "a").await, "iis2: a");

    let pool = into_reply(
        client
            .get(proxy.admin_url("/api/pools/web"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let pool: serde_json::Value = serde_json::from_str(&pool.body).unwrap();
    assert_eq!(pool["backends"][0]["upgraded_connections"], 2, "{pool}");
    assert_eq!(pool["backends"][1]["upgraded_connections"], 1, "{pool}");

    // Without the token nothing is closed.
    let refused = client
        .post(proxy.admin_url("/api/pools/web/backends/iis1/close-upgraded"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(echo(&mut ws1, "still here").await, "iis1: still here");

    // Disable iis1 and close its upgraded connections in one call.
    let reply = client
        .post(proxy.admin_url("/api/pools/web/backends/iis1/state"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(r#"{"state": "disabled", "close_upgraded": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    for ws in [&mut ws1, &mut ws1b] {
        assert!(closed_within_10_s(ws).await, "iis1's WebSocket was closed");
    }
    // iis2's WebSocket is untouched, and a new WebSocket with iis1's cookie moves to iis2.
    assert_eq!(echo(&mut ws2, "b").await, "iis2: b");
    let (mut moved, set_cookies) = open(&proxy, "/ws", Some(&format!("ARRAffinity={on1}"))).await;
    assert_eq!(echo(&mut moved, "c").await, "iis2: c");
    assert!(set_cookies.iter().any(|l| l.starts_with("ARRAffinity=")));

    // The separate call reports how many it closed.
    let reply = client
        .post(proxy.admin_url("/api/pools/web/backends/iis2/close-upgraded"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
    assert_eq!(body["closed"], 2, "{body}");
}

#[tokio::test]
async fn removing_a_backend_with_close_upgraded_ends_its_websockets_and_no_others() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = proxy_with_admin(&[&b1, &b2]).await;
    let client = client();
    let on1 = cookie_for(&client, &proxy, "/", "iis1").await;
    let on2 = cookie_for(&client, &proxy, "/", "iis2").await;
    let (mut ws1, _) = open(&proxy, "/ws", Some(&format!("ARRAffinity={on1}"))).await;
    let (mut ws2, _) = open(&proxy, "/ws", Some(&format!("ARRAffinity={on2}"))).await;
    assert_eq!(echo(&mut ws1, "a").await, "iis1: a");
    assert_eq!(echo(&mut ws2, "a").await, "iis2: a");

    let reply = client
        .delete(proxy.admin_url("/api/pools/web/backends/iis1?close_upgraded=true"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
    assert_eq!(body["closed"], 1, "{body}");
    assert!(
        closed_within_10_s(&mut ws1).await,
        "the removed backend's WebSocket was closed"
    );
    assert_eq!(echo(&mut ws2, "b").await, "iis2: b");
    // Reopened with the old cookie: to the remaining backend, with a new cookie.
    let (mut moved, set_cookies) = open(&proxy, "/ws", Some(&format!("ARRAffinity={on1}"))).await;
    assert_eq!(echo(&mut moved, "c").await, "iis2: c");
    assert!(set_cookies.iter().any(|l| l.starts_with("ARRAffinity=")));
}

#[tokio::test]
async fn an_upgrade_the_backend_refuses_gets_the_backends_answer_and_others_are_unaffected() {
    let b1 = TestBackend::start("iis1").await;
    let proxy = proxy_with_admin(&[&b1]).await;
    // The demo backend answers an upgrade on a non-/ws path with a plain 200.
    let request = format!("ws://{}/no-websocket-here", proxy.addr)
        .into_client_request()
        .unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("answered in time");
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 200);
        }
        other => panic!("expected the backend's non-101 answer, got {other:?}"),
    }
    // The refused upgrade left nothing registered, and the proxy serves others.
    let pool: serde_json::Value = serde_json::from_str(
        &get(&client(), &proxy.admin_url("/api/pools/web"), None)
            .await
            .body,
    )
    .unwrap();
    assert_eq!(pool["backends"][0]["upgraded_connections"], 0, "{pool}");
    let (mut ws, _) = open(&proxy, "/ws", None).await;
    assert_eq!(echo(&mut ws, "ok").await, "iis1: ok");
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 200);
}
