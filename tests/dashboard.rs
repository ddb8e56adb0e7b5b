//! The admin listener's dashboard (`GET /`), driven in a real headless Chromium over the
//! DevTools protocol: it shows the backends and their states, acts only with the admin token
//! (entered once, kept in the tab), shows a refused token as a message, and reconnects by itself
//! across a restart. Its plain-HTTP side is in `dashboard_api.rs`.

mod common;
use common::admin::*;
use common::browser::Browser;
use common::*;
use serde_json::Value;
use std::time::Duration;

/// How long the page may take to show a change (it polls every 2 s; a hang guard).
const PAGE_PATIENCE: Duration = Duration::from_secs(30);

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
    let (_backends, proxy, _token) = start_with_admin().await;
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
    let (_backends, proxy, _token) = start_with_admin().await;
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
    let (_backends, proxy, _token) = start_with_admin().await;
    let mut browser = Browser::launch().await;
    open_dashboard(&mut browser, &proxy, 3).await;
    browser.type_into("#token", ADMIN_TOKEN).await;
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
    assert_eq!(stored, ADMIN_TOKEN);
    let href = browser.eval("location.href").await;
    assert!(!href.as_str().unwrap_or("").contains(ADMIN_TOKEN), "{href}");

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
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let template = admin_section(&backends, &token_file);
    let mut proxy = Proxy::start(&template).await;
    wait_for_admin(&proxy).await;
    let mut browser = Browser::launch().await;
    open_dashboard(&mut browser, &proxy, 3).await;
    let drained = client()
        .post(proxy.admin_url("/api/pools/web/backends/iis1/state"))
        .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
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
