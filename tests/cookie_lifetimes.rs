//! Cookie lifetimes enforced by the proxy (`max_idle_seconds`, `max_life_seconds`), from a real
//! client through the real proxy binary to real backends. Lifetimes are a few seconds; the tests
//! wait for the Unix clock to pass a date (with generous deadlines) and assert what the rules
//! say at that date, never how fast anything was.

mod common;
use common::*;
use std::time::Duration;
use sticky_proxy::affinity::lifetime::{unix_now, DatedIds, DatedValue, Dates};

const SECRET: &str = "test-secret-0123456789abcdef";

/// One pool of these backends with the keyed cookie and `lifetimes` (YAML keys of `cookie`),
/// and an admin listener for `/metrics`.
fn section(backends: &[&TestBackend], lifetimes: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| b.yaml()).collect();
    format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  admin: {{ addr: \"{{admin}}\" }}\n  pools:\n    - name: web\n      backends: [{}]\n      affinity:\n        cookie: {{ secret: {SECRET}{lifetimes} }}\n",
        list.join(", ")
    )
}

fn dates_of(value: &str) -> Dates {
    DatedValue::parse(value.as_bytes())
        .unwrap_or_else(|| panic!("not a dated value: {value:?}"))
        .dates
}

/// A dated value for `backend` (of `names`, pool `web`) with `dates`, signed with the secret.
fn mint(names: &[&str], backend: usize, dates: Dates) -> String {
    let ids = DatedIds::new(SECRET.as_bytes(), "web", names.iter().copied());
    String::from_utf8(ids.codec.encode(ids.id(backend).unwrap(), dates).to_vec()).unwrap()
}

/// Wait (up to 30 s) until the Unix clock reads at least `t`.
async fn clock_reaches(t: u32) {
    assert!(
        eventually(Duration::from_secs(30), || async { unix_now() >= t }).await,
        "the clock never reached {t}"
    );
}

async fn cookie_get(client: &reqwest::Client, proxy: &Proxy, path: &str, value: &str) -> Reply {
    get(
        client,
        &proxy.url(path),
        Some(&format!("ARRAffinity={value}")),
    )
    .await
}

/// The decision log's outcome for the last request for `path`, once it is written (the line
/// may follow the response by a moment).
async fn outcome(proxy: &Proxy, path: &str) -> Option<String> {
    eventually(Duration::from_secs(10), || async {
        proxy.outcome_of(path).is_some()
    })
    .await;
    proxy.outcome_of(path)
}

async fn metrics(proxy: &Proxy) -> String {
    let reply = get(&client(), &proxy.admin_url("/metrics"), None).await;
    assert_eq!(reply.status, 200);
    reply.body
}

#[tokio::test]
async fn an_issued_cookie_is_dated_and_shows_no_backend_name_or_address() {
    let [b1, b2] = TestBackend::start_each(["iis1", "iis2"]).await;
    let proxy = Proxy::start(&section(&[&b1, &b2], ", max_idle_seconds: 60")).await;
    let client = client();
    let before = unix_now();
    let first = get(&client, &proxy.url("/"), None).await;
    let value = first.cookie("ARRAffinity").expect("a cookie");
    assert_eq!(value.len(), 83, "{value}");
    assert_eq!(value.matches('.').count(), 3, "{value}");
    let dates = dates_of(&value);
    assert!(dates.issued >= before && dates.issued <= unix_now());
    assert_eq!(dates.issued, dates.refreshed);
    for shown in ["iis1", "iis2", "127.0.0.1"] {
        assert!(!value.contains(shown), "{value} shows {shown}");
    }
    // Any instance with the secret verifies it: a second proxy with the same file pins it too.
    let other = Proxy::start(&section(&[&b1, &b2], ", max_idle_seconds: 60")).await;
    let reply = cookie_get(&client, &other, "/", &value).await;
    assert_eq!(reply.backend(), first.backend());
}

#[tokio::test]
async fn an_idle_cookie_past_max_idle_seconds_is_rebalanced_and_reissued() {
    let [b1, b2] = TestBackend::start_each(["iis1", "iis2"]).await;
    let proxy = Proxy::start(&section(&[&b1, &b2], ", max_idle_seconds: 2")).await;
    let client = client();
    let first = get(&client, &proxy.url("/first"), None).await;
    let value = first.cookie("ARRAffinity").unwrap();
    let issued = dates_of(&value);

    // Idle longer than 2 s in whole seconds: now − refreshed ≥ 3.
    clock_reaches(issued.refreshed + 3).await;
    let reply = cookie_get(&client, &proxy, "/after-idle", &value).await;
    assert_eq!(reply.status, 200);
    let fresh = reply.cookie("ARRAffinity").expect("a fresh cookie");
    let dates = dates_of(&fresh);
    assert!(
        dates.issued >= issued.refreshed + 3,
        "a new session's dates"
    );
    assert_eq!(dates.issued, dates.refreshed);
    assert_eq!(outcome(&proxy, "/after-idle").await.as_deref(), Some("new"));
    // The fresh cookie pins where that new session was balanced.
    let again = cookie_get(&client, &proxy, "/again", &fresh).await;
    assert_eq!(again.backend(), reply.backend());
    assert!(
        metrics(&proxy)
            .await
            .contains("sticky_cookie_expirations_total{lifetime=\"idle\",pool=\"web\"} 1"),
        "the expiry is counted"
    );
}

#[tokio::test]
async fn a_cookie_in_use_is_refreshed_at_most_once_per_quarter_of_max_idle_and_stays_pinned() {
    let [b1, b2] = TestBackend::start_each(["iis1", "iis2"]).await;
    let proxy = Proxy::start(&section(&[&b1, &b2], ", max_idle_seconds: 2")).await;
    let client = client();
    let first = get(&client, &proxy.url("/"), None).await;
    let home = first.backend().to_string();
    let mut value = first.cookie("ARRAffinity").unwrap();
    let start = dates_of(&value);
    let mut refreshes = 0;
    // A client that sends a request every 300 ms and keeps what it is given, as a browser does,
    // for three times max_idle.
    while unix_now() < start.issued + 6 {
        let reply = cookie_get(&client, &proxy, "/used", &value).await;
        assert_eq!(reply.backend(), home, "the session stays pinned");
        if let Some(next) = reply.cookie("ARRAffinity") {
            let (old, new) = (dates_of(&value), dates_of(&next));
            assert_eq!(new.issued, start.issued, "a refresh keeps the first issue");
            // The rule: refreshed again once ceil(2 / 4) = 1 s has passed since the last.
            let interval = 1;
            assert!(
                new.refreshed >= old.refreshed + interval,
                "{old:?} -> {new:?}"
            );
            value = next;
            refreshes += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(refreshes >= 2, "refreshed {refreshes} times");
    assert!(
        dates_of(&value).refreshed > start.issued + 2,
        "slid past max_idle"
    );
    assert_eq!(outcome(&proxy, "/used").await.as_deref(), Some("sticky"));
}

#[tokio::test]
async fn a_cookie_past_max_life_seconds_is_a_new_session_however_much_it_is_used() {
    let [b1, b2] = TestBackend::start_each(["iis1", "iis2"]).await;
    let lifetimes = ", max_idle_seconds: 2, max_life_seconds: 3";
    let proxy = Proxy::start(&section(&[&b1, &b2], lifetimes)).await;
    let client = client();
    let first = get(&client, &proxy.url("/"), None).await;
    let mut value = first.cookie("ARRAffinity").unwrap();
    let issued = dates_of(&value).issued;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    let ended = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the session never ended"
        );
        n += 1;
        let sent = unix_now();
        let reply = cookie_get(&client, &proxy, &format!("/life{n}"), &value).await;
        let answered = unix_now();
        let next = reply.cookie("ARRAffinity");
        let new_session = next.as_ref().is_some_and(|n| dates_of(n).issued != issued);
        if answered <= issued + 3 {
            // Not older than max_life at any moment the proxy could have looked.
            assert!(!new_session, "ended at {sent}..{answered}, issued {issued}");
            assert_eq!(reply.backend(), first.backend());
        }
        if new_session {
            break (sent, reply, next.unwrap());
        }
        // Older than max_life (3 s) by the time it was sent: it had to be a new session.
        assert!(
            sent < issued + 4,
            "kept past max_life (sent at {sent}, issued {issued})"
        );
        if let Some(next) = next {
            value = next;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, reply, fresh) = ended;
    assert_eq!(
        outcome(&proxy, &format!("/life{n}")).await.as_deref(),
        Some("new")
    );
    let dates = dates_of(&fresh);
    assert_eq!(dates.issued, dates.refreshed);
    assert!(dates.issued >= issued + 4);
    assert_eq!(reply.status, 200);
    assert!(metrics(&proxy)
        .await
        .contains("sticky_cookie_expirations_total{lifetime=\"life\",pool=\"web\"} 1"));
}

#[tokio::test]
async fn a_tampered_or_impossible_date_is_a_new_session_never_an_error() {
    let names = ["iis1", "iis2"];
    let [b1, b2] = TestBackend::start_each(names).await;
    let proxy = Proxy::start(&section(&[&b1, &b2], ", max_idle_seconds: 60")).await;
    let client = client();
    let now = unix_now();
    // Properly signed, ten seconds ahead (within the clock tolerance): pins.
    let slightly_ahead = mint(&names, 1, Dates::new_at(now + 10));
    let reply = cookie_get(&client, &proxy, "/ahead", &slightly_ahead).await;
    assert_eq!(reply.backend(), "iis2");
    assert_eq!(outcome(&proxy, "/ahead").await.as_deref(), Some("sticky"));

    let valid = mint(&names, 1, Dates::new_at(now));
    // The refresh date moved an hour later, the tag kept.
    let later = format!("{}{:08x}{}", &valid[..42], now + 3600, &valid[50..]);
    // Properly signed, but ten minutes in the future: no instance writes that.
    let far_ahead = mint(&names, 1, Dates::new_at(now + 600));
    // Refreshed before it was issued, properly signed.
    let backwards = mint(
        &names,
        1,
        Dates {
            issued: now,
            refreshed: now - 10,
        },
    );
    let cut = valid[..64].to_string();
    for (path, value) in [
        ("/later", later.as_str()),
        ("/far-ahead", &far_ahead),
        ("/backwards", &backwards),
        ("/cut", &cut),
        ("/dots", &".".repeat(83)),
        ("/junk", &"z".repeat(83)),
    ] {
        let reply = cookie_get(&client, &proxy, path, value).await;
        assert_eq!(reply.status, 200, "{path}");
        let fresh = reply.cookie("ARRAffinity").expect("a fresh cookie");
        assert_ne!(fresh, value, "{path}");
        assert!(dates_of(&fresh).issued >= now, "{path}");
        assert_eq!(
            outcome(&proxy, path).await.as_deref(),
            Some("new"),
            "{path}"
        );
    }
    assert!(metrics(&proxy)
        .await
        .contains("sticky_cookie_verification_failures_total{pool=\"web\"} 6"));
}

#[tokio::test]
async fn a_date_less_cookie_from_before_the_upgrade_is_accepted_once_and_reissued_with_dates() {
    let [b1, b2] = TestBackend::start_each(["iis1", "iis2"]).await;
    let client = client();
    // Before: no lifetimes, date-less values.
    let mut before = Proxy::start(&section(&[&b1, &b2], "")).await;
    let old = cookie_for(&client, &before, "/", "iis2").await;
    assert_eq!(old.len(), 64);
    before.stop();
    drop(before);

    let after = Proxy::start(&section(&[&b1, &b2], ", max_idle_seconds: 60")).await;
    let reply = cookie_get(&client, &after, "/upgraded", &old).await;
    assert_eq!(reply.backend(), "iis2", "the old cookie still pins");
    assert_eq!(
        outcome(&after, "/upgraded").await.as_deref(),
        Some("sticky")
    );
    let dated = reply.cookie("ARRAffinity").expect("re-issued with dates");
    assert_eq!(dated.len(), 83);
    let dates = dates_of(&dated);
    assert_eq!(dates.issued, dates.refreshed);
    // From then on the dated cookie pins, and needs nothing more.
    let next = cookie_get(&client, &after, "/dated", &dated).await;
    assert_eq!(next.backend(), "iis2");
    assert!(next.cookie("ARRAffinity").is_none());
}

#[tokio::test]
async fn with_accept_undated_false_a_date_less_cookie_is_a_new_session() {
    let [b1, b2] = TestBackend::start_each(["iis1", "iis2"]).await;
    let client = client();
    let old = sticky_proxy::affinity::cookie::value_text(
        &sticky_proxy::config::CookieFormat::Keyed {
            secret: SECRET.as_bytes().to_vec(),
        },
        "web",
        "iis2",
    );
    let lifetimes = ", max_idle_seconds: 60, accept_undated: false";
    let proxy = Proxy::start(&section(&[&b1, &b2], lifetimes)).await;
    let reply = cookie_get(&client, &proxy, "/refused", &old).await;
    assert_eq!(reply.status, 200);
    assert_eq!(outcome(&proxy, "/refused").await.as_deref(), Some("new"));
    assert_eq!(reply.cookie("ARRAffinity").map(|v| v.len()), Some(83));
}

#[tokio::test]
async fn switching_lifetimes_off_keeps_dated_sessions_pinned_and_reissues_them_without_dates() {
    let names = ["iis1", "iis2"];
    let [b1, b2] = TestBackend::start_each(names).await;
    let client = client();
    let proxy = Proxy::start(&section(&[&b1, &b2], "")).await;
    // A dated cookie from when lifetimes were on, long past them.
    let dated = mint(&names, 0, Dates::new_at(unix_now() - 100_000));
    let reply = cookie_get(&client, &proxy, "/off", &dated).await;
    assert_eq!(reply.backend(), "iis1");
    assert_eq!(outcome(&proxy, "/off").await.as_deref(), Some("sticky"));
    let plain = reply
        .cookie("ARRAffinity")
        .expect("re-issued without dates");
    assert_eq!(plain.len(), 64);
    let next = cookie_get(&client, &proxy, "/", &plain).await;
    assert_eq!(next.backend(), "iis1");
    assert!(next.cookie("ARRAffinity").is_none());
}
