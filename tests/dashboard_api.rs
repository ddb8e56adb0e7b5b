//! The dashboard's plain-HTTP side: its files' headers (a `default-src 'self'` policy,
//! `no-store`), `/api/status`, the token check `/api/auth`, the request rates in `/api/pools`,
//! and 404 / 405 around the new paths.

mod common;
use common::admin::*;
use common::*;
use serde_json::Value;
use std::time::Duration;

/// How long the rates may take to appear (the sampler runs every 2 s; a hang guard).
const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_page_its_script_and_its_style_are_served_with_a_self_only_policy_and_no_store() {
    let (_backends, proxy, _token) = start_with_admin().await;
    let client = client();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard-pools.js", "text/javascript; charset=utf-8"),
        ("/dashboard.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let reply = get(&client, &proxy.admin_url(path), None).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type").as_deref(), Some(content_type));
        assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(csp.starts_with("default-src 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe") && !csp.contains('*'), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(
            reply.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert!(!reply.body.is_empty());
    }
    let page = get(&client, &proxy.admin_url("/"), None).await.body;
    assert!(page.contains("src=\"/dashboard.js\"") && page.contains("href=\"/dashboard.css\""));
    // The API answers carry the same headers.
    let api = get(&client, &proxy.admin_url("/api/pools"), None).await;
    assert_eq!(api.header("cache-control").as_deref(), Some("no-store"));
    assert!(api.header("content-security-policy").is_some());
}

#[tokio::test]
async fn api_status_names_the_version_the_uptime_the_listeners_and_whether_actions_are_on() {
    let (_backends, proxy, _token) = start_with_admin().await;
    let reply = get(&client(), &proxy.admin_url("/api/status"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let status: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["uptime_seconds"].is_u64());
    assert!(status["started_unix_ms"].as_u64().unwrap() > 0);
    assert_eq!(status["ready"], true);
    assert_eq!(status["listeners"][0]["addr"], proxy.addr.to_string());
    assert_eq!(status["listeners"][0]["scheme"], "http");
    assert_eq!(status["listeners"][0]["pool"], "web");
    assert_eq!(status["admin"]["addr"], proxy.admin.to_string());
    assert_eq!(status["admin"]["mutations"], true);
    assert_eq!(status["rates"]["history_step_seconds"], 10);
    // Nothing secret: not the token, not its file.
    assert!(!reply.body.contains(ADMIN_TOKEN) && !reply.body.contains("token_file"));
}

#[tokio::test]
async fn api_pools_gives_each_backend_its_requests_per_second_and_a_history_of_rates() {
    let (_backends, proxy, _token) = start_with_admin().await;
    let client = client();
    for _ in 0..20 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    }
    // The rate reads the live counter against a snapshot: above zero at once; the history
    // needs a second snapshot (the sampler takes one every 2 s).
    let deadline = std::time::Instant::now() + PATIENCE;
    let last = loop {
        // Keep traffic flowing, so that the 10 s window is never empty however slow the poll.
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
        let view = pool_view(&proxy).await;
        let backends = view["backends"].as_array().unwrap();
        let served: Vec<&Value> = backends.iter().filter(|b| b["requests"] != 0).collect();
        let rated = !served.is_empty()
            && served.iter().all(|b| {
                let history = b["requests_per_second_history"].as_array().unwrap();
                b["requests_per_second"].as_f64().unwrap() > 0.0
                    && history.iter().any(|r| r.as_f64().unwrap() > 0.0)
            });
        if rated {
            break view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never rated: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for backend in last["backends"].as_array().unwrap() {
        let history = backend["requests_per_second_history"].as_array().unwrap();
        assert!(history.len() <= 30, "{backend}");
        assert!(history.iter().all(|r| r.as_f64().unwrap() >= 0.0));
        assert!(backend["requests_per_second"].as_f64().unwrap() >= 0.0);
    }
    // The disabled backend served nothing.
    let iis3 = last["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "iis3")
        .unwrap();
    assert_eq!(iis3["requests_per_second"], 0.0);
}

#[tokio::test]
async fn api_auth_answers_200_to_the_token_401_without_one_and_403_to_a_wrong_one() {
    let (_backends, proxy, _token) = start_with_admin().await;
    let client = client();
    let auth = |value: Option<String>| {
        let mut request = client.get(proxy.admin_url("/api/auth"));
        if let Some(value) = value {
            request = request.header("Authorization", value);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(auth(Some(format!("Bearer {ADMIN_TOKEN}"))).await, 200);
    assert_eq!(auth(Some(format!("bearer {ADMIN_TOKEN}"))).await, 200);
    assert_eq!(auth(None).await, 401);
    assert_eq!(auth(Some(format!("Bearer {ADMIN_TOKEN}x"))).await, 403);
    assert_eq!(auth(Some(format!("Basic {ADMIN_TOKEN}"))).await, 401);

    // With no token configured, there is nothing to check against.
    let b = TestBackend::start("iis1").await;
    let open =
        one_pool(&[&b], "").replace("sticky:\n", "sticky:\n  admin: { addr: \"{admin}\" }\n");
    let proxy = Proxy::start(&open).await;
    wait_for_admin(&proxy).await;
    let reply = client
        .get(proxy.admin_url("/api/auth"))
        .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
    let status = get(&client, &proxy.admin_url("/api/status"), None).await;
    assert!(
        status.body.contains("\"mutations\": false"),
        "{}",
        status.body
    );
}

#[tokio::test]
async fn the_new_paths_answer_another_method_with_405_and_their_neighbours_with_404() {
    let (_backends, proxy, _token) = start_with_admin().await;
    let client = client();
    let call = |method: reqwest::Method, path: &str| {
        let request = client
            .request(method, proxy.admin_url(path))
            .header("Authorization", format!("Bearer {ADMIN_TOKEN}"));
        async move { into_reply(request.send().await.unwrap()).await }
    };
    for path in [
        "/",
        "/dashboard.js",
        "/dashboard.css",
        "/api/status",
        "/api/auth",
    ] {
        for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
            let reply = call(method.clone(), path).await;
            assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
            assert_eq!(reply.header("allow").as_deref(), Some("GET"), "{path}");
        }
    }
    for path in [
        "/dashboard.html",
        "/index.html",
        "/dashboard.js/x",
        "/api/status/x",
        "/api/auth/x",
        "/favicon.ico",
        "/assets/dashboard.js",
    ] {
        let reply = call(reqwest::Method::GET, path).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
    }
    // Nothing changed on the way.
    assert_eq!(state_of(&proxy, "iis1").await, "active");
}
