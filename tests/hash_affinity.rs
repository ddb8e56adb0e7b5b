//! Rule-based affinity: hash keys from the request onto the consistent ring, end to end.

mod common;
use common::*;
use std::collections::HashMap;
use std::time::Duration;

async fn backends(n: usize) -> Vec<TestBackend> {
    let mut list = Vec::new();
    for i in 1..=n {
        list.push(TestBackend::start(&format!("iis{i}")).await);
    }
    list
}

/// Resolves once `n` more requests than now have reached the backend called `name` (slow ones
/// sent meanwhile are then in flight there): polled, with a hang guard, no assumption on speed.
fn in_flight_at(
    backends: &[TestBackend],
    name: &str,
    n: usize,
) -> impl std::future::Future<Output = ()> {
    let backend = backends.iter().find(|b| b.name == name).unwrap();
    let (hits, target) = (backend.hits.clone(), backend.hits() + n);
    async move {
        let reached = eventually(Duration::from_secs(30), || {
            let now = hits.load(std::sync::atomic::Ordering::Relaxed);
            async move { now >= target }
        })
        .await;
        assert!(reached, "{n} slow requests reached their backend");
    }
}

/// A pool of `backends` with these hash `sources` (YAML flow list items) and extra pool lines.
fn hash_pool(backends: &[&TestBackend], sources: &str, extra_affinity: &str) -> String {
    one_pool(
        backends,
        &format!(
            "      affinity:\n        hash:\n          sources: [{sources}]\n{extra_affinity}"
        ),
    )
}

const CUSERID: &str = "{ type: cookie, name: CUserID }";

/// Map each key (sent as `CUserID=<key>`) to the backend that answers it, 16 requests at a time.
async fn map_keys(proxy: &Proxy, keys: &[String]) -> HashMap<String, String> {
    let client = client();
    let mut out = HashMap::new();
    for chunk in keys.chunks(16) {
        let mut tasks = Vec::new();
        for key in chunk {
            let (client, url, key) = (client.clone(), proxy.url("/"), key.clone());
            tasks.push(tokio::spawn(async move {
                let reply = get(&client, &url, Some(&format!("CUserID={key}"))).await;
                assert_eq!(reply.status, 200);
                (key, reply.backend().to_string())
            }));
        }
        for task in tasks {
            let (key, backend) = task.await.unwrap();
            out.insert(key, backend);
        }
    }
    out
}

#[tokio::test]
async fn an_sdk_client_with_a_fixed_cuserid_always_reaches_one_backend_and_never_gets_a_cookie() {
    let b = backends(3).await;
    let proxy = Proxy::start(&hash_pool(&[&b[0], &b[1], &b[2]], CUSERID, "")).await;
    let client = client();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..100 {
        let reply = get(
            &client,
            &proxy.url("/api/call"),
            Some("CUserID=sdk-client-42"),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.set_cookies().is_empty(),
            "pure hash mode inserts no cookie"
        );
        seen.insert(reply.backend().to_string());
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    // Without the key the request is balanced normally, still without a cookie.
    let mut spread = std::collections::HashSet::new();
    for _ in 0..6 {
        let reply = get(&client, &proxy.url("/"), None).await;
        assert!(reply.set_cookies().is_empty());
        spread.insert(reply.backend().to_string());
    }
    assert_eq!(spread.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keys_spread_evenly_over_three_equal_backends() {
    let b = backends(3).await;
    let proxy = Proxy::start(&hash_pool(&[&b[0], &b[1], &b[2]], CUSERID, "")).await;
    let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let mapping = map_keys(&proxy, &keys).await;
    let mut shares: HashMap<&str, usize> = HashMap::new();
    for backend in mapping.values() {
        *shares.entry(backend).or_default() += 1;
    }
    let (max, min) = (
        *shares.values().max().unwrap(),
        *shares.values().min().unwrap(),
    );
    assert_eq!(shares.len(), 3);
    // Pingora's Ketama ring places backends by address, and test backends get random ports:
    // over 300 random port triples, 10,000 keys gave max/min shares of 1.14 (median), 1.29
    // (p90), 1.53 (p99), 1.58 (worst). (The old bound, 1.25, failed about one run in six.)
    // No backend below 20 % or above 45 % of the keys (an even share is 33 %).
    assert!(max as f64 / min as f64 <= 1.7, "shares {shares:?}");
    assert!(min >= 2_000 && max <= 4_500, "shares {shares:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_one_of_four_backends_moves_few_keys_and_adding_it_back_restores_the_mapping() {
    let b = backends(4).await;
    let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
    let all = [&b[0], &b[1], &b[2], &b[3]];
    let before = map_keys(&Proxy::start(&hash_pool(&all, CUSERID, "")).await, &keys).await;
    let without = map_keys(
        &Proxy::start(&hash_pool(&all[..3], CUSERID, "")).await,
        &keys,
    )
    .await;
    let again = map_keys(&Proxy::start(&hash_pool(&all, CUSERID, "")).await, &keys).await;

    let moved = keys.iter().filter(|k| before[*k] != without[*k]).count();
    assert!(
        moved as f64 <= 0.30 * keys.len() as f64,
        "{moved} of 10000 moved"
    );
    // Only the removed backend's keys move.
    for k in &keys {
        if before[k] != "iis4" {
            assert_eq!(before[k], without[k], "key {k} moved without need");
        }
    }
    assert_eq!(
        before, again,
        "adding the backend back restores the previous mapping exactly"
    );
}

#[tokio::test]
async fn two_instances_with_the_same_config_map_a_key_to_the_same_backend() {
    let b = backends(3).await;
    let section = hash_pool(&[&b[0], &b[1], &b[2]], CUSERID, "");
    let (p1, p2) = (Proxy::start(&section).await, Proxy::start(&section).await);
    let keys: Vec<String> = (0..200).map(|i| format!("u{i}")).collect();
    assert_eq!(map_keys(&p1, &keys).await, map_keys(&p2, &keys).await);
}

#[tokio::test]
async fn an_unhealthy_home_sends_its_keys_to_the_next_backend_and_they_return_after_recovery() {
    let mut b = backends(3).await;
    let check =
        "      health_check: { type: http, path: /healthz, interval_ms: 100, fall: 1, rise: 1 }\n";
    let section = hash_pool(&[&b[0], &b[1], &b[2]], CUSERID, "")
        .replace("      affinity:", &format!("{check}      affinity:"));
    let proxy = Proxy::start(&section).await;
    let keys: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let before = map_keys(&proxy, &keys).await;
    let home_of_first = before[&keys[0]].clone();
    let down = b.iter().position(|x| x.name == home_of_first).unwrap();
    b[down].stop().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            proxy
                .log()
                .contains(&format!("backend {home_of_first} is now unhealthy"))
        })
        .await
    );
    let during = map_keys(&proxy, &keys).await;
    for k in &keys {
        if before[k] == home_of_first {
            assert_ne!(during[k], home_of_first);
        } else {
            assert_eq!(during[k], before[k], "keys of healthy backends stay");
        }
    }
    b[down].restart().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            proxy
                .log()
                .contains(&format!("backend {home_of_first} is now healthy"))
        })
        .await
    );
    assert_eq!(
        map_keys(&proxy, &keys).await,
        before,
        "keys come home after recovery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_balance_factor_a_hot_key_spills_to_the_next_backend() {
    let b = backends(2).await;
    let proxy = Proxy::start(&hash_pool(
        &[&b[0], &b[1]],
        CUSERID,
        "          balance_factor: 1.25\n",
    ))
    .await;
    let client = client();
    let home = get(&client, &proxy.url("/"), Some("CUserID=hot"))
        .await
        .backend()
        .to_string();
    let mut slow = Vec::new();
    let at_home = in_flight_at(&b, &home, 2);
    for _ in 0..2 {
        let (client, url) = (client.clone(), proxy.url("/slow/3000"));
        slow.push(tokio::spawn(async move {
            get(&client, &url, Some("CUserID=hot")).await
        }));
    }
    at_home.await;
    // Two in flight at home, none elsewhere: the bound ceil(1.25 × 3 / 2) = 2 is reached.
    let spilled = get(&client, &proxy.url("/"), Some("CUserID=hot")).await;
    assert_ne!(spilled.backend(), home);
    for task in slow {
        assert_eq!(task.await.unwrap().backend(), home);
    }
    // Load gone: the key is home again.
    assert_eq!(
        get(&client, &proxy.url("/"), Some("CUserID=hot"))
            .await
            .backend(),
        home
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_balance_factor_a_hot_key_stays_home_under_load() {
    let b = backends(2).await;
    let proxy = Proxy::start(&hash_pool(&[&b[0], &b[1]], CUSERID, "")).await;
    let client = client();
    let home = get(&client, &proxy.url("/"), Some("CUserID=hot"))
        .await
        .backend()
        .to_string();
    let mut slow = Vec::new();
    let at_home = in_flight_at(&b, &home, 3);
    for _ in 0..3 {
        let (client, url) = (client.clone(), proxy.url("/slow/3000"));
        slow.push(tokio::spawn(async move {
            get(&client, &url, Some("CUserID=hot")).await
        }));
    }
    at_home.await;
    assert_eq!(
        get(&client, &proxy.url("/"), Some("CUserID=hot"))
            .await
            .backend(),
        home
    );
    for task in slow {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn a_regex_that_does_not_match_falls_through_to_the_next_source() {
    let b = backends(3).await;
    let sources =
        "{ type: cookie, name: CUserID, regex: \"^([0-9]+)$\" }, { type: header, name: X-Tenant }";
    let proxy = Proxy::start(&hash_pool(&[&b[0], &b[1], &b[2]], sources, "")).await;
    let client = client();
    let tenant = |t: &str, cookie: &str| {
        let (client, url) = (client.clone(), proxy.url("/"));
        let (t, cookie) = (t.to_string(), cookie.to_string());
        async move {
            into_reply(
                client
                    .get(url)
                    .header("X-Tenant", t)
                    .header("Cookie", cookie)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    // Non-numeric CUserID: the regex fails, so X-Tenant decides; the same tenant, the same backend,
    // whatever the CUserID says.
    let mut per_tenant: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
    for t in 0..20 {
        for u in ["abc", "x-1", "9z"] {
            let reply = tenant(&format!("tenant-{t}"), &format!("CUserID={u}")).await;
            per_tenant
                .entry(format!("tenant-{t}"))
                .or_default()
                .insert(reply.backend().to_string());
        }
    }
    assert!(per_tenant.values().all(|s| s.len() == 1), "{per_tenant:?}");
    let used: std::collections::HashSet<_> = per_tenant.values().flatten().collect();
    assert!(used.len() >= 2, "tenants spread: {used:?}");
    // A matching CUserID wins over the tenant header.
    let by_user: std::collections::HashSet<String> =
        futures_collect((0..20).map(|t| tenant(&format!("tenant-{t}"), "CUserID=12345"))).await;
    assert_eq!(by_user.len(), 1);
}

async fn futures_collect<F: std::future::Future<Output = Reply>>(
    futures: impl Iterator<Item = F>,
) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    for f in futures {
        out.insert(f.await.backend().to_string());
    }
    out
}

/// The path and headers of the request for key number `i`.
type RequestFor = fn(usize) -> (String, Vec<(&'static str, String)>);

#[tokio::test]
async fn header_query_path_and_host_sources_pin_equal_keys_and_spread_different_ones() {
    let b = backends(3).await;
    let all = [&b[0], &b[1], &b[2]];
    let client = client();
    let cases: [(&str, RequestFor); 4] = [
        ("{ type: header, name: X-Tenant }", |i| {
            ("/".into(), vec![("X-Tenant", format!("t{i}"))])
        }),
        ("{ type: query, params: [uid, region] }", |i| {
            (format!("/x?region=eu&uid={i}&uid=ignored"), vec![])
        }),
        ("{ type: path }", |i| (format!("/users/{i}?page=2"), vec![])),
        ("{ type: host }", |i| {
            ("/".into(), vec![("Host", format!("tenant{i}.example"))])
        }),
    ];
    for (source, request) in cases {
        let proxy = Proxy::start(&hash_pool(&all, source, "")).await;
        let mut spread = std::collections::HashSet::new();
        for i in 0..30 {
            let mut answers = std::collections::HashSet::new();
            for _ in 0..3 {
                let (path, headers) = request(i);
                let mut req = client.get(proxy.url(&path));
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                let reply = into_reply(req.send().await.unwrap()).await;
                assert!(reply.set_cookies().is_empty());
                answers.insert(reply.backend().to_string());
            }
            assert_eq!(answers.len(), 1, "{source}: key {i} → {answers:?}");
            spread.extend(answers);
        }
        assert_eq!(spread.len(), 3, "{source}: 30 keys reach every backend");
    }
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_does_not_change_the_client_ip_key() {
    let b = backends(3).await;
    let all = [&b[0], &b[1], &b[2]];
    let untrusted = Proxy::start(&hash_pool(&all, "{ type: client_ip }", "")).await;
    let client = client();
    let mut seen = std::collections::HashSet::new();
    for i in 0..30 {
        let reply = into_reply(
            client
                .get(untrusted.url("/"))
                .header("X-Forwarded-For", format!("203.0.113.{i}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        seen.insert(reply.backend().to_string());
    }
    assert_eq!(
        seen.len(),
        1,
        "every request is keyed on 127.0.0.1: {seen:?}"
    );

    // From a trusted peer (the test client is 127.0.0.1) the header decides.
    let section = hash_pool(&all, "{ type: client_ip }", "")
        .replace("  pools:", "  trusted_proxies: [127.0.0.0/8]\n  pools:");
    let trusted = Proxy::start(&section).await;
    let mut seen = std::collections::HashSet::new();
    for i in 0..30 {
        let reply = into_reply(
            client
                .get(trusted.url("/"))
                .header("X-Forwarded-For", format!("203.0.113.{i}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        seen.insert(reply.backend().to_string());
    }
    assert!(seen.len() >= 2, "{seen:?}");
}

#[tokio::test]
async fn client_ip_masked_to_24_bits_keeps_a_subnet_together() {
    let b = backends(3).await;
    let section = hash_pool(
        &[&b[0], &b[1], &b[2]],
        "{ type: client_ip, ipv4_prefix: 24 }",
        "",
    )
    .replace("  pools:", "  trusted_proxies: [127.0.0.1]\n  pools:");
    let proxy = Proxy::start(&section).await;
    let client = client();
    let mut subnets: HashMap<u8, std::collections::HashSet<String>> = HashMap::new();
    for net in 0..12u8 {
        for host in [1u8, 77, 254] {
            let reply = into_reply(
                client
                    .get(proxy.url("/"))
                    .header("X-Forwarded-For", format!("198.51.{net}.{host}"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            subnets
                .entry(net)
                .or_default()
                .insert(reply.backend().to_string());
        }
    }
    assert!(subnets.values().all(|s| s.len() == 1), "{subnets:?}");
}

#[tokio::test]
async fn with_cookie_and_hash_a_valid_cookie_wins_a_key_routes_without_a_cookie_and_the_rest_get_one(
) {
    let b = backends(3).await;
    let extra = "        cookie: { secret: test-secret-0123456789abcdef }\n";
    let proxy = Proxy::start(&hash_pool(&[&b[0], &b[1], &b[2]], CUSERID, extra)).await;
    let client = client();
    let keyed = get(&client, &proxy.url("/"), Some("CUserID=alice")).await;
    assert!(keyed.set_cookies().is_empty());
    let fresh = get(&client, &proxy.url("/"), None).await;
    let value = fresh
        .cookie("ARRAffinity")
        .expect("no key: balanced with a cookie");
    // Both: the cookie decides.
    let mut pick = fresh.backend().to_string();
    for _ in 0..5 {
        let reply = get(
            &client,
            &proxy.url("/"),
            Some(&format!("CUserID=alice; ARRAffinity={value}")),
        )
        .await;
        assert_eq!(reply.backend(), pick);
        pick = reply.backend().to_string();
    }
}

#[tokio::test]
async fn empty_huge_binary_and_repeated_keys_are_handled_without_error() {
    let b = backends(3).await;
    let sources = "{ type: cookie, name: CUserID, regex: \"^((a+)+)$\" }, { type: query, params: [uid] }, { type: header, name: X-Tenant }";
    let proxy = Proxy::start(&hash_pool(&[&b[0], &b[1], &b[2]], sources, "")).await;
    let cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: t\r\nCookie: CUserID=\r\n".to_vec(),
        [
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Tenant: ".to_vec(),
            vec![b'x'; 64 * 1024],
            b"\r\n".to_vec(),
        ]
        .concat(),
        [
            b"GET / HTTP/1.1\r\nHost: t\r\nCookie: CUserID=".to_vec(),
            vec![b'a'; 30_000],
            b"!\r\n".to_vec(),
        ]
        .concat(),
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Tenant: \xff\xfe\xc3\x28\r\n".to_vec(),
        b"GET /?uid=1&uid=2&uid=&uid HTTP/1.1\r\nHost: t\r\n".to_vec(),
        b"GET /?uid HTTP/1.1\r\nHost: t\r\n".to_vec(),
    ];
    for case in cases {
        let request = [case.clone(), b"Connection: close\r\n\r\n".to_vec()].concat();
        // A backtracking engine would never finish `((a+)+)$` over 30,000 `a`s and a `!`: an
        // answer at all (within the harness's deadline) shows the match is linear.
        let response = raw_request(proxy.addr, &request).await;
        assert_eq!(
            raw_status(&response),
            200,
            "{:.120}",
            String::from_utf8_lossy(&case)
        );
    }
    // Repeated query parameters: the first value is the key.
    let client = client();
    let first = get(&client, &proxy.url("/?uid=7&uid=8"), None)
        .await
        .backend()
        .to_string();
    for _ in 0..5 {
        assert_eq!(
            get(&client, &proxy.url("/?uid=7&uid=9"), None)
                .await
                .backend(),
            first
        );
    }
}
