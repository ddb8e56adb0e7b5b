//! The affinity engine embedded in a user's own Pingora proxy (`examples/embed_in_pingora.rs`,
//! its own routing: `/api/…` to pool `api`, the rest to `web`), run as a real process against
//! demo backends: the behaviours the stock binary's cookie tests check — a cookie for a new
//! session, returning requests pinned, the cookie hidden from the backend, the backend's
//! opt-out honoured — and failover through `fail_to_connect`, the failure policy through
//! `fail_to_proxy`.

mod common;
use common::*;

const SECRET: &str = "test-secret-0123456789abcdef";

/// Pools `web` (cookie affinity) and `api` (its own cookie, the `sorry` failure policy).
fn section(web: &[&TestBackend], api: &TestBackend) -> String {
    let list: Vec<String> = web.iter().map(|b| b.yaml()).collect();
    format!(
        "sticky:\n  hide_headers: [X-ServerName, X-Powered-By]\n  pools:\n    - name: web\n      backends: [{}]\n      affinity:\n        cookie: {{ secret: {SECRET} }}\n    - name: api\n      backends: [{}]\n      affinity:\n        cookie: {{ name: ApiAffinity, secret: {SECRET} }}\n        failure: {{ policy: sorry, status: 503, body: \"api is resting\" }}\n",
        list.join(", "),
        api.yaml()
    )
}

async fn start(section: &str) -> Proxy {
    let binary = example_binary("embed_in_pingora");
    let env = [("EMBED_LISTEN", "{listen}")];
    Proxy::start_bin_with_env(&binary, section, Port::new(), &env).await
}

#[tokio::test]
async fn a_new_session_gets_a_cookie_and_returning_requests_stay_on_its_backend() {
    let [b1, b2, api] = TestBackend::start_each(["iis1", "iis2", "api1"]).await;
    let proxy = start(&section(&[&b1, &b2], &api)).await;
    let client = client();

    let first = get(&client, &proxy.url("/"), None).await;
    assert_eq!(first.status, 200);
    let value = first
        .cookie("ARRAffinity")
        .expect("a new session gets the cookie");
    let line = &first.set_cookies()[0];
    assert!(
        line.contains("HttpOnly") && line.contains("Path=/"),
        "{line}"
    );
    assert!(
        first
            .header("cache-control")
            .unwrap_or_default()
            .contains("private"),
        "{:?}",
        first.headers
    );
    let home = first.backend().to_string();
    for _ in 0..10 {
        let cookie = format!("ARRAffinity={value}; theme=dark");
        let again = get(&client, &proxy.url("/cart"), Some(&cookie)).await;
        assert_eq!(again.backend(), home, "pinned to the cookie's backend");
        assert!(
            again.set_cookies().is_empty(),
            "no new cookie for a kept session"
        );
        assert_eq!(
            again.header("x-echo-cookie").as_deref(),
            Some("theme=dark"),
            "the backend never sees the proxy's cookie (indirect)"
        );
    }
    // A forged cookie is a new session, with a fresh cookie.
    let forged = get(&client, &proxy.url("/"), Some("ARRAffinity=deadbeef")).await;
    assert_eq!(forged.status, 200);
    assert!(forged.cookie("ARRAffinity").is_some());
    // The program's own routing, with the api pool's own cookie.
    let api_reply = get(&client, &proxy.url("/api/orders"), None).await;
    assert_eq!(api_reply.backend(), "api1");
    assert!(api_reply.cookie("ApiAffinity").is_some());
    // The program's log line reads the decision.
    let logged = eventually(std::time::Duration::from_secs(5), || {
        let log = proxy.log();
        async move { log.contains("/cart pool=web outcome=sticky backend=") }
    })
    .await;
    assert!(logged, "{}", proxy.log());
}

#[tokio::test]
async fn the_backends_opt_out_header_is_honoured_and_removed() {
    let [b1, api] = TestBackend::start_each(["iis1", "api1"]).await;
    let proxy = start(&section(&[&b1], &api)).await;
    let client = client();
    let opted = get(&client, &proxy.url("/disable-affinity"), None).await;
    assert_eq!(opted.status, 200);
    assert!(opted.set_cookies().is_empty(), "{:?}", opted.headers);
    assert_eq!(opted.header("arr-disable-session-affinity"), None);
    // A client cannot send the opt-out header to the backend either.
    let smuggled = client
        .get(proxy.url("/"))
        .header("Arr-Disable-Session-Affinity", "true")
        .send()
        .await
        .unwrap();
    let smuggled = into_reply(smuggled).await;
    assert_eq!(smuggled.header("x-echo-opt-out"), None);
    assert!(smuggled.cookie("ARRAffinity").is_some());
}

#[tokio::test]
async fn a_session_whose_backend_is_down_moves_with_a_new_cookie_or_gets_the_failure_policy() {
    let [mut b1, b2, mut api] = TestBackend::start_each(["iis1", "iis2", "api1"]).await;
    let proxy = start(&section(&[&b1, &b2], &api)).await;
    let client = client();
    let pinned = cookie_for(&client, &proxy, "/", "iis1").await;
    b1.stop().await;
    let moved = get(
        &client,
        &proxy.url("/"),
        Some(&format!("ARRAffinity={pinned}")),
    )
    .await;
    assert_eq!(
        moved.backend(),
        "iis2",
        "the failed connect was retried elsewhere"
    );
    let new = moved
        .cookie("ARRAffinity")
        .expect("a new cookie for the new backend");
    assert_ne!(new, pinned);

    let api_cookie = get(&client, &proxy.url("/api/x"), None).await;
    let api_cookie = format!("ApiAffinity={}", api_cookie.cookie("ApiAffinity").unwrap());
    api.stop().await;
    let refused = get(&client, &proxy.url("/api/x"), Some(&api_cookie)).await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (503, "api is resting")
    );
}

/// The stock binary strips the client's hop itself (its peers skip Pingora's pass); an
/// embedding proxy's own `upstream_request_filter` does not, so the engine's peers keep
/// Pingora's standard policy: the client's hop-by-hop fields and those its `Connection` names
/// never reach the backend, and an `h2c` upgrade is not passed on.
#[tokio::test]
async fn the_clients_hop_by_hop_fields_never_reach_a_backend_through_an_embedding_proxy() {
    let web = common::raw_backend::RawBackend::start("iis1", |_| {
        common::raw_backend::response("200 OK", &[], "hello iis1\n")
    })
    .await;
    let api = TestBackend::start("api1").await;
    let section = format!(
        "sticky:\n  pools:\n    - name: web\n      backends: [{}]\n      affinity:\n        cookie: {{ secret: {SECRET} }}\n    - name: api\n      backends: [{}]\n",
        web.yaml(),
        api.yaml()
    );
    let proxy = start(&section).await;
    let raw = raw_request(
        proxy.addr,
        b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings, X-Secret\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nX-Secret: 1\r\n\
          Proxy-Authorization: Basic eA==\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
          X-Kept: yes\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&raw), 200, "{raw}");
    let head = web.heads().pop().expect("the request reached the backend");
    for gone in [
        "x-secret",
        "upgrade",
        "http2-settings",
        "proxy-authorization",
        "keep-alive",
        "te",
    ] {
        assert_eq!(
            common::raw_backend::header_in(&head, gone),
            None,
            "{gone} in {head}"
        );
    }
    assert_eq!(
        common::raw_backend::header_in(&head, "x-kept").as_deref(),
        Some("yes")
    );
}
