//! Backends added and removed while the proxy runs (HAProxy `add server` / `del server`, the
//! NGINX Plus API): `POST /api/pools/{pool}/backends` and `DELETE
//! /api/pools/{pool}/backends/{name}`, seen by real clients through the proxy — new sessions
//! reach an added backend and stay there, a removed one's sessions move with a new cookie, a
//! name that comes back gets its old cookies, the hash ring moves only the keys it must, bad
//! bodies are 4xx naming the field, and the state file carries the changes over a restart.

mod common;
use common::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::admin::{Place, ADMIN_TOKEN as TOKEN};

impl Place {
    /// Pool `web` of `backends` with the keyed cookie, an admin listener with the token, and
    /// (`state_file`) the state file; `affinity` replaces the cookie block when given.
    fn section(&self, backends: &[&TestBackend], state_file: bool, affinity: &str) -> String {
        let list: Vec<String> = backends.iter().map(|b| b.yaml()).collect();
        let state = if state_file {
            format!("  state_file: \"{}\"\n", self.state_file().display())
        } else {
            String::new()
        };
        let affinity = if affinity.is_empty() {
            KEYED_AFFINITY
        } else {
            affinity
        };
        format!(
            "sticky:\n{state}  listeners:\n    - addr: \"{{listen}}\"\n  admin: {{ addr: \"{{admin}}\", token_file: \"{}\" }}\n  hide_headers: [X-ServerName, X-Powered-By]\n  pools:\n    - name: web\n      backends: [{}]\n{affinity}",
            self.dir.path().join("token").display(),
            list.join(", "),
        )
    }
}

async fn start(section: &str) -> Proxy {
    let proxy = Proxy::start(section).await;
    common::admin::wait_for_admin(&proxy).await;
    proxy
}

/// `POST /api/pools/{pool}/backends` with `body` (and the token): status and body.
async fn add(proxy: &Proxy, pool: &str, body: &str) -> (u16, String) {
    let reply = client()
        .post(proxy.admin_url(&format!("/api/pools/{pool}/backends")))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (reply.status().as_u16(), reply.text().await.unwrap())
}

fn backend_body(b: &TestBackend) -> String {
    format!("{{\"name\": \"{}\", \"addr\": \"{}\"}}", b.name, b.addr)
}

/// `DELETE /api/pools/web/backends/{name}{query}` (with the token): status and body.
async fn remove(proxy: &Proxy, name: &str, query: &str) -> (u16, String) {
    let reply = client()
        .delete(proxy.admin_url(&format!("/api/pools/web/backends/{name}{query}")))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    (reply.status().as_u16(), reply.text().await.unwrap())
}

/// The backend names `/api/pools/web` lists, in order.
async fn listed(proxy: &Proxy) -> Vec<String> {
    let reply = get(&client(), &proxy.admin_url("/api/pools/web"), None).await;
    let pool: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    pool["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_added_through_the_api_takes_new_sessions_and_keeps_them() {
    let [b1, b2, b3] = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let place = Place::new();
    let proxy = start(&place.section(&[&b1, &b2], false, "")).await;
    let client = client();

    let (status, body) = add(&proxy, "web", &backend_body(&b3)).await;
    assert_eq!(status, 201, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["name"], "iis3");
    assert_eq!(view["state"], "active");
    assert_eq!(listed(&proxy).await, ["iis1", "iis2", "iis3"]);

    // New sessions are balanced over all three.
    let mut seen = HashSet::new();
    for _ in 0..12 {
        let reply = get(&client, &proxy.url("/"), None).await;
        assert_eq!(reply.status, 200);
        seen.insert(reply.backend().to_string());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    // A session that started on the new backend stays there, with no new cookie.
    let cookie = format!(
        "ARRAffinity={}",
        cookie_for(&client, &proxy, "/", "iis3").await
    );
    for _ in 0..8 {
        let reply = get(&client, &proxy.url("/"), Some(&cookie)).await;
        assert_eq!(reply.backend(), "iis3");
        assert!(reply.set_cookies().is_empty(), "{reply:?}");
    }
    // Its requests are counted under its name.
    let metrics = get(&client, &proxy.admin_url("/metrics"), None).await.body;
    assert!(
        metrics.contains("sticky_requests_total{backend=\"iis3\",outcome=\"sticky\",pool=\"web\"}"),
        "{metrics}"
    );
    assert!(
        proxy.log().contains("admin: backend iis3"),
        "{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backend_serves_nothing_and_its_sessions_move_with_a_new_cookie() {
    let [b1, b2, b3] = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let place = Place::new();
    let proxy = start(&place.section(&[&b1, &b2, &b3], false, "")).await;
    let client = client();
    let cookie = format!(
        "ARRAffinity={}",
        cookie_for(&client, &proxy, "/", "iis2").await
    );

    let (status, body) = remove(&proxy, "iis2", "").await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["removed"], "iis2");
    assert_eq!(listed(&proxy).await, ["iis1", "iis3"]);

    let hits = b2.hits();
    let moved = get(&client, &proxy.url("/"), Some(&cookie)).await;
    assert_eq!(moved.status, 200);
    assert_ne!(moved.backend(), "iis2");
    let new_cookie = moved.cookie("ARRAffinity").expect("a new cookie");
    for _ in 0..12 {
        assert_ne!(get(&client, &proxy.url("/"), None).await.backend(), "iis2");
    }
    // The new cookie pins its new backend.
    let again = get(
        &client,
        &proxy.url("/"),
        Some(&format!("ARRAffinity={new_cookie}")),
    )
    .await;
    assert_eq!(again.backend(), moved.backend());
    assert_eq!(b2.hits(), hits, "nothing reached the removed backend");

    // Removed already: 404; its state cannot be set either.
    assert_eq!(remove(&proxy, "iis2", "").await.0, 404);
    let state = client
        .post(proxy.admin_url("/api/pools/web/backends/iis2/state"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(r#"{"state": "active"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(state.status(), 404);
    // Its gauges are gone from /metrics.
    let metrics = get(&client, &proxy.admin_url("/metrics"), None).await.body;
    assert!(
        !metrics.contains("sticky_backend_healthy{backend=\"iis2\""),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_added_back_under_its_name_gets_its_old_sessions_again() {
    let [b1, b2] = TestBackend::start_each(["iis1", "iis2"]).await;
    let place = Place::new();
    let proxy = start(&place.section(&[&b1, &b2], false, "")).await;
    let client = client();
    let cookie = format!(
        "ARRAffinity={}",
        cookie_for(&client, &proxy, "/", "iis2").await
    );
    assert_eq!(remove(&proxy, "iis2", "").await.0, 200);
    assert_eq!(
        get(&client, &proxy.url("/"), Some(&cookie)).await.backend(),
        "iis1"
    );

    let (status, body) = add(&proxy, "web", &backend_body(&b2)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(listed(&proxy).await, ["iis1", "iis2"]);
    // The keyed value depends on the name: the old cookie pins to it again, unchanged.
    for _ in 0..5 {
        let reply = get(&client, &proxy.url("/"), Some(&cookie)).await;
        assert_eq!(reply.backend(), "iis2");
        assert!(reply.set_cookies().is_empty(), "{reply:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_on_the_hash_ring_move_only_to_an_added_backend_and_back_from_a_removed_one() {
    let [b1, b2, b3] = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let place = Place::new();
    let hash =
        "      affinity:\n        hash:\n          sources: [{ type: header, name: X-User }]\n";
    let proxy = start(&place.section(&[&b1, &b2], false, hash)).await;
    let client = client();
    let at = |user: String| {
        let client = client.clone();
        let url = proxy.url("/");
        async move {
            let reply = client.get(url).header("X-User", user).send().await.unwrap();
            into_reply(reply).await.backend().to_string()
        }
    };
    let users: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
    let mut before = HashMap::new();
    for u in &users {
        before.insert(u.clone(), at(u.clone()).await);
    }

    assert_eq!(add(&proxy, "web", &backend_body(&b3)).await.0, 201);
    let mut moved = 0;
    for u in &users {
        let now = at(u.clone()).await;
        if now != before[u] {
            assert_eq!(now, "iis3", "{u} moved only to the new backend");
            moved += 1;
        }
    }
    assert!(
        moved > 0 && moved < users.len(),
        "{moved} of {} moved",
        users.len()
    );

    // Removed again: every key is back where it was.
    assert_eq!(remove(&proxy, "iis3", "").await.0, 200);
    for u in &users {
        assert_eq!(at(u.clone()).await, before[u], "{u}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_to_change_backends_are_refused_with_a_reason_and_change_nothing() {
    let [b1, b2, b3] = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let place = Place::new();
    let proxy = start(&place.section(&[&b1, &b2], false, "")).await;
    let fresh = format!("\"addr\": \"{}\"", b3.addr);
    let cases = [
        ("not json".to_string(), 400, "bad body"),
        ("{\"name\": \"x\"}".to_string(), 400, "addr"),
        (
            format!("{{\"name\": \"x\", {fresh}, \"colour\": 1}}"),
            400,
            "unknown field",
        ),
        (
            "{\"name\": \"x\", \"addr\": \"nowhere\"}".to_string(),
            400,
            "backend.addr",
        ),
        (format!("{{\"name\": \"\", {fresh}}}"), 400, "backend.name"),
        (
            format!("{{\"name\": \"x\", {fresh}, \"weight\": 0}}"),
            400,
            "backend.weight",
        ),
        (
            format!("{{\"name\": \"x\", {fresh}, \"state\": \"gone\"}}"),
            400,
            "bad body",
        ),
        (
            format!("{{\"name\": \"IIS1\", {fresh}}}"),
            400,
            "backend.name: duplicate",
        ),
        (
            format!("{{\"name\": \"a/b\", {fresh}}}"),
            400,
            "backend.name",
        ),
        (
            format!("{{\"name\": \"caf\u{00e9}\", {fresh}}}"),
            400,
            "backend.name",
        ),
        (
            format!("{{\"name\": \"x\", \"addr\": \"{}\"}}", b1.addr),
            400,
            "backend.addr: duplicate",
        ),
    ];
    for (body, status, reason) in cases {
        let (got, text) = add(&proxy, "web", &body).await;
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(reason), "{body}: {text}");
    }
    let (got, text) = add(&proxy, "nope", &backend_body(&b3)).await;
    assert_eq!((got, text.contains("no pool")), (404, true), "{text}");
    let (got, _) = add(&proxy, "web", &"x".repeat(70 * 1024)).await;
    assert_eq!(got, 413);
    assert_eq!(remove(&proxy, "nope", "").await.0, 404);
    assert_eq!(remove(&proxy, "iis1", "?close_upgraded=maybe").await.0, 400);

    let client = client();
    let url = proxy.admin_url("/api/pools/web/backends");
    let no_token = client
        .post(&url)
        .body(backend_body(&b3))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let wrong = client
        .post(&url)
        .header("Authorization", "Bearer wrong")
        .body(backend_body(&b3))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let delete = client
        .delete(proxy.admin_url("/api/pools/web/backends/iis1"))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 401);
    let get_it = client.get(&url).send().await.unwrap();
    assert_eq!(get_it.status(), 405);
    assert_eq!(get_it.headers()["allow"], "POST");

    assert_eq!(listed(&proxy).await, ["iis1", "iis2"], "nothing changed");
    for _ in 0..6 {
        assert_ne!(get(&client, &proxy.url("/"), None).await.backend(), "iis3");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_added_and_removed_through_the_api_are_still_so_after_a_restart() {
    let [b1, b2, b3] = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let place = Place::new();
    let section = place.section(&[&b1, &b2], true, "");
    let mut old = start(&section).await;
    let client = client();
    assert_eq!(add(&old, "web", &backend_body(&b3)).await.0, 201);
    assert_eq!(remove(&old, "iis1", "").await.0, 200);
    let on3 = format!(
        "ARRAffinity={}",
        cookie_for(&client, &old, "/", "iis3").await
    );
    let written = eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(place.state_file()).unwrap_or_default();
        async move { text.contains("iis3") && text.contains("\"removed\": true") }
    })
    .await;
    assert!(written, "{:?}", std::fs::read_to_string(place.state_file()));

    let status = old.terminate(Duration::from_secs(10)).await;
    assert!(status.is_some(), "SIGTERM stops the proxy:\n{}", old.log());
    let listen = old.release_sockets().into_iter().next().unwrap();
    let new = Proxy::start_on(&section, listen).await;
    common::admin::wait_for_admin(&new).await;
    assert_eq!(listed(&new).await, ["iis2", "iis3"], "{}", new.log());
    let reply = get(&client, &new.url("/"), Some(&on3)).await;
    assert_eq!(reply.backend(), "iis3");
    assert!(reply.set_cookies().is_empty(), "{reply:?}");
    for _ in 0..6 {
        assert_ne!(get(&client, &new.url("/"), None).await.backend(), "iis1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_put_at_the_addresses_of_removed_ones_come_back_after_a_restart() {
    let [b1, b2, b3] = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let place = Place::new();
    let section = place.section(&[&b1, &b2, &b3], true, "");
    let mut old = start(&section).await;
    // `app-b` takes iis2's address; iis1 moves to iis3's. In the file's (alphabetical) order
    // each addition comes before the removal that frees its address.
    assert_eq!(remove(&old, "iis2", "").await.0, 200);
    let app_b = format!("{{\"name\": \"app-b\", \"addr\": \"{}\"}}", b2.addr);
    assert_eq!(add(&old, "web", &app_b).await.0, 201);
    assert_eq!(remove(&old, "iis3", "").await.0, 200);
    assert_eq!(remove(&old, "iis1", "").await.0, 200);
    let moved = format!("{{\"name\": \"iis1\", \"addr\": \"{}\"}}", b3.addr);
    assert_eq!(add(&old, "web", &moved).await.0, 201);
    assert_eq!(listed(&old).await, ["iis1", "app-b"]);
    let written = eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(place.state_file()).unwrap_or_default();
        let b3 = b3.addr.to_string();
        async move { text.contains("app-b") && text.contains(&b3) && text.contains("removed") }
    })
    .await;
    assert!(written, "{:?}", std::fs::read_to_string(place.state_file()));

    let status = old.terminate(Duration::from_secs(10)).await;
    assert!(status.is_some(), "SIGTERM stops the proxy:\n{}", old.log());
    let listen = old.release_sockets().into_iter().next().unwrap();
    let new = Proxy::start_on(&section, listen).await;
    common::admin::wait_for_admin(&new).await;
    assert_eq!(listed(&new).await, ["iis1", "app-b"], "{}", new.log());
    let client = client();
    let hits = b1.hits();
    let mut reached = HashSet::new();
    for _ in 0..8 {
        reached.insert(
            get(&client, &new.url("/"), None)
                .await
                .backend()
                .to_string(),
        );
    }
    // (The demo servers answer with their own names: iis2's and iis3's addresses serve.)
    assert_eq!(
        reached,
        HashSet::from(["iis2".to_string(), "iis3".to_string()])
    );
    assert_eq!(b1.hits(), hits, "nothing reaches the old address of iis1");
}
