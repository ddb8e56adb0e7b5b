//! The admin listener's dashboard (`GET /`), driven in a real headless Chromium over the
//! DevTools protocol: it shows the backends and their states, acts only with the admin token
//! (entered once, kept in the tab), shows a refused token as a message, and reconnects by itself
//! across a restart. Plus the plain-HTTP side: its headers (CSP, `no-store`), `/api/status`,
//! `/api/auth`, the request rates in `/api/pools`, and 404 / 405 around the new paths.

mod common;
use common::browser::Browser;
use common::*;
use serde_json::Value;
use std::time::Duration;

const TOKEN: &str = "admin-token-0123456789abcdef";
/// How long the page may take to show a change (it polls every 2 s; a hang guard).
const PAGE_PATIENCE: Duration = Duration::from_secs(30);

/// One pool of three backends (`iis3` disabled in the file) with the keyed cookie and a learned
/// `JSESSIONID` table whose Redis store is down (nothing listens on port 1), and an admin
/// listener whose token is in a file.
fn section(backends: &[TestBackend; 3], token_file: &std::path::Path) -> String {
    let [b1, b2, b3] = backends;
    format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  admin: {{ addr: \"{{admin}}\", token_file: \"{}\" }}\n  pools:\n    - name: web\n      backends: [{}, {}, {{ name: {}, addr: \"{}\", state: disabled }}]\n      affinity:\n        cookie: {{ secret: test-secret-0123456789abcdef }}\n        learn: {{ presets: [j2ee], store: {{ type: redis, address: \"127.0.0.1:1\" }} }}\n",
        token_file.display(),
        b1.yaml(),
        b2.yaml(),
        b3.name,
        b3.addr
    )
}

/// The demo's three backends and a proxy with the admin token; waits for the admin listener.
async fn start() -> ([TestBackend; 3], Proxy, tempfile::TempDir) {
    let backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let proxy = Proxy::start(&section(&backends, &token_file)).await;
    wait_for_admin(&proxy).await;
    (backends, proxy, token_dir)
}

async fn wait_for_admin(proxy: &Proxy) {
    let client = client();
    let up = eventually(Duration::from_secs(10), || async {
        client.get(proxy.admin_url("/healthz")).send().await.is_ok()
    })
    .await;
    assert!(up, "admin listener up:\n{}", proxy.log());
}

/// `/api/pools/web` as JSON.
async fn pool(proxy: &Proxy) -> Value {
    let reply = get(&client(), &proxy.admin_url("/api/pools/web"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

/// The state of `backend` in `/api/pools/web`.
async fn state_of(proxy: &Proxy, backend: &str) -> String {
    let pool = pool(proxy).await;
    let found = pool["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == backend)
        .unwrap_or_else(|| panic!("no {backend} in {pool}"));
    found["state"].as_str().unwrap().to_string()
}

/// A JavaScript expression: the `data-state` of `backend`'s row is `state`.
fn row_state_is(backend: &str, state: &str) -> String {
    format!(
        "(() => {{ const r = document.querySelector('tr[data-backend=\"{backend}\"]'); \
         return r !== null && r.dataset.state === '{state}'; }})()"
    )
}

/// Open the dashboard and wait until it shows `backends` rows.
async fn open_dashboard(browser: &mut Browser, proxy: &Proxy, backends: usize) {
    browser.goto(&proxy.admin_url("/")).await;
    let shown = browser
        .wait_for(
            &format!("document.querySelectorAll('tr[data-backend]').length === {backends}"),
            PAGE_PATIENCE,
        )
        .await;
    if !shown {
        let connection = browser.text("#connection").await;
        let message = browser.text("#message").await;
        panic!(
            "the dashboard never showed {backends} backends; connection {connection:?}, \
             message {message:?}, page errors: {:?}",
            browser.errors
        );
    }
}

/// Errors the page logged other than the refusals a test provoked on purpose (Chromium logs a
/// 401 / 403 answer to `fetch` as a network error).
fn unexpected_errors(browser: &Browser) -> Vec<&String> {
    browser
        .errors
        .iter()
        .filter(|e| !(e.starts_with("log (network)") && (e.contains("401") || e.contains("403"))))
        .collect()
}

#[tokio::test]
async fn the_dashboard_shows_every_backend_with_its_state_in_words_and_is_read_only_without_the_token(
) {
    let (_backends, proxy, _token) = start().await;
    let mut browser = Browser::launch().await;
    open_dashboard(&mut browser, &proxy, 3).await;
    for (backend, state) in [("iis1", "active"), ("iis2", "active"), ("iis3", "disabled")] {
        assert!(
            browser
                .wait_for(&row_state_is(backend, state), PAGE_PATIENCE)
                .await
        );
        let badge = format!("tr[data-backend=\"{backend}\"] .state");
        let text = browser.text(&badge).await.unwrap_or_default();
        assert!(text.contains(state), "{backend}: {text:?}");
    }
    let health = browser
        .text("tr[data-backend=\"iis1\"] .health")
        .await
        .unwrap_or_default();
    assert!(health.contains("healthy"), "{health:?}");
    let addr = browser
        .text("tr[data-backend=\"iis1\"] .addr")
        .await
        .unwrap_or_default();
    assert!(!addr.is_empty());
    let table = browser.text("[data-table=\"learn\"] .fill-text").await;
    assert!(
        table.as_deref().is_some_and(|t| t.contains("/ 100,000")),
        "{table:?}"
    );
    let store_down = browser
        .wait_for(
            "(() => { const s = document.querySelector('[data-store=\"learn\"]'); \
             return s !== null && s.dataset.up === 'false' && s.textContent.includes('down'); })()",
            PAGE_PATIENCE,
        )
        .await;
    assert!(store_down, "{:?}", browser.text(".side").await);
    let version = browser.text("#version").await.unwrap_or_default();
    assert_eq!(version, format!("v{}", env!("CARGO_PKG_VERSION")));
    let listeners = browser.text("#listeners").await.unwrap_or_default();
    assert!(listeners.contains(&proxy.addr.to_string()), "{listeners:?}");

    // Without the token: the page says it is read-only and every action button is disabled.
    let mode = browser
        .eval("document.getElementById('auth-state').dataset.mode")
        .await;
    assert_eq!(mode, "read-only");
    let says = browser.text("#auth-state").await.unwrap_or_default();
    assert!(says.starts_with("Read-only"), "{says:?}");
    let all_disabled = browser
        .eval("[...document.querySelectorAll('button[data-action]')].every(b => b.disabled)")
        .await;
    assert_eq!(all_disabled, true);
    // A click on Drain does nothing, and a request the page's script could send is refused.
    browser
        .click("tr[data-backend=\"iis1\"] button[data-action=\"drain\"]")
        .await;
    let refused = browser
        .eval(
            "fetch('/api/pools/web/backends/iis1/state', {method: 'POST', \
             body: JSON.stringify({state: 'draining'})}).then(r => r.status)",
        )
        .await;
    assert_eq!(refused, 401);
    assert_eq!(state_of(&proxy, "iis1").await, "active");
    browser.drain_events().await;
    assert!(
        unexpected_errors(&browser).is_empty(),
        "{:?}",
        browser.errors
    );
}

#[tokio::test]
async fn a_wrong_token_is_shown_as_a_refusal_and_the_page_stays_read_only() {
    let (_backends, proxy, _token) = start().await;
    let mut browser = Browser::launch().await;
    open_dashboard(&mut browser, &proxy, 3).await;
    browser
        .type_into("#token", "wrong-token-0123456789abcdef")
        .await;
    browser.click("#use-token").await;
    let shown = browser
        .wait_for(
            "(() => { const m = document.getElementById('message'); \
             return !m.hidden && m.dataset.kind === 'error'; })()",
            PAGE_PATIENCE,
        )
        .await;
    assert!(shown, "no refusal shown; page errors: {:?}", browser.errors);
    let message = browser.text("#message").await.unwrap_or_default();
    assert!(
        message.contains("refused") && message.contains("403"),
        "{message:?}"
    );
    let mode = browser
        .eval("document.getElementById('auth-state').dataset.mode")
        .await;
    assert_eq!(mode, "read-only");
    let stored = browser
        .eval("sessionStorage.getItem('sticky-proxy.admin-token')")
        .await;
    assert_eq!(stored, Value::Null);
    // Still a working page: it keeps refreshing and showing the backends.
    assert!(
        browser
            .wait_for(
                "document.getElementById('connection').dataset.connection === 'live'",
                PAGE_PATIENCE
            )
            .await
    );
    assert_eq!(
        browser
            .eval("document.querySelectorAll('tr[data-backend]').length")
            .await,
        3
    );
    browser.drain_events().await;
    assert!(
        unexpected_errors(&browser).is_empty(),
        "{:?}",
        browser.errors
    );
}

#[tokio::test]
async fn with_the_token_entered_once_a_click_on_drain_drains_the_backend_and_enable_brings_it_back()
{
    let (_backends, proxy, _token) = start().await;
    let mut browser = Browser::launch().await;
    open_dashboard(&mut browser, &proxy, 3).await;
    browser.type_into("#token", TOKEN).await;
    browser.click("#use-token").await;
    let accepted = browser
        .wait_for(
            "document.getElementById('auth-state').dataset.mode === 'token'",
            PAGE_PATIENCE,
        )
        .await;
    assert!(
        accepted,
        "token not accepted: {:?}",
        browser.text("#message").await
    );
    // Kept in the tab, never in the address.
    let stored = browser
        .eval("sessionStorage.getItem('sticky-proxy.admin-token')")
        .await;
    assert_eq!(stored, TOKEN);
    let href = browser.eval("location.href").await;
    assert!(!href.as_str().unwrap_or("").contains(TOKEN), "{href}");

    let drain = "tr[data-backend=\"iis1\"] button[data-action=\"drain\"]";
    let enabled = browser
        .wait_for(
            &format!("!document.querySelector('{drain}').disabled"),
            PAGE_PATIENCE,
        )
        .await;
    assert!(enabled, "Drain stays disabled with the token");
    browser.click(drain).await;
    let client = client();
    let drained = eventually(PAGE_PATIENCE, || async {
        state_of(&proxy, "iis1").await == "draining"
    })
    .await;
    assert!(
        drained,
        "the click did not drain iis1: {:?}",
        browser.errors
    );
    assert!(
        browser
            .wait_for(&row_state_is("iis1", "draining"), PAGE_PATIENCE)
            .await
    );
    let badge = browser
        .text("tr[data-backend=\"iis1\"] .state")
        .await
        .unwrap_or_default();
    assert!(badge.contains("draining"), "{badge:?}");
    let message = browser.text("#message").await.unwrap_or_default();
    assert!(
        message.contains("iis1") && message.contains("draining"),
        "{message:?}"
    );
    // The others are untouched.
    assert_eq!(state_of(&proxy, "iis2").await, "active");

    browser
        .click("tr[data-backend=\"iis1\"] button[data-action=\"enable\"]")
        .await;
    let back = eventually(PAGE_PATIENCE, || async {
        state_of(&proxy, "iis1").await == "active"
    })
    .await;
    assert!(back, "the click did not re-enable iis1");
    browser
        .click("tr[data-backend=\"iis2\"] button[data-action=\"close\"]")
        .await;
    let closed = browser
        .wait_for(
            "document.getElementById('message').textContent.includes('Closed 0 WebSocket')",
            PAGE_PATIENCE,
        )
        .await;
    assert!(closed, "{:?}", browser.text("#message").await);
    let view = get(&client, &proxy.admin_url("/api/pools/web"), None).await;
    assert!(view.body.contains("\"upgraded_connections\": 0"));
    browser.drain_events().await;
    assert!(browser.errors.is_empty(), "{:?}", browser.errors);
}

#[tokio::test]
async fn a_dashboard_left_open_across_a_restart_reconnects_by_itself() {
    let backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let template = section(&backends, &token_file);
    let mut proxy = Proxy::start(&template).await;
    wait_for_admin(&proxy).await;
    let mut browser = Browser::launch().await;
    open_dashboard(&mut browser, &proxy, 3).await;
    let drained = client()
        .post(proxy.admin_url("/api/pools/web/backends/iis1/state"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body("{\"state\": \"draining\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(drained.status(), 200);
    assert!(
        browser
            .wait_for(&row_state_is("iis1", "draining"), PAGE_PATIENCE)
            .await
    );

    // Stop the process; the test keeps its sockets, as systemd does across a restart.
    proxy.terminate(Duration::from_secs(10)).await;
    let sockets = proxy.release_sockets();
    let lost = browser
        .wait_for(
            "document.getElementById('connection').dataset.connection === 'lost'",
            PAGE_PATIENCE,
        )
        .await;
    assert!(lost, "the page never noticed the proxy was gone");
    let connection = browser.text("#connection").await.unwrap_or_default();
    assert!(connection.contains("retrying"), "{connection:?}");

    let (listen, admin) = (sockets[0].to_string(), sockets[1].to_string());
    let _restarted = Proxy::start_full(
        |dir| {
            format!(
                "{}{}",
                pingora_keys(dir),
                template
                    .replace("{listen}", &listen)
                    .replace("{admin}", &admin)
            )
        },
        sockets,
    )
    .await;
    // The new process starts from the file: iis1 is active again, and the page says why.
    let back = browser
        .wait_for(
            &format!(
                "document.getElementById('connection').dataset.connection === 'live' && {}",
                row_state_is("iis1", "active")
            ),
            PAGE_PATIENCE,
        )
        .await;
    assert!(
        back,
        "the page did not reconnect: {:?}",
        browser.text("#connection").await
    );
    let message = browser.text("#message").await.unwrap_or_default();
    assert!(message.contains("restarted"), "{message:?}");
}

// ---- the plain-HTTP side ----

#[tokio::test]
async fn the_page_its_script_and_its_style_are_served_with_a_self_only_policy_and_no_store() {
    let (_backends, proxy, _token) = start().await;
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
    let (_backends, proxy, _token) = start().await;
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
    assert!(!reply.body.contains(TOKEN) && !reply.body.contains("token_file"));
}

#[tokio::test]
async fn api_pools_gives_each_backend_its_requests_per_second_and_a_history_of_rates() {
    let (_backends, proxy, _token) = start().await;
    let client = client();
    for _ in 0..20 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    }
    // The rate reads the live counter against a snapshot: above zero at once; the history
    // needs a second snapshot (the sampler takes one every 2 s).
    let deadline = std::time::Instant::now() + PAGE_PATIENCE;
    let last = loop {
        // Keep traffic flowing, so that the 10 s window is never empty however slow the poll.
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
        let view = pool(&proxy).await;
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
    let (_backends, proxy, _token) = start().await;
    let client = client();
    let auth = |value: Option<String>| {
        let mut request = client.get(proxy.admin_url("/api/auth"));
        if let Some(value) = value {
            request = request.header("Authorization", value);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(auth(Some(format!("Bearer {TOKEN}"))).await, 200);
    assert_eq!(auth(Some(format!("bearer {TOKEN}"))).await, 200);
    assert_eq!(auth(None).await, 401);
    assert_eq!(auth(Some(format!("Bearer {TOKEN}x"))).await, 403);
    assert_eq!(auth(Some(format!("Basic {TOKEN}"))).await, 401);

    // With no token configured, there is nothing to check against.
    let b = TestBackend::start("iis1").await;
    let open =
        one_pool(&[&b], "").replace("sticky:\n", "sticky:\n  admin: { addr: \"{admin}\" }\n");
    let proxy = Proxy::start(&open).await;
    wait_for_admin(&proxy).await;
    let reply = client
        .get(proxy.admin_url("/api/auth"))
        .header("Authorization", format!("Bearer {TOKEN}"))
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
    let (_backends, proxy, _token) = start().await;
    let client = client();
    let call = |method: reqwest::Method, path: &str| {
        let request = client
            .request(method, proxy.admin_url(path))
            .header("Authorization", format!("Bearer {TOKEN}"));
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
