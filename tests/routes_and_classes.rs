//! Routes and persistence classes, failure policies, and the Rust extension point, end to end.

mod common;
use common::*;
use std::time::Duration;

fn backends_yaml(backends: &[&TestBackend]) -> String {
    let list: Vec<String> = backends.iter().map(|b| b.yaml()).collect();
    format!("[{}]", list.join(", "))
}

/// One pool `web` of `backends`, the given classes and routes (YAML bodies, indented 2).
fn routed(backends: &[&TestBackend], classes: &str, routes: &str) -> String {
    format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  hide_headers: [X-ServerName, X-Powered-By]\n  pools:\n    - name: web\n      backends: {}\n  classes:\n{classes}  routes:\n{routes}",
        backends_yaml(backends)
    )
}

const SERVLET_CLASS: &str =
    "    servlet:\n      cookie: { secret: test-secret-0123456789abcdef }\n";

#[tokio::test]
async fn servlet_requests_are_pinned_while_static_content_is_spread_in_the_same_session() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let routes = "    - { match: { path_prefix: /servlet }, pool: web, class: servlet }\n    - { match: { path_prefix: /static }, pool: web, class: none }\n";
    let proxy = Proxy::start(&routed(&[&b1, &b2], SERVLET_CLASS, routes)).await;
    let client = client();
    let first = get(&client, &proxy.url("/servlet/cart"), None).await;
    let cookie = format!("ARRAffinity={}", first.cookie("ARRAffinity").unwrap());
    let mut statics = std::collections::HashSet::new();
    for i in 0..6 {
        let servlet = get(
            &client,
            &proxy.url(&format!("/servlet/page{i}")),
            Some(&cookie),
        )
        .await;
        assert_eq!(servlet.backend(), first.backend(), "servlet is pinned");
        let asset = get(
            &client,
            &proxy.url(&format!("/static/img{i}.png")),
            Some(&cookie),
        )
        .await;
        assert!(
            asset.set_cookies().is_empty(),
            "static content gets no cookie"
        );
        assert_eq!(
            asset.header("x-echo-cookie"),
            None,
            "nor does its backend see the affinity cookie"
        );
        statics.insert(asset.backend().to_string());
    }
    assert_eq!(statics.len(), 2, "static content is balanced freely");
    // Routes match the path as the backend will read it: dot segments and escapes do not
    // smuggle a servlet request through the free static route.
    let sneaky = raw_request(
        proxy.addr,
        b"GET /static/../%73ervlet/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        sneaky.contains("Set-Cookie: ARRAffinity="),
        "matched the servlet route: {sneaky}"
    );
    // Anything else: the default 404 from the proxy.
    let other = get(&client, &proxy.url("/elsewhere"), None).await;
    assert_eq!(other.status, 404);
    assert_eq!(other.body, "404 Not Found\n");
}

#[tokio::test]
async fn two_hosts_on_one_listener_go_to_two_pools() {
    let (b1, b2, b3) = (
        TestBackend::start("shop1").await,
        TestBackend::start("api1").await,
        TestBackend::start("api2").await,
    );
    let section = format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  pools:\n    - name: shop\n      backends: {}\n    - name: api\n      backends: {}\n  routes:\n    - {{ match: {{ host: shop.example.com }}, pool: shop }}\n    - {{ match: {{ host: \"*.api.example.com\" }}, pool: api }}\n  default_route: {{ status: 421 }}\n",
        backends_yaml(&[&b1]),
        backends_yaml(&[&b2, &b3])
    );
    let proxy = Proxy::start(&section).await;
    let client = client();
    let host = |h: &str| {
        let (client, url, h) = (client.clone(), proxy.url("/"), h.to_string());
        async move { into_reply(client.get(url).header("Host", h).send().await.unwrap()).await }
    };
    for _ in 0..3 {
        assert_eq!(host("shop.example.com").await.backend(), "shop1");
        assert!(host("eu.api.example.com")
            .await
            .backend()
            .starts_with("api"));
        assert!(host("Us.API.example.com:443")
            .await
            .backend()
            .starts_with("api"));
    }
    assert_eq!(
        host("api.example.com").await.status,
        421,
        "the suffix needs a subdomain"
    );
    assert_eq!(host("other.example.com").await.status, 421);
}

#[tokio::test]
async fn routes_match_on_method_and_header_and_fall_back_to_a_default_pool() {
    let (b1, b2) = (
        TestBackend::start("writer").await,
        TestBackend::start("reader").await,
    );
    let section = format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  pools:\n    - name: writers\n      backends: {}\n    - name: readers\n      backends: {}\n  routes:\n    - {{ match: {{ methods: [POST, PUT] }}, pool: writers }}\n    - {{ match: {{ header: {{ name: X-Primary, value: \"1\" }} }}, pool: writers }}\n  default_route: {{ pool: readers }}\n",
        backends_yaml(&[&b1]),
        backends_yaml(&[&b2])
    );
    let proxy = Proxy::start(&section).await;
    let client = client();
    assert_eq!(
        into_reply(client.post(proxy.url("/x")).send().await.unwrap())
            .await
            .backend(),
        "writer"
    );
    assert_eq!(
        get(&client, &proxy.url("/x"), None).await.backend(),
        "reader"
    );
    let primary = client
        .get(proxy.url("/x"))
        .header("X-Primary", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(into_reply(primary).await.backend(), "writer");
    let not_primary = client
        .get(proxy.url("/x"))
        .header("X-Primary", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(into_reply(not_primary).await.backend(), "reader");
}

#[tokio::test]
async fn two_routes_with_the_same_class_and_pool_share_sessions() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let classes = "    j2ee:\n      learn: { presets: [j2ee] }\n";
    let routes = "    - { match: { path_prefix: /shop }, pool: web, class: j2ee }\n    - { match: { path_prefix: /login }, pool: web, class: j2ee }\n";
    let proxy = Proxy::start(&routed(&[&b1, &b2], classes, routes)).await;
    let client = client();
    let login = get(&client, &proxy.url("/login"), None).await;
    let id = login.cookie("JSESSIONID").unwrap();
    for i in 0..6 {
        let reply = get(
            &client,
            &proxy.url(&format!("/shop/{i}")),
            Some(&format!("JSESSIONID={id}")),
        )
        .await;
        assert_eq!(
            reply.backend(),
            login.backend(),
            "the id learned on /login pins /shop"
        );
    }
}

/// A pool with the servlet class whose failure policy is `failure` (flow YAML), plus a cookie
/// pinned to iis1; then iis1 is stopped.
async fn pinned_then_down(failure: &str) -> (TestBackend, TestBackend, Proxy, String) {
    let (mut b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let classes = format!("    servlet:\n      cookie: {{ secret: test-secret-0123456789abcdef }}\n      failure: {failure}\n");
    let routes = "    - { pool: web, class: servlet }\n";
    let proxy = Proxy::start(&routed(&[&b1, &b2], &classes, routes)).await;
    let cookie = cookie_for(&client(), &proxy, "/", "iis1").await;
    b1.stop().await;
    (b1, b2, proxy, format!("ARRAffinity={cookie}"))
}

#[tokio::test]
async fn failure_policy_rebalance_moves_the_session_with_a_new_cookie() {
    let (_b1, _b2, proxy, cookie) = pinned_then_down("{ policy: rebalance }").await;
    let reply = get(&client(), &proxy.url("/"), Some(&cookie)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.backend(), "iis2");
    assert!(reply.cookie("ARRAffinity").is_some());
}

#[tokio::test]
async fn failure_policy_sorry_answers_the_configured_status_type_and_body() {
    let (_b1, _b2, proxy, cookie) = pinned_then_down(
        "{ policy: sorry, status: 503, content_type: text/html, body: \"<h1>Sorry, your server is away</h1>\" }",
    )
    .await;
    let reply = get(&client(), &proxy.url("/"), Some(&cookie)).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("content-type").as_deref(), Some("text/html"));
    assert_eq!(reply.body, "<h1>Sorry, your server is away</h1>");
    assert!(reply.set_cookies().is_empty());
    // New sessions are unaffected.
    assert_eq!(
        get(&client(), &proxy.url("/"), None).await.backend(),
        "iis2"
    );
}

#[tokio::test]
async fn failure_policy_redirect_sends_the_client_to_the_configured_url() {
    let (_b1, _b2, proxy, cookie) =
        pinned_then_down("{ policy: redirect, location: \"https://status.example.com/away\" }")
            .await;
    let reply = get(&client(), &proxy.url("/"), Some(&cookie)).await;
    assert_eq!(reply.status, 302);
    assert_eq!(
        reply.header("location").as_deref(),
        Some("https://status.example.com/away")
    );
}

#[tokio::test]
async fn failure_policy_close_drops_the_connection_without_an_answer() {
    let (_b1, _b2, proxy, cookie) = pinned_then_down("{ policy: close }").await;
    let raw = raw_request(
        proxy.addr,
        format!("GET / HTTP/1.1\r\nHost: t\r\nCookie: {cookie}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(raw, "", "closed without a response");
    // The access log records the decision.
    let logged = eventually(Duration::from_secs(3), || async {
        proxy.log().contains("failure_policy=close")
    })
    .await;
    assert!(logged, "{}", proxy.log());
    assert_eq!(
        get(&client(), &proxy.url("/"), None).await.status,
        200,
        "others are served"
    );
}

#[tokio::test]
async fn failure_policy_strict_answers_503_and_keeps_the_session_for_when_it_returns() {
    let (mut b1, _b2, proxy, cookie) = pinned_then_down("{ policy: strict }").await;
    let reply = get(&client(), &proxy.url("/"), Some(&cookie)).await;
    assert_eq!(reply.status, 503);
    assert!(reply.set_cookies().is_empty(), "the session is kept");
    assert!(
        eventually(Duration::from_secs(3), || async {
            proxy.log().contains("failure_policy=strict")
        })
        .await
    );
    b1.restart().await;
    let back = get(&client(), &proxy.url("/"), Some(&cookie)).await;
    assert_eq!(
        back.backend(),
        "iis1",
        "the same cookie pins again once the backend is back"
    );
}

#[tokio::test]
async fn a_custom_rust_key_source_routes_by_a_header_derived_tenant() {
    let b: [TestBackend; 3] = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let classes = "    tenants:\n      hash: { sources: [{ type: custom, name: tenant }] }\n";
    let routes = "    - { pool: web, class: tenants }\n";
    let section = routed(&[&b[0], &b[1], &b[2]], classes, routes);
    let proxy = Proxy::start_bin(&example_binary("tenant_affinity"), &section, Port::new()).await;
    let client = client();
    let mut homes = std::collections::HashMap::new();
    let mut used = std::collections::HashSet::new();
    for t in 0..20 {
        for region in ["eu-west", "us-east", "ap-south"] {
            let reply = into_reply(
                client
                    .get(proxy.url("/"))
                    .header("X-Tenant", format!("tenant{t}.{region}"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            let home = homes
                .entry(t)
                .or_insert_with(|| reply.backend().to_string());
            assert_eq!(
                reply.backend(),
                home,
                "every region of tenant{t} lands on one backend"
            );
            used.insert(reply.backend().to_string());
        }
    }
    assert!(used.len() >= 2, "tenants spread: {used:?}");
    // The stock binary does not know the extension: the config is refused at start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sticky-proxy"))
        .args(["-t", "-c", proxy.config_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no key source registered as \"tenant\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_named_node_source_pins_to_the_named_backend_and_unknown_names_follow_the_failure_policy()
{
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let classes = "    named:\n      named_node: { source: x-backend }\n      failure: { policy: sorry, status: 404, body: \"no such server\" }\n";
    let routes = "    - { pool: web, class: named }\n";
    let section = routed(&[&b1, &b2], classes, routes);
    let proxy = Proxy::start_bin(&example_binary("tenant_affinity"), &section, Port::new()).await;
    let client = client();
    let named = |name: &str| {
        let (client, url, name) = (client.clone(), proxy.url("/"), name.to_string());
        async move {
            into_reply(
                client
                    .get(url)
                    .header("X-Backend", name)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    for _ in 0..4 {
        assert_eq!(named("iis2").await.backend(), "iis2");
        assert_eq!(named("iis1").await.backend(), "iis1");
    }
    let unknown = named("iis9").await;
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (404, "no such server")
    );
    // Without the header the request is balanced normally.
    assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
}

fn check(section: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\n{}",
            section.replace("{listen}", "127.0.0.1:6188")
        ),
    )
    .unwrap();
    run_binary(&["-t", "-c", path.to_str().unwrap()], &[])
}

#[tokio::test]
async fn unreachable_routes_are_accepted_with_a_warning_and_unknown_names_are_errors() {
    let b1 = TestBackend::start("iis1").await;
    let shadowed = "    - { match: { path_prefix: /app }, pool: web, class: servlet }\n    - { match: { path_prefix: /app/admin, methods: [GET] }, pool: web, class: none }\n";
    let (code, stdout, stderr) = check(&routed(&[&b1], SERVLET_CLASS, shadowed));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("warning: sticky.routes[1] is unreachable: sticky.routes[0] before it matches every request it matches"),
        "{stdout}"
    );
    let two_classes = format!(
        "{SERVLET_CLASS}    other:\n      cookie: {{ secret: other-secret-0123456789abcdef }}\n"
    );
    let colliding = "    - { match: { path_prefix: /a }, pool: web, class: servlet }\n    - { match: { path_prefix: /b }, pool: web, class: other }\n";
    let (code, stdout, stderr) = check(&routed(&[&b1], &two_classes, colliding));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout
            .contains("sticky.routes[1] and sticky.routes[0] both use the cookie \"ARRAffinity\""),
        "{stdout}"
    );
    let (code, _, stderr) = check(&routed(
        &[&b1],
        SERVLET_CLASS,
        "    - { pool: web, class: servlet2 }\n",
    ));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("sticky.routes[0].class: no class named \"servlet2\" in sticky.classes (route to pool \"web\")"),
        "{stderr}"
    );
    let (code, _, stderr) = check(&routed(
        &[&b1],
        SERVLET_CLASS,
        "    - { pool: api, class: servlet }\n",
    ));
    assert_ne!(code, 0);
    assert!(stderr.contains("sticky.routes[0].pool: no pool named \"api\" in sticky.pools (route class \"servlet\")"), "{stderr}");
    let bad_policy = SERVLET_CLASS.to_string() + "      failure: { policy: redirect }\n";
    let (code, _, stderr) = check(&routed(
        &[&b1],
        &bad_policy,
        "    - { pool: web, class: servlet }\n",
    ));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("sticky.classes.servlet.failure.location: required by policy \"redirect\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn ignore_case_routes_catch_the_path_in_any_case_as_iis_reads_it() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let routes = "    - { match: { path_prefix: /servlet, ignore_case: true }, pool: web, class: servlet }\n    - { match: { path_prefix: /static }, pool: web, class: none }\n";
    let proxy = Proxy::start(&routed(&[&b1, &b2], SERVLET_CLASS, routes)).await;
    let client = client();
    let first = get(&client, &proxy.url("/SERVLET/cart"), None).await;
    assert_eq!(first.status, 200);
    let value = first
        .cookie("ARRAffinity")
        .expect("the servlet class applies to /SERVLET");
    for path in ["/Servlet/a", "/servlet/b", "/SeRvLeT/c"] {
        let reply = get(
            &client,
            &proxy.url(path),
            Some(&format!("ARRAffinity={value}")),
        )
        .await;
        assert_eq!(reply.backend(), first.backend(), "{path}");
    }
    // The case-sensitive /static route does not take /STATIC: no route, 404 from the proxy.
    assert_eq!(
        get(&client, &proxy.url("/STATIC/x"), None).await.status,
        404
    );
}
