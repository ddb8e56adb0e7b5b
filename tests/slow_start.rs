//! Slow start (`pools[].slow_start_seconds`, HAProxy `slowstart`, NGINX Plus `slow_start`): a
//! backend that comes back — set `active` again through the admin API, or healthy again after
//! failing its checks — takes a small share of the new sessions that grows to its full share,
//! while the sessions it already holds keep coming to it.
//!
//! No assertion depends on the machine's speed: the windows are cut by the ramp the proxy itself
//! reports (`slow_start_share` in `/api/pools`), and each window's measured share of new
//! sessions is compared with the share the proxy reported at the window's end.

mod common;
use common::*;
use std::time::Duration;

const TOKEN: &str = "admin-token-0123456789abcdef";

/// Three backends, round robin, the admin listener with its token, slow start; `extra_pool`:
/// more lines of the pool (indented 6 spaces), ending with its affinity section.
async fn start(backends: &[&TestBackend], extra_pool: &str) -> (Proxy, tempfile::TempDir) {
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let list: Vec<String> = backends.iter().map(|b| b.yaml()).collect();
    let section = format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  admin: {{ addr: \"{{admin}}\", token_file: \"{}\" }}\n  pools:\n    - name: web\n      slow_start_seconds: 24\n      backends: [{}]\n{extra_pool}",
        token_file.display(),
        list.join(", "),
    );
    let proxy = Proxy::start(&section).await;
    common::admin::wait_for_admin(&proxy).await;
    (proxy, token_dir)
}

/// `iis3`'s entry in `/api/pools/web`.
async fn iis3(proxy: &Proxy) -> serde_json::Value {
    let pool = common::admin::pool_view(proxy).await;
    assert_eq!(pool["slow_start_seconds"], 24, "{pool}");
    pool["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "iis3")
        .cloned()
        .unwrap()
}

async fn share_of_iis3(proxy: &Proxy) -> f64 {
    iis3(proxy).await["slow_start_share"].as_f64().unwrap()
}

async fn set_state(proxy: &Proxy, state: &str) {
    let reply = client()
        .post(proxy.admin_url("/api/pools/web/backends/iis3/state"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(format!("{{\"state\": \"{state}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
}

/// New sessions sent in one window, and how many `iis3` got.
struct Window {
    total: usize,
    on_iis3: usize,
    /// `iis3`'s slow-start share as the proxy reported it at the window's end.
    share_at_end: f64,
}

impl Window {
    fn fraction(&self) -> f64 {
        self.on_iis3 as f64 / self.total as f64
    }
}

/// New sessions (no cookie) in batches of 10 until `max` are sent or the proxy reports a share
/// of at least `until_share`; after each batch, a request with `returning` (a cookie for
/// `iis3`) must reach `iis3`.
async fn new_sessions(proxy: &Proxy, max: usize, until_share: f64, returning: &str) -> Window {
    let client = client();
    let mut window = Window {
        total: 0,
        on_iis3: 0,
        share_at_end: 0.0,
    };
    while window.total < max {
        for _ in 0..10 {
            let reply = get(&client, &proxy.url("/"), None).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            window.total += 1;
            window.on_iis3 += usize::from(reply.backend() == "iis3");
        }
        let back = get(&client, &proxy.url("/"), Some(returning)).await;
        assert_eq!(back.backend(), "iis3", "a returning session stays on iis3");
        assert!(back.cookie("ARRAffinity").is_none(), "and keeps its cookie");
        window.share_at_end = share_of_iis3(proxy).await;
        if window.share_at_end >= until_share {
            break;
        }
    }
    eprintln!(
        "window: {} of {} new sessions on iis3; share at its end {:.3}",
        window.on_iis3, window.total, window.share_at_end
    );
    window
}

/// The share of new sessions `iis3` gets under round robin over three equal backends when it
/// is accepted for `share` of its turns: as if its weight were `share` (HAProxy's model).
fn expected_fraction(share: f64) -> f64 {
    share / (2.0 + share)
}

/// The early window: cut at a reported share of 0.2, its fraction of new sessions is at most
/// what that share gives (with a tolerance), and clearly below the full third.
fn assert_early(early: &Window) {
    assert!(
        early.total >= 30,
        "enough new sessions early: {}",
        early.total
    );
    let bound = expected_fraction(early.share_at_end) + 0.05;
    assert!(
        early.fraction() <= bound,
        "early: {} of {} new sessions on iis3 at a share of at most {:.3} (bound {bound:.3})",
        early.on_iis3,
        early.total,
        early.share_at_end
    );
    assert!(early.fraction() < 1.0 / 6.0, "clearly below its full third");
}

#[tokio::test]
async fn a_backend_set_active_again_ramps_up_to_its_share_of_new_sessions_while_its_sessions_stay()
{
    let backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let [b1, b2, b3] = &backends;
    let (proxy, _token) = start(&[b1, b2, b3], KEYED_AFFINITY).await;
    // Present at start: no ramp (as HAProxy: a restarted proxy does not starve its backends).
    assert_eq!(share_of_iis3(&proxy).await, 1.0);
    let client = client();
    let returning = format!(
        "ARRAffinity={}",
        cookie_for(&client, &proxy, "/", "iis3").await
    );

    set_state(&proxy, "draining").await;
    set_state(&proxy, "active").await;
    let share = share_of_iis3(&proxy).await;
    assert!(share < 0.2, "ramping from a small share: {share}");
    let metrics = get(&client, &proxy.admin_url("/metrics"), None).await.body;
    let gauge = metrics
        .lines()
        .find(|l| l.starts_with("sticky_backend_slow_start_share") && l.contains("\"iis3\""))
        .unwrap_or_else(|| panic!("the gauge:\n{metrics}"));
    let value: f64 = gauge.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value < 1.0, "{gauge}");

    let early = new_sessions(&proxy, 150, 0.2, &returning).await;
    assert_early(&early);

    // The ramp ends by the proxy's own clock.
    let over = eventually(Duration::from_secs(60), || async {
        share_of_iis3(&proxy).await >= 1.0
    })
    .await;
    assert!(over, "the ramp ends: {}", iis3(&proxy).await);
    let late = new_sessions(&proxy, 150, 2.0, &returning).await;
    assert!(
        (late.fraction() - 1.0 / 3.0).abs() <= 0.05,
        "late: {} of {} new sessions on iis3, its full third",
        late.on_iis3,
        late.total
    );
}

#[tokio::test]
async fn a_backend_healthy_again_after_failing_its_checks_ramps_up_its_share_of_new_sessions() {
    let mut backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let (proxy, _token) = {
        let [b1, b2, b3] = &backends;
        let health =
            "      health_check: { type: http, path: /healthz, interval_ms: 100, fall: 1, rise: 1 }\n";
        start(&[b1, b2, b3], &format!("{health}{KEYED_AFFINITY}")).await
    };
    let client = client();
    let returning = format!(
        "ARRAffinity={}",
        cookie_for(&client, &proxy, "/", "iis3").await
    );
    backends[2].stop().await;
    let down = eventually(Duration::from_secs(10), || async {
        iis3(&proxy).await["healthy"] == false
    })
    .await;
    assert!(down, "iis3 marked down");
    assert_eq!(share_of_iis3(&proxy).await, 1.0, "no ramp while down");

    backends[2].restart().await;
    let up = eventually(Duration::from_secs(10), || async {
        iis3(&proxy).await["healthy"] == true
    })
    .await;
    assert!(up, "iis3 healthy again");
    let share = share_of_iis3(&proxy).await;
    assert!(share < 0.2, "ramping from a small share: {share}");

    let early = new_sessions(&proxy, 150, 0.2, &returning).await;
    assert_early(&early);
    assert!(share_of_iis3(&proxy).await >= share, "the share only grows");
}

async fn tenant(proxy: &Proxy, key: &str) -> String {
    let response = client()
        .get(proxy.url("/"))
        .header("X-Tenant-ID", key)
        .send()
        .await
        .unwrap();
    into_reply(response).await.backend().to_string()
}

#[tokio::test]
async fn hash_keys_go_home_at_once_to_a_backend_in_its_slow_start() {
    let backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let [b1, b2, b3] = &backends;
    let hash = "      affinity:\n        hash:\n          sources: [{ type: header, name: X-Tenant-ID }]\n";
    let (proxy, _token) = start(&[b1, b2, b3], hash).await;
    let mut homed_on_iis3 = Vec::new();
    for k in 0..300 {
        let key = format!("tenant-{k}");
        if tenant(&proxy, &key).await == "iis3" {
            homed_on_iis3.push(key);
        }
        if homed_on_iis3.len() == 10 {
            break;
        }
    }
    assert_eq!(homed_on_iis3.len(), 10, "keys whose home is iis3");

    set_state(&proxy, "disabled").await;
    for key in &homed_on_iis3 {
        assert_ne!(
            tenant(&proxy, key).await,
            "iis3",
            "{key} walks on while iis3 is disabled"
        );
    }
    set_state(&proxy, "active").await;
    let share = share_of_iis3(&proxy).await;
    assert!(share < 1.0, "ramping: {share}");
    // A key's place on the ring is its session: it is back home at once, as on every instance.
    for key in &homed_on_iis3 {
        assert_eq!(tenant(&proxy, key).await, "iis3", "{key} is home again");
    }
}
