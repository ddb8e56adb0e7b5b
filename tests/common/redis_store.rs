//! What the shared-store tests share: a pool of learned `JSESSIONID`s with a Redis store and
//! an admin listener, the store's view in `/api/pools/web`, and the check that a session
//! learned elsewhere is honoured where the balancer would have sent it away.

use super::*;

/// A pool with learned `JSESSIONID`s (idle timeout `idle` s) kept in the Redis store
/// `store` (the inside of `store: { … }`), and an admin listener. Lookups get a generous
/// `lookup_timeout_ms` (500): the test machine is shared and noisy, and these tests check
/// behaviour, not speed (the benchmark measures that).
pub fn shared_pool(backends: &[&TestBackend], store: &str, idle: u64) -> String {
    let pool = one_pool(
        backends,
        &format!(
            "      affinity:\n        learn:\n          presets: [j2ee]\n          \
             table: {{ idle_timeout_seconds: {idle} }}\n          \
             store: {{ type: redis, lookup_timeout_ms: 500, {store} }}\n"
        ),
    );
    format!("{pool}  admin: {{ addr: \"{{admin}}\" }}\n")
}

/// `["a", "b"]` as a YAML flow list.
pub fn yaml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The store's entry in `/api/pools/web` (`null` while the admin listener is not up yet: each
/// listener is bound by its own service, so it may come up after the proxy listener).
pub async fn store_view(client: &reqwest::Client, proxy: &Proxy) -> serde_json::Value {
    let Ok(response) = client.get(proxy.admin_url("/api/pools/web")).send().await else {
        return serde_json::Value::Null;
    };
    let body = response.text().await.unwrap_or_default();
    let view: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    view["stores"]["learn"].clone()
}

pub async fn wait_store(client: &reqwest::Client, proxy: &Proxy, up: bool) {
    let reached = eventually(Duration::from_secs(15), || async {
        store_view(client, proxy).await["up"] == serde_json::Value::Bool(up)
    })
    .await;
    assert!(
        reached,
        "store never {}:\n{}",
        if up { "up" } else { "down" },
        proxy.log()
    );
}

/// The Redis key of a session id in pool `web`'s learned table (the table's hash of it,
/// never the id).
pub fn key_of(id: &str) -> String {
    format!(
        "sticky:web:learn:{:032x}",
        sticky_proxy::affinity::sessions::key_of(id.as_bytes())
    )
}

/// Log in through `proxy`; returns (JSESSIONID value, backend).
pub async fn login(client: &reqwest::Client, proxy: &Proxy) -> (String, String) {
    let reply = get(client, &proxy.url("/login"), None).await;
    assert_eq!(reply.status, 200);
    let id = reply
        .cookie("JSESSIONID")
        .expect("the backend hands out JSESSIONID");
    (id, reply.backend().to_string())
}

/// Make `proxy`'s round robin (two backends) give its next new session to the backend that is
/// not `home`: plain requests until one lands on `home`.
pub async fn aim_balancer_away_from(client: &reqwest::Client, proxy: &Proxy, home: &str) {
    for _ in 0..4 {
        if get(client, &proxy.url("/"), None).await.backend() == home {
            return;
        }
    }
    panic!("the balancer never picked {home}");
}

pub fn other(home: &str) -> &'static str {
    if home == "iis1" {
        "iis2"
    } else {
        "iis1"
    }
}

/// The outcome the decision log gives the request for `path`.
pub async fn outcome(proxy: &Proxy, path: &str) -> String {
    let mut found = None;
    eventually(Duration::from_secs(3), || {
        found = proxy.outcome_of(path);
        let done = found.is_some();
        async move { done }
    })
    .await;
    found.unwrap_or_else(|| panic!("no access line for {path}:\n{}", proxy.log()))
}

/// `id`, sent through `proxy` whose balancer would pick the other backend, lands on `home`;
/// a fresh unknown id right after goes to the other backend (so the balancer really pointed
/// away: without the shared record the request would have moved).
pub async fn assert_honoured(
    client: &reqwest::Client,
    proxy: &Proxy,
    id: &str,
    home: &str,
    tag: &str,
) {
    assert!(
        honoured(client, proxy, id, home, tag).await,
        "{tag}: the shared session was not honoured\n{}",
        proxy.log()
    );
}

/// [`assert_honoured`]'s check as a value: whether `id` landed on `home` (outcome `sticky`)
/// although the balancer pointed away. Every request must succeed.
pub async fn honoured(
    client: &reqwest::Client,
    proxy: &Proxy,
    id: &str,
    home: &str,
    tag: &str,
) -> bool {
    aim_balancer_away_from(client, proxy, home).await;
    let path = format!("/cart-{tag}");
    let reply = get(client, &proxy.url(&path), Some(&format!("JSESSIONID={id}"))).await;
    assert_eq!(reply.status, 200, "{tag}");
    if reply.backend() != home {
        return false;
    }
    assert_eq!(outcome(proxy, &path).await, "sticky", "{tag}");
    let control = get(
        client,
        &proxy.url("/"),
        Some(&format!("JSESSIONID=never-issued-{tag}")),
    )
    .await;
    assert_eq!(control.status, 200, "{tag}");
    assert_eq!(
        control.backend(),
        other(home),
        "{tag}: the balancer pointed away"
    );
    true
}

/// Every known session through `proxy` stays on its home, and an unknown id is served:
/// nothing fails.
pub async fn traffic(client: &reqwest::Client, proxy: &Proxy, own: &[(String, String)], tag: &str) {
    for (id, home) in own {
        let reply = get(client, &proxy.url("/"), Some(&format!("JSESSIONID={id}"))).await;
        assert_eq!(reply.status, 200, "{tag}: {}", proxy.log());
        assert_eq!(reply.backend(), home, "{tag}: its own session moved");
    }
    let unknown = get(
        client,
        &proxy.url("/"),
        Some(&format!("JSESSIONID=unknown-{tag}")),
    )
    .await;
    assert_eq!(unknown.status, 200, "{tag}: {}", proxy.log());
}

/// A store that cannot come up: the proxy says once that it is down at start (with `why` in
/// the line), shows it down, and serves — sessions it learns itself stay pinned, nothing
/// fails — through several of the store's probes (traffic for three probe intervals), and
/// still has said it only once.
pub async fn assert_serves_alone(proxy: &Proxy, why: &str) {
    let client = client();
    let said = eventually(Duration::from_secs(15), || {
        let log = proxy.log();
        async move { log.contains("down at start") }
    })
    .await;
    assert!(said, "the store says it is down:\n{}", proxy.log());
    wait_store(&client, proxy, false).await;
    let mut learned = Vec::new();
    for _ in 0..4 {
        learned.push(login(&client, proxy).await);
    }
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < 3 * sticky_proxy::affinity::store::service::PROBE_INTERVAL {
        round += 1;
        traffic(&client, proxy, &learned, &format!("alone-{round}")).await;
    }
    let log = proxy.log();
    assert_eq!(log.matches("down at start").count(), 1, "said once:\n{log}");
    assert!(log.contains(why), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(store_view(&client, proxy).await["up"], false);
}
