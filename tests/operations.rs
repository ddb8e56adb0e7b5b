//! Operations: node states, the admin API and its security, Prometheus metrics, the decision
//! access log, readiness during shutdown.

mod common;
use common::*;
use std::time::Duration;

const TOKEN: &str = "admin-token-0123456789abcdef";

/// A pool of `backends` with the keyed cookie, the learned JSESSIONID table, an admin listener
/// whose token comes from the environment variable the test sets, and fast health checks.
fn ops_pool(backends: &[&TestBackend], extra_top: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| b.yaml()).collect();
    format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  admin: {{ addr: \"{{admin}}\", token_file: \"{{token_file}}\" }}\n{extra_top}  pools:\n    - name: web\n      backends: [{}]\n      health_check: {{ type: http, path: /healthz, interval_ms: 100, fall: 1, rise: 1 }}\n      affinity:\n        cookie: {{ secret: test-secret-0123456789abcdef }}\n        learn: {{ presets: [j2ee] }}\n",
        list.join(", ")
    )
}

async fn start(backends: &[&TestBackend], extra_top: &str) -> Proxy {
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let section =
        ops_pool(backends, extra_top).replace("{token_file}", token_file.to_str().unwrap());
    let proxy = Proxy::start(&section).await;
    let client = client();
    let up = eventually(Duration::from_secs(5), || async {
        client.get(proxy.admin_url("/healthz")).send().await.is_ok()
    })
    .await;
    assert!(up, "admin listener up");
    // The token file is read at start-up only.
    drop(token_dir);
    proxy
}

async fn set_state(
    proxy: &Proxy,
    backend: &str,
    state: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut request = client()
        .post(proxy.admin_url(&format!("/api/pools/web/backends/{backend}/state")))
        .body(format!("{{\"state\": \"{state}\"}}"));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let reply = into_reply(request.send().await.unwrap()).await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn draining_backend_keeps_existing_sessions_but_gets_no_new_ones() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = start(&[&b1, &b2], "").await;
    let client = client();
    let on_iis1 = cookie_for(&client, &proxy, "/", "iis1").await;
    let jsession = loop {
        let reply = get(&client, &proxy.url("/login"), None).await;
        if reply.backend() == "iis1" {
            break reply.cookie("JSESSIONID").unwrap();
        }
    };
    let (status, body) = set_state(&proxy, "iis1", "draining", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"state\": \"draining\""), "{body}");
    // The next request already sees it.
    for _ in 0..6 {
        let pinned = get(
            &client,
            &proxy.url("/"),
            Some(&format!("ARRAffinity={on_iis1}")),
        )
        .await;
        assert_eq!(pinned.backend(), "iis1", "cookie sessions stay");
        assert!(pinned.set_cookies().is_empty());
        let learned = get(
            &client,
            &proxy.url("/"),
            Some(&format!("JSESSIONID={jsession}")),
        )
        .await;
        assert_eq!(learned.backend(), "iis1", "learned sessions stay");
        let fresh = get(&client, &proxy.url("/"), None).await;
        assert_eq!(
            fresh.backend(),
            "iis2",
            "new sessions never go to a draining backend"
        );
    }
    // The operator sees pinned traffic still arriving at the draining node.
    let pools = get(&client, &proxy.admin_url("/api/pools/web"), None).await;
    let view: serde_json::Value = serde_json::from_str(&pools.body).unwrap();
    let iis1 = &view["backends"][0];
    assert_eq!(iis1["state"], "draining");
    assert!(
        iis1["pinned_requests_last_minute"].as_u64().unwrap() >= 12,
        "{iis1}"
    );
    assert!(iis1["last_used_unix_ms"].as_u64().is_some());
    assert_eq!(iis1["table_entries"], 1);
    // Back to active: it takes new sessions again.
    assert_eq!(
        set_state(&proxy, "iis1", "active", Some(TOKEN)).await.0,
        200
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(
            get(&client, &proxy.url("/"), None)
                .await
                .backend()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn a_draining_hash_home_keeps_its_keys_but_new_keys_avoid_it() {
    let (b1, b2, b3) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
        TestBackend::start("iis3").await,
    );
    // No health check here: its probes would count as hits on iis1.
    let section = ops_pool(&[&b1, &b2, &b3], "")
        .replace(
            "        learn: { presets: [j2ee] }\n",
            "        hash: { sources: [{ type: header, name: X-Tenant }] }\n",
        )
        .replace(
            "      health_check: { type: http, path: /healthz, interval_ms: 100, fall: 1, rise: 1 }\n",
            "",
        );
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let proxy = Proxy::start(&section.replace("{token_file}", token_file.to_str().unwrap())).await;
    let client = client();
    let tenant = |t: String| {
        let (client, url) = (client.clone(), proxy.url("/"));
        async move { into_reply(client.get(url).header("X-Tenant", t).send().await.unwrap()).await }
    };
    let mut homes = std::collections::HashMap::new();
    for t in 0..30 {
        homes.insert(t, tenant(format!("t{t}")).await.backend().to_string());
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            client.get(proxy.admin_url("/healthz")).send().await.is_ok()
        })
        .await
    );
    assert_eq!(
        set_state(&proxy, "iis1", "draining", Some(TOKEN)).await.0,
        200
    );
    for t in 0..30 {
        assert_eq!(
            tenant(format!("t{t}")).await.backend(),
            homes[&t],
            "hash homes keep their keys"
        );
    }
    // Requests without a key are new sessions: none of them reaches the draining node.
    let before = b1.hits();
    for _ in 0..6 {
        get(&client, &proxy.url("/"), None).await;
    }
    assert_eq!(
        b1.hits(),
        before,
        "requests without a key are balanced away from iis1"
    );
}

#[tokio::test]
async fn a_disabled_backend_receives_nothing_and_is_not_health_checked() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = start(&[&b1, &b2], "").await;
    let client = client();
    let on_iis1 = cookie_for(&client, &proxy, "/", "iis1").await;
    assert_eq!(
        set_state(&proxy, "iis1", "disabled", Some(TOKEN)).await.0,
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = b1.hits();
    for _ in 0..5 {
        let reply = get(
            &client,
            &proxy.url("/"),
            Some(&format!("ARRAffinity={on_iis1}")),
        )
        .await;
        assert_eq!(reply.backend(), "iis2", "pinned sessions move (rebalance)");
        assert!(reply.cookie("ARRAffinity").is_some(), "with a new cookie");
        assert_eq!(get(&client, &proxy.url("/"), None).await.backend(), "iis2");
    }
    // Health checks run every 100 ms: once two more have reached iis2, a round ran since,
    // and none of them reached the disabled backend.
    let checked = b2.hits();
    let rounds = eventually(Duration::from_secs(10), || {
        let hits = b2.hits();
        async move { hits >= checked + 2 }
    })
    .await;
    assert!(rounds, "the health checks run");
    assert_eq!(
        b1.hits(),
        before,
        "no requests and no health checks for a disabled backend"
    );
}

#[tokio::test]
async fn a_backend_disabled_in_the_config_starts_disabled() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let section = one_pool(&[&b1, &b2], KEYED_AFFINITY).replace(
        &b1.yaml(),
        &format!("{{ name: iis1, addr: \"{}\", state: disabled }}", b1.addr),
    );
    let proxy = Proxy::start(&section).await;
    let client = client();
    for _ in 0..6 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.backend(), "iis2");
    }
    assert_eq!(b1.hits(), 0);
}

#[tokio::test]
async fn mutations_need_the_right_bearer_token() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = start(&[&b1, &b2], "").await;
    assert_eq!(set_state(&proxy, "iis1", "draining", None).await.0, 401);
    assert_eq!(
        set_state(&proxy, "iis1", "draining", Some("wrong-token-0123456789"))
            .await
            .0,
        403
    );
    let view = get(&client(), &proxy.admin_url("/api/pools/web"), None).await;
    assert!(
        view.body.contains("\"state\": \"active\""),
        "nothing changed: {}",
        view.body
    );
    assert_eq!(
        set_state(&proxy, "iis1", "draining", Some(TOKEN)).await.0,
        200
    );
}

#[tokio::test]
async fn without_a_configured_token_mutations_are_off() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let section = one_pool(&[&b1, &b2], KEYED_AFFINITY)
        .replace("  pools:", "  admin: { addr: \"{admin}\" }\n  pools:");
    let proxy = Proxy::start(&section).await;
    let client = client();
    assert!(
        eventually(Duration::from_secs(5), || async {
            client.get(proxy.admin_url("/healthz")).send().await.is_ok()
        })
        .await
    );
    let (status, body) = set_state(&proxy, "iis1", "draining", Some(TOKEN)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("no admin token is configured"));
    assert_eq!(
        get(&client, &proxy.admin_url("/api/pools"), None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn bad_admin_requests_get_a_clear_4xx_and_change_nothing() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = start(&[&b1, &b2], "").await;
    let client = client();
    let post = |path: &str, body: Vec<u8>| {
        let (client, url) = (client.clone(), proxy.admin_url(path));
        async move {
            into_reply(
                client
                    .post(url)
                    .header("Authorization", format!("Bearer {TOKEN}"))
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
            .status
        }
    };
    let state = "/api/pools/web/backends/iis1/state";
    assert_eq!(
        post(
            "/api/pools/web/backends/nope/state",
            br#"{"state":"draining"}"#.to_vec()
        )
        .await,
        404
    );
    assert_eq!(
        post(
            "/api/pools/nope/backends/iis1/state",
            br#"{"state":"draining"}"#.to_vec()
        )
        .await,
        404
    );
    assert_eq!(post(state, br#"{"state":"sleeping"}"#.to_vec()).await, 400);
    assert_eq!(post(state, br#"{"state":"draining""#.to_vec()).await, 400);
    assert_eq!(
        post(state, br#"{"state":"draining","extra":1}"#.to_vec()).await,
        400
    );
    assert_eq!(post(state, vec![b'x'; 200_000]).await, 413);
    assert_eq!(
        post(
            "/api/pools/web/tables/nope/delete",
            br#"{"id":"a"}"#.to_vec()
        )
        .await,
        404
    );
    assert_eq!(
        post(
            "/api/pools/web/tables/learn/delete",
            br#"{"id":"a","ip":"1.2.3.4"}"#.to_vec()
        )
        .await,
        400
    );
    assert_eq!(
        get(&client, &proxy.admin_url(state), None).await.status,
        405,
        "mutations are POST only"
    );
    assert_eq!(
        get(&client, &proxy.admin_url("/nope"), None).await.status,
        404
    );
    let view = get(&client, &proxy.admin_url("/api/pools/web"), None).await;
    assert!(
        !view.body.contains("draining"),
        "nothing changed: {}",
        view.body
    );
}

#[tokio::test]
async fn session_table_entries_can_be_listed_looked_up_and_deleted() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = start(&[&b1, &b2], "").await;
    let client = client();
    let login = get(&client, &proxy.url("/login"), None).await;
    let id = login.cookie("JSESSIONID").unwrap();
    let entries = get(
        &client,
        &proxy.admin_url("/api/pools/web/tables/learn/entries"),
        None,
    )
    .await;
    assert_eq!(entries.status, 200);
    assert!(
        !entries.body.contains(&id),
        "ids are never shown, only their hashes"
    );
    let lookup = get(
        &client,
        &proxy.admin_url(&format!("/api/pools/web/tables/learn/lookup?id={id}")),
        None,
    )
    .await;
    assert_eq!(lookup.status, 200, "{}", lookup.body);
    assert!(
        lookup
            .body
            .contains(&format!("\"backend\": \"{}\"", login.backend())),
        "{}",
        lookup.body
    );
    let deleted = into_reply(
        client
            .post(proxy.admin_url("/api/pools/web/tables/learn/delete"))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .body(format!("{{\"id\": \"{id}\"}}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(deleted.status, 200);
    assert!(deleted.body.contains("\"deleted\": 1"), "{}", deleted.body);
    let gone = get(
        &client,
        &proxy.admin_url(&format!("/api/pools/web/tables/learn/lookup?id={id}")),
        None,
    )
    .await;
    assert_eq!(gone.status, 404);

    // An id with `+`, `=` and `&` (recorded where it was first served) is looked up
    // percent-encoded.
    let odd = "ab+c=d&e";
    let served = get(&client, &proxy.url("/"), Some(&format!("JSESSIONID={odd}"))).await;
    let found = get(
        &client,
        &proxy.admin_url("/api/pools/web/tables/learn/lookup?id=ab%2Bc%3Dd%26e"),
        None,
    )
    .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert!(
        found
            .body
            .contains(&format!("\"backend\": \"{}\"", served.backend())),
        "{}",
        found.body
    );
}

#[tokio::test]
async fn metrics_count_a_scripted_sequence_of_requests() {
    let (mut b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = start(&[&b1, &b2], "").await;
    let client = client();
    // New sessions until one lands on iis1, counted.
    let (mut made, mut on_iis1) = (0u64, None);
    while on_iis1.is_none() {
        let reply = get(&client, &proxy.url("/"), None).await;
        made += 1;
        on_iis1 = (reply.backend() == "iis1").then(|| reply.cookie("ARRAffinity").unwrap());
    }
    let on_iis1 = on_iis1.unwrap();
    let scrape = |client: reqwest::Client| {
        let url = proxy.admin_url("/metrics");
        async move { get(&client, &url, None).await.body }
    };
    let count = |text: &str, series: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // Metrics are counted when a request's logging phase ends, just after its response: wait
    // until the requests made so far all show (a hang guard of 10 s, no assumption on speed).
    let total = |text: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with("sticky_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let mut before = scrape(client.clone()).await;
    for _ in 0..200 {
        if total(&before) == made {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        before = scrape(client.clone()).await;
    }
    assert_eq!(total(&before), made, "{before}");
    for _ in 0..3 {
        get(
            &client,
            &proxy.url("/"),
            Some(&format!("ARRAffinity={on_iis1}")),
        )
        .await;
    }
    get(
        &client,
        &proxy.url("/disable-affinity"),
        Some(&format!("ARRAffinity={on_iis1}")),
    )
    .await;
    get(&client, &proxy.url("/"), Some("ARRAffinity=forged")).await;
    b1.stop().await;
    get(
        &client,
        &proxy.url("/"),
        Some(&format!("ARRAffinity={on_iis1}")),
    )
    .await;
    // Requests are counted in their logging phase, just after the response: wait until the
    // last one (the rebalanced request) shows.
    let rebalanced = r#"sticky_requests_total{backend="iis2",outcome="rebalanced",pool="web"}"#;
    let mut after = scrape(client.clone()).await;
    let idle = r#"sticky_backend_in_flight{backend="iis2",pool="web"} 0"#;
    for _ in 0..200 {
        // (The in-flight gauge is released in the same phase; wait for both.)
        if count(&after, rebalanced) > count(&before, rebalanced) && after.contains(idle) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = scrape(client.clone()).await;
    }
    let delta = |series: &str| count(&after, series) - count(&before, series);
    assert_eq!(
        delta(r#"sticky_requests_total{backend="iis1",outcome="sticky",pool="web"}"#),
        3,
        "{after}"
    );
    assert_eq!(
        delta(r#"sticky_requests_total{backend="iis1",outcome="opted_out",pool="web"}"#),
        1,
        "{after}"
    );
    assert_eq!(
        delta(r#"sticky_requests_total{backend="iis2",outcome="rebalanced",pool="web"}"#),
        1,
        "{after}\n{}",
        proxy.log()
    );
    assert_eq!(
        delta(r#"sticky_cookie_verification_failures_total{pool="web"}"#),
        1
    );
    let new_requests: u64 = ["iis1", "iis2"]
        .iter()
        .map(|b| {
            delta(&format!(
                "sticky_requests_total{{backend=\"{b}\",outcome=\"new\",pool=\"web\"}}"
            ))
        })
        .sum();
    assert_eq!(new_requests, 1, "the forged cookie started one new session");
    for series in [
        r#"sticky_backend_in_flight{backend="iis2",pool="web"} 0"#,
        r#"sticky_backend_state{backend="iis1",pool="web",state="active"} 1"#,
        r#"sticky_session_table_capacity{pool="web",table="learn"} 100000"#,
        r#"sticky_upstream_response_seconds_count{backend="iis1",pool="web"}"#,
    ] {
        assert!(after.contains(series), "missing {series}");
    }
    let down = eventually(Duration::from_secs(3), || {
        let client = client.clone();
        let url = proxy.admin_url("/metrics");
        async move {
            get(&client, &url, None)
                .await
                .body
                .contains(r#"sticky_backend_healthy{backend="iis1",pool="web"} 0"#)
        }
    })
    .await;
    assert!(down, "health gauge follows the checks");
}

#[tokio::test]
async fn the_access_log_names_favoured_required_and_actual_backends() {
    let (mut b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    // No health check: the dead backend is found by the failed connect, then the retry.
    let section = one_pool(&[&b1, &b2], KEYED_AFFINITY)
        .replace("  pools:", "  access_log: { format: json }\n  pools:");
    let proxy = Proxy::start(&section).await;
    let client = client();
    let on_iis1 = cookie_for(&client, &proxy, "/", "iis1").await;
    get(
        &client,
        &proxy.url("/log-sticky"),
        Some(&format!("ARRAffinity={on_iis1}")),
    )
    .await;
    b1.stop().await;
    get(
        &client,
        &proxy.url("/log-moved"),
        Some(&format!("ARRAffinity={on_iis1}")),
    )
    .await;
    get(&client, &proxy.url("/log-new"), None).await;
    let line = |path: &str| {
        let log = proxy.log();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains(&format!("\"path\":\"{path}\"")))
            .unwrap_or_else(|| panic!("no line for {path}:\n{log}"))
            .to_string();
        let json = &line[line.find('{').unwrap()..];
        serde_json::from_str::<serde_json::Value>(json).unwrap()
    };
    assert!(
        eventually(Duration::from_secs(3), || async {
            proxy.log().contains("\"path\":\"/log-new\"")
        })
        .await
    );
    let sticky = line("/log-sticky");
    assert_eq!(
        (
            sticky["favoured"].as_str(),
            sticky["required"].as_str(),
            sticky["actual"].as_str(),
            sticky["outcome"].as_str()
        ),
        (Some("iis1"), Some("iis1"), Some("iis1"), Some("sticky"))
    );
    assert_eq!(sticky["status"], 200);
    assert_eq!(sticky["method"], "GET");
    assert!(sticky["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let moved = line("/log-moved");
    assert_eq!(
        (
            moved["favoured"].as_str(),
            moved["required"].as_str(),
            moved["actual"].as_str(),
            moved["outcome"].as_str()
        ),
        (Some("iis1"), Some("iis1"), Some("iis2"), Some("rebalanced")),
        "{moved}"
    );
    let new = line("/log-new");
    assert_eq!(
        (
            new["required"].as_str(),
            new["actual"].as_str(),
            new["outcome"].as_str()
        ),
        (Some("-"), Some("iis2"), Some("new"))
    );
    assert!(new["duration_ms"].as_u64().is_some());
}
