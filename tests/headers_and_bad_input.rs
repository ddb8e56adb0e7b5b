//! Internal and forwarding headers, the served-by annotation, and hostile or malformed requests:
//! each gets a normal proxied answer (a new session) or a clean 4xx, never a 5xx from the proxy
//! or a leak.

mod common;
use common::*;

async fn proxy_with_two() -> (TestBackend, TestBackend, Proxy) {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], KEYED_AFFINITY)).await;
    (b1, b2, proxy)
}

#[tokio::test]
async fn configured_internal_response_headers_never_reach_the_client() {
    let (_b1, _b2, proxy) = proxy_with_two().await;
    let reply = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-servername"), None);
    assert_eq!(reply.header("x-powered-by"), None);
}

#[tokio::test]
async fn client_sent_opt_out_and_forwarding_headers_are_replaced_before_the_backend() {
    let (_b1, _b2, proxy) = proxy_with_two().await;
    let reply = into_reply(
        client()
            .get(proxy.url("/"))
            .header("Arr-Disable-Session-Affinity", "true")
            .header("X-Forwarded-For", "6.6.6.6")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "evil.example")
            .header("Host", "shop.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.header("x-echo-opt-out"),
        None,
        "the client cannot smuggle the opt-out"
    );
    assert!(
        reply.cookie("ARRAffinity").is_some(),
        "so the session still gets its cookie"
    );
    assert_eq!(
        reply.header("x-echo-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        reply.header("x-echo-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        reply.header("x-echo-forwarded-host").as_deref(),
        Some("shop.example")
    );
}

#[tokio::test]
async fn malformed_cookie_headers_are_new_sessions_not_errors() {
    let (_b1, _b2, proxy) = proxy_with_two().await;
    let shapes: Vec<Vec<u8>> = vec![
        b";;;=;=;".to_vec(),
        b"ARRAffinity".to_vec(),
        b"ARRAffinity=".to_vec(),
        b"ARRAffinity=;ARRAffinity=".to_vec(),
        b"=ARRAffinity".to_vec(),
        b"   ".to_vec(),
        b"ARRAffinity=\"".to_vec(),
        b"ARRAffinity=\xc3\xa9\xff\xfe".to_vec(),
        [b"ARRAffinity=".to_vec(), vec![b'a'; 8192]].concat(),
        [
            b"x=".to_vec(),
            vec![0xe2, 0x98, 0x83],
            b"; ARRAffinity=zz".to_vec(),
        ]
        .concat(),
        (0..2000)
            .map(|i| format!("c{i}=v{i}"))
            .collect::<Vec<_>>()
            .join("; ")
            .into_bytes(),
    ];
    for shape in shapes {
        let request = [
            b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\nCookie: ".to_vec(),
            shape.clone(),
            b"\r\n\r\n".to_vec(),
        ]
        .concat();
        let response = raw_request(proxy.addr, &request).await;
        let shown = String::from_utf8_lossy(&shape[..shape.len().min(40)]).into_owned();
        assert_eq!(raw_status(&response), 200, "Cookie {shown:?} → {response}");
        assert!(response.contains("hello iis"), "{response}");
        assert!(
            response.contains("Set-Cookie: ARRAffinity="),
            "a new session: {response}"
        );
    }
}

#[tokio::test]
async fn duplicated_affinity_cookies_follow_the_first_valid_one() {
    let (_b1, _b2, proxy) = proxy_with_two().await;
    let client = client();
    let first = get(&client, &proxy.url("/"), None).await;
    let second = get(&client, &proxy.url("/"), None).await;
    assert_ne!(first.backend(), second.backend());
    let (a, b) = (
        first.cookie("ARRAffinity").unwrap(),
        second.cookie("ARRAffinity").unwrap(),
    );

    let reply = get(
        &client,
        &proxy.url("/"),
        Some(&format!(
            "ARRAffinity=bogus; ARRAffinity={b}; ARRAffinity={a}"
        )),
    )
    .await;
    assert_eq!(reply.backend(), second.backend());
    assert!(reply.set_cookies().is_empty());
    // Split over several Cookie headers, as HTTP/2 clients send them.
    let raw = raw_request(
        proxy.addr,
        format!("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nCookie: x=1\r\nCookie: ARRAffinity={a}\r\n\r\n").as_bytes(),
    ).await;
    assert!(raw.contains(&format!("hello {}", first.backend())), "{raw}");
    assert!(!raw.contains("Set-Cookie"), "{raw}");
}

#[tokio::test]
async fn an_oversized_header_block_is_refused_with_a_4xx_and_the_proxy_keeps_serving() {
    let (_b1, _b2, proxy) = proxy_with_two().await;
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nCookie: ARRAffinity={}\r\n\r\n",
        "a".repeat(2 * 1024 * 1024)
    );
    let response = raw_request(proxy.addr, huge.as_bytes()).await;
    let status = raw_status(&response);
    assert!(
        status == 0 || (400..500).contains(&status),
        "status {status}: {response:.200}"
    );
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 200);
}

#[tokio::test]
async fn error_pages_name_no_backend_or_address() {
    let mut b1 = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&one_pool(&[&b1], KEYED_AFFINITY)).await;
    b1.stop().await;
    let raw = raw_request(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&raw), 503, "{raw}");
    for leak in [
        "iis1",
        "127.0.0.1",
        &b1.addr.port().to_string(),
        "ConnectRefused",
        "refused",
    ] {
        assert!(!raw.contains(leak), "{leak} leaked: {raw}");
    }
}

#[tokio::test]
async fn a_request_target_that_is_no_path_is_refused_with_400_and_reaches_no_backend() {
    let (b1, b2, proxy) = proxy_with_two().await;
    // Pingora reads these with `uri` set to `/` and the raw bytes kept for the backend: routed
    // as `/`, they would reach whatever `/` serves.
    for target in ["admin/x", "%01="] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let response = raw_request(proxy.addr, request.as_bytes()).await;
        assert_eq!(raw_status(&response), 400, "{target}: {response}");
        assert!(!response.contains("Pingora"), "{response}");
    }
    assert_eq!(b1.hits() + b2.hits(), 0, "no backend saw them");
    // A path, `*` and an absolute URL are served.
    for target in ["/ok", "http://t/ok"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let response = raw_request(proxy.addr, request.as_bytes()).await;
        assert_eq!(raw_status(&response), 200, "{target}: {response}");
    }
}

#[tokio::test]
async fn a_hidden_header_written_with_underscores_is_stripped_in_either_spelling() {
    use common::raw_backend::{header_in, response, RawBackend};
    let backend = RawBackend::start("iis1", |_| response("200 OK", &[], "ok")).await;
    let section = format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  hide_headers: [X_Debug_User, X-Trace]\n  pools:\n    - name: web\n      backends: [{}]\n",
        backend.yaml()
    );
    let proxy = Proxy::start(&section).await;
    let request = b"GET / HTTP/1.1\r\nHost: t\r\nX-Debug-User: admin\r\nX_Debug_User: admin\r\nX_Trace: 1\r\nX-Other: kept\r\nConnection: close\r\n\r\n";
    let answer = raw_request(proxy.addr, request).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let head = backend.heads().pop().expect("the backend got the request");
    for stripped in ["x-debug-user", "x_debug_user", "x_trace", "x-trace"] {
        assert_eq!(header_in(&head, stripped), None, "{stripped} in {head}");
    }
    assert_eq!(
        header_in(&head, "x-other").as_deref(),
        Some("kept"),
        "{head}"
    );
}

#[tokio::test]
async fn served_by_header_names_the_backend_that_answered_and_never_its_address() {
    let (mut b1, mut b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let extra = format!("      served_by_header: X-Served-By\n{KEYED_AFFINITY}");
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], &extra)).await;
    let client = client();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let reply = get(&client, &proxy.url("/"), None).await;
        let served_by = reply.header("x-served-by").expect("X-Served-By");
        assert_eq!(served_by, reply.backend(), "the backend that answered");
        for addr in [b1.addr, b2.addr] {
            assert!(!served_by.contains(&addr.to_string()));
        }
        seen.push(served_by);
    }
    assert!(
        seen.contains(&"iis1".into()) && seen.contains(&"iis2".into()),
        "{seen:?}"
    );
    // A pinned session too; and the proxy's own answer (no backend served it) has none.
    let value = cookie_for(&client, &proxy, "/", "iis2").await;
    let pinned = get(
        &client,
        &proxy.url("/"),
        Some(&format!("ARRAffinity={value}")),
    )
    .await;
    assert_eq!(pinned.header("x-served-by").as_deref(), Some("iis2"));
    b1.stop().await;
    b2.stop().await;
    let refused = get(&client, &proxy.url("/"), None).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("x-served-by"), None);
}

#[tokio::test]
async fn served_by_header_replaces_the_backends_own_header_of_that_name_even_a_hidden_one() {
    // The demo backends send `X-ServerName: <name>` themselves; `hide_headers` lists it.
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let extra = format!("      served_by_header: X-ServerName\n{KEYED_AFFINITY}");
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], &extra)).await;
    let reply = get(&client(), &proxy.url("/"), None).await;
    let values: Vec<_> = reply.headers.get_all("x-servername").iter().collect();
    assert_eq!(values.len(), 1, "{values:?}");
    assert_eq!(values[0].to_str().unwrap(), reply.backend());
    // Without the key, nothing is added.
    let plain = Proxy::start(&one_pool(&[&b1, &b2], KEYED_AFFINITY)).await;
    let reply = get(&client(), &plain.url("/"), None).await;
    assert_eq!(reply.header("x-served-by"), None);
    assert_eq!(reply.header("x-servername"), None);
}
