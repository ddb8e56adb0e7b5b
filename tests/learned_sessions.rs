//! Learned sessions and IP-based persistence, end to end: the proxy follows the ids the
//! application hands out, in a bounded table with idle expiry.

mod common;
use common::*;
use std::time::Duration;

fn learn_pool(backends: &[&TestBackend], learn: &str) -> String {
    one_pool(
        backends,
        &format!("      affinity:\n        learn:\n{learn}"),
    )
}

const J2EE: &str = "          presets: [j2ee]\n";

/// The outcome the access log reports for the last request to `path` (unique per request).
async fn outcome(proxy: &Proxy, path: &str) -> String {
    let mut found = None;
    eventually(Duration::from_secs(3), || {
        found = proxy.outcome_of(path);
        let done = found.is_some();
        async move { done }
    })
    .await;
    found.unwrap_or_else(|| panic!("no access line for {path}:\n{}", proxy.log()))
}

/// Log in through the proxy; returns (JSESSIONID value, backend).
async fn login(client: &reqwest::Client, proxy: &Proxy) -> (String, String) {
    let reply = get(client, &proxy.url("/login"), None).await;
    let id = reply
        .cookie("JSESSIONID")
        .expect("the backend hands out JSESSIONID");
    assert!(
        reply.cookie("ARRAffinity").is_none(),
        "learn mode inserts no cookie of its own"
    );
    (id, reply.backend().to_string())
}

#[tokio::test]
async fn a_session_learned_from_set_cookie_keeps_its_backend_by_cookie_and_by_url_parameter() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&learn_pool(&[&b1, &b2], J2EE)).await;
    let client = client();
    let (id, home) = login(&client, &proxy).await;
    for i in 0..10 {
        let by_cookie = get(
            &client,
            &proxy.url(&format!("/cart/{i}")),
            Some(&format!("JSESSIONID={id}")),
        )
        .await;
        assert_eq!(by_cookie.backend(), home);
        let by_url = get(
            &client,
            &proxy.url(&format!("/cart/{i};jsessionid={id}?x=1")),
            None,
        )
        .await;
        assert_eq!(by_url.backend(), home);
    }
    assert_eq!(outcome(&proxy, "/cart/9").await, "sticky");
    // Requests without an id, or with ids nobody issued, are spread over the pool.
    let mut spread = std::collections::HashSet::new();
    for i in 0..6 {
        let reply = get(
            &client,
            &proxy.url("/"),
            Some(&format!("JSESSIONID=unknown-{i}")),
        )
        .await;
        spread.insert(reply.backend().to_string());
    }
    assert_eq!(spread.len(), 2);
}

#[tokio::test]
async fn other_ids_spread_while_each_stays_on_its_own_backend() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&learn_pool(&[&b1, &b2], J2EE)).await;
    let client = client();
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(login(&client, &proxy).await);
    }
    let homes: std::collections::HashSet<_> = sessions.iter().map(|(_, h)| h.clone()).collect();
    assert_eq!(homes.len(), 2, "logins are balanced");
    for _ in 0..3 {
        for (id, home) in &sessions {
            let reply = get(
                &client,
                &proxy.url("/"),
                Some(&format!("a=1; JSESSIONID={id}")),
            )
            .await;
            assert_eq!(&reply.backend(), home);
        }
    }
}

#[tokio::test]
async fn clearing_the_session_cookie_ends_the_pinning() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&learn_pool(&[&b1, &b2], J2EE)).await;
    let client = client();
    let (id, _) = login(&client, &proxy).await;
    let cookie = format!("JSESSIONID={id}");
    get(&client, &proxy.url("/before-logout"), Some(&cookie)).await;
    assert_eq!(outcome(&proxy, "/before-logout").await, "sticky");
    let logout = get(&client, &proxy.url("/logout"), Some(&cookie)).await;
    assert!(logout.set_cookies().iter().any(|l| l.contains("Max-Age=0")));
    get(&client, &proxy.url("/after-logout"), Some(&cookie)).await;
    assert_eq!(
        outcome(&proxy, "/after-logout").await,
        "new",
        "the entry is gone"
    );
}

#[tokio::test]
async fn at_capacity_the_least_recently_used_session_is_evicted_first() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&learn_pool(
        &[&b1, &b2],
        "          cookies: [JSESSIONID]\n          table: { capacity: 2 }\n",
    ))
    .await;
    let client = client();
    let (a, _) = login(&client, &proxy).await;
    let (b, _) = login(&client, &proxy).await;
    // Use A again: B is now the least recently used.
    get(
        &client,
        &proxy.url("/touch-a"),
        Some(&format!("JSESSIONID={a}")),
    )
    .await;
    assert_eq!(outcome(&proxy, "/touch-a").await, "sticky");
    let (_c, _) = login(&client, &proxy).await;
    // (A first: looking B up re-records it, which would push A out in a 2-entry table.)
    get(
        &client,
        &proxy.url("/check-a"),
        Some(&format!("JSESSIONID={a}")),
    )
    .await;
    assert_eq!(outcome(&proxy, "/check-a").await, "sticky", "A survived");
    get(
        &client,
        &proxy.url("/check-b"),
        Some(&format!("JSESSIONID={b}")),
    )
    .await;
    assert_eq!(outcome(&proxy, "/check-b").await, "new", "B was evicted");
}

#[tokio::test]
async fn an_entry_past_its_idle_timeout_is_gone_and_use_keeps_one_alive() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&learn_pool(
        &[&b1, &b2],
        "          presets: [aspnet]\n          table: { idle_timeout_seconds: 2 }\n",
    ))
    .await;
    let client = client();
    let idle = "ASP.NET_SessionId=idle-one";
    let busy = "ASP.NET_SessionId=busy-one";
    // Unknown ids are recorded where they are served.
    get(&client, &proxy.url("/idle-0"), Some(idle)).await;
    get(&client, &proxy.url("/busy-0"), Some(busy)).await;
    // Used every 300 ms against a 2 s timeout: a request may take 1.7 s on a slow machine.
    for i in 1..=8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        get(&client, &proxy.url(&format!("/busy-{i}")), Some(busy)).await;
        assert_eq!(outcome(&proxy, &format!("/busy-{i}")).await, "sticky");
    }
    get(&client, &proxy.url("/idle-1"), Some(idle)).await;
    assert_eq!(
        outcome(&proxy, "/idle-1").await,
        "new",
        "idle for at least 2.4 s with a 2 s timeout"
    );
}

#[tokio::test]
async fn a_session_whose_backend_is_down_moves_and_the_table_learns_the_new_backend() {
    let (mut b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&learn_pool(&[&b1, &b2], J2EE)).await;
    let client = client();
    let (id, home) = loop {
        let (id, home) = login(&client, &proxy).await;
        if home == "iis1" {
            break (id, home);
        }
    };
    assert_eq!(home, "iis1");
    b1.stop().await;
    let cookie = format!("JSESSIONID={id}");
    let moved = get(&client, &proxy.url("/moved"), Some(&cookie)).await;
    assert_eq!(moved.status, 200);
    assert_eq!(moved.backend(), "iis2");
    assert_eq!(outcome(&proxy, "/moved").await, "rebalanced");
    b1.restart().await;
    for i in 0..4 {
        let path = format!("/after-{i}");
        assert_eq!(
            get(&client, &proxy.url(&path), Some(&cookie))
                .await
                .backend(),
            "iis2"
        );
        assert_eq!(
            outcome(&proxy, &path).await,
            "sticky",
            "learned the new backend"
        );
    }
}

#[tokio::test]
async fn ip_persistence_pins_each_client_to_its_first_backend_until_the_entry_expires() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let section = one_pool(
        &[&b1, &b2],
        "      affinity:\n        client_ip_table: { table: { idle_timeout_seconds: 1 } }\n",
    )
    .replace("  pools:", "  trusted_proxies: [127.0.0.1]\n  pools:");
    let proxy = Proxy::start(&section).await;
    let client = client();
    let from = |ip: &str, path: &str| {
        let (client, url, ip) = (client.clone(), proxy.url(path), ip.to_string());
        async move {
            into_reply(
                client
                    .get(url)
                    .header("X-Forwarded-For", ip)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let mut homes = std::collections::HashMap::new();
    for ip in [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
    ] {
        homes.insert(ip, from(ip, "/").await.backend().to_string());
    }
    let distinct: std::collections::HashSet<_> = homes.values().collect();
    assert_eq!(distinct.len(), 2, "first requests are balanced: {homes:?}");
    for _ in 0..3 {
        for (ip, home) in &homes {
            assert_eq!(&from(ip, "/").await.backend(), home);
        }
    }
    from("198.51.100.1", "/ip-before").await;
    assert_eq!(outcome(&proxy, "/ip-before").await, "sticky");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    from("198.51.100.1", "/ip-after").await;
    assert_eq!(
        outcome(&proxy, "/ip-after").await,
        "new",
        "the entry expired"
    );
    assert!(get(&client, &proxy.url("/"), None)
        .await
        .set_cookies()
        .is_empty());
}

#[tokio::test]
async fn odd_session_ids_are_followed_or_ignored_without_error() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&learn_pool(&[&b1, &b2], J2EE)).await;
    let ids: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        vec![b'z'; 8192],
        b"a;b".to_vec(),
        b"a=b=c".to_vec(),
        b"\"quoted\"".to_vec(),
        b"caf\xc3\xa9\xff".to_vec(),
    ];
    for (i, id) in ids.iter().enumerate() {
        for _ in 0..3 {
            let request = [
                format!(
                    "GET /odd-{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nCookie: JSESSIONID="
                )
                .into_bytes(),
                id.clone(),
                b"\r\n\r\n".to_vec(),
            ]
            .concat();
            let response = raw_request(proxy.addr, &request).await;
            assert_eq!(
                raw_status(&response),
                200,
                "id {:?}",
                String::from_utf8_lossy(&id[..id.len().min(20)])
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unique_ids_keeps_the_table_and_the_proxy_memory_bounded() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&learn_pool(
        &[&b1, &b2],
        "          cookies: [JSESSIONID]\n          table: { capacity: 1000 }\n",
    ))
    .await;
    let client = client();
    let (first, home) = login(&client, &proxy).await;
    // Warm up connection pools and allocator arenas before measuring.
    for i in 0..200 {
        get(
            &client,
            &proxy.url("/"),
            Some(&format!("JSESSIONID=warm-{i}")),
        )
        .await;
    }
    let before = proxy.rss_kib();
    let big = "x".repeat(8000);
    for chunk in 0..40 {
        let mut tasks = Vec::new();
        for j in 0..50 {
            let (client, url) = (client.clone(), proxy.url("/"));
            let cookie = format!("JSESSIONID={big}-{chunk}-{j}");
            tasks.push(tokio::spawn(async move {
                get(&client, &url, Some(&cookie)).await.status
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
    }
    let after = proxy.rss_kib();
    assert!(
        after.saturating_sub(before) < 16 * 1024,
        "2000 unique 8 KB ids grew the proxy by {} KiB",
        after.saturating_sub(before)
    );
    // The first session was pushed out by 2000 newer ids in a 1000-entry table.
    let reply = get(
        &client,
        &proxy.url("/first-again"),
        Some(&format!("JSESSIONID={first}")),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        outcome(&proxy, "/first-again").await,
        "new",
        "evicted (home was {home})"
    );
}
