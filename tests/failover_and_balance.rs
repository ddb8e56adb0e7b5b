//! Failover (connect failures, health checks, nothing healthy) and the balancers for new sessions.

mod common;
use common::*;
use std::time::Duration;

const FAST_HTTP_CHECK: &str = "      health_check:\n        type: http\n        path: /healthz\n        interval_ms: 100\n        timeout_ms: 200\n        rise: 2\n        fall: 1\n";

#[tokio::test]
async fn when_connecting_to_the_pinned_backend_fails_the_request_moves_and_gets_a_new_cookie() {
    let (mut b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], KEYED_AFFINITY)).await;
    let client = client();
    let iis1 = cookie_for(&client, &proxy, "/", "iis1").await;
    b1.stop().await;
    for _ in 0..5 {
        let reply = get(
            &client,
            &proxy.url("/"),
            Some(&format!("ARRAffinity={iis1}")),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.backend(), "iis2");
        let moved = reply
            .cookie("ARRAffinity")
            .expect("a new cookie for the new backend");
        assert_ne!(moved, iis1);
        let follow = get(
            &client,
            &proxy.url("/"),
            Some(&format!("ARRAffinity={moved}")),
        )
        .await;
        assert_eq!(follow.backend(), "iis2");
        assert!(follow.set_cookies().is_empty());
    }
}

#[tokio::test]
async fn a_post_whose_connect_failed_is_sent_once_to_another_backend_with_its_body() {
    let (mut b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], KEYED_AFFINITY)).await;
    let client = client();
    let iis1 = cookie_for(&client, &proxy, "/", "iis1").await;
    b1.stop().await;
    let before = b2.hits();
    let body = vec![b'x'; 100_000];
    let reply = into_reply(
        client
            .post(proxy.url("/upload"))
            .header("Cookie", format!("ARRAffinity={iis1}"))
            .body(body.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.backend(), "iis2");
    assert_eq!(
        reply.header("x-echo-body-length").as_deref(),
        Some("100000")
    );
    assert_eq!(
        b2.hits(),
        before + 1,
        "the request reached the new backend exactly once"
    );
}

#[tokio::test]
async fn an_unhealthy_backend_loses_its_sessions_and_gets_new_ones_again_after_it_recovers() {
    let (mut b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let section = one_pool(&[&b1, &b2], &format!("{FAST_HTTP_CHECK}{KEYED_AFFINITY}"));
    let proxy = Proxy::start(&section).await;
    let client = client();
    let iis1 = cookie_for(&client, &proxy, "/", "iis1").await;

    b1.stop().await;
    // Once the health check has seen it down, the request goes straight to iis2.
    let marked_down = eventually(Duration::from_secs(5), || async {
        proxy.log().contains("backend iis1 is now unhealthy")
    })
    .await;
    assert!(marked_down, "{}", proxy.log());
    let reply = get(
        &client,
        &proxy.url("/"),
        Some(&format!("ARRAffinity={iis1}")),
    )
    .await;
    assert_eq!(reply.backend(), "iis2");
    assert!(reply.cookie("ARRAffinity").is_some());
    for _ in 0..4 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.backend(), "iis2");
    }

    b1.restart().await;
    let back = eventually(Duration::from_secs(5), || async {
        proxy.log().contains("backend iis1 is now healthy")
    })
    .await;
    assert!(back, "{}", proxy.log());
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(
            get(&client, &proxy.url("/"), None)
                .await
                .backend()
                .to_string(),
        );
    }
    assert!(
        seen.contains("iis1"),
        "new sessions reach the recovered backend: {seen:?}"
    );
    // The old cookie pins again too.
    let pinned = get(
        &client,
        &proxy.url("/"),
        Some(&format!("ARRAffinity={iis1}")),
    )
    .await;
    assert_eq!(pinned.backend(), "iis1");
}

#[tokio::test]
async fn with_every_backend_down_the_answer_is_a_fast_503_with_a_short_plain_body() {
    let (mut b1, mut b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let section = one_pool(&[&b1, &b2], &format!("{FAST_HTTP_CHECK}{KEYED_AFFINITY}"));
    let proxy = Proxy::start(&section).await;
    let client = client();
    let iis1 = cookie_for(&client, &proxy, "/", "iis1").await;
    b1.stop().await;
    b2.stop().await;

    // Before the health checks notice, connect failures alone lead to 503: refused connects,
    // no timeout waited for (a hang would fail the client's 10 s timeout).
    let reply = get(
        &client,
        &proxy.url("/"),
        Some(&format!("ARRAffinity={iis1}")),
    )
    .await;
    assert_eq!(reply.status, 503);
    // After they notice, too; the body names no backend, address or internal error.
    eventually(Duration::from_secs(5), || async {
        proxy.log().contains("backend iis2 is now unhealthy")
            && proxy.log().contains("backend iis1 is now unhealthy")
    })
    .await;
    let reply = get(&client, &proxy.url("/"), None).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body, "503 Service Unavailable\n");
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert!(reply.set_cookies().is_empty());

    b2.restart().await;
    let recovered = eventually(Duration::from_secs(5), || async {
        get(&client, &proxy.url("/"), None).await.status == 200
    })
    .await;
    assert!(
        recovered,
        "service resumes by itself when a backend returns"
    );
}

#[tokio::test]
async fn a_tcp_health_check_takes_a_closed_port_out_of_rotation() {
    let (mut b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let check = "      health_check:\n        type: tcp\n        interval_ms: 100\n        fall: 1\n        rise: 1\n";
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], &format!("{check}{KEYED_AFFINITY}"))).await;
    b1.stop().await;
    let down = eventually(Duration::from_secs(5), || async {
        proxy.log().contains("backend iis1 is now unhealthy")
    })
    .await;
    assert!(down, "{}", proxy.log());
    let client = client();
    for _ in 0..4 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.backend(), "iis2");
    }
}

#[tokio::test]
async fn an_http_health_check_expecting_another_status_marks_the_backend_down() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    // The demo backends answer 200, so expecting 204 fails every check.
    let check = "      health_check:\n        type: http\n        path: /healthz\n        expect_status: 204\n        interval_ms: 100\n        fall: 1\n";
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], &format!("{check}{KEYED_AFFINITY}"))).await;
    let down = eventually(Duration::from_secs(5), || async {
        let log = proxy.log();
        log.contains("backend iis1 is now unhealthy")
            && log.contains("backend iis2 is now unhealthy")
    })
    .await;
    assert!(down, "{}", proxy.log());
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 503);
}

#[tokio::test]
async fn weighted_round_robin_splits_new_sessions_by_weight() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let section = format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  pools:\n    - name: web\n      backends:\n        - {{ name: iis1, addr: \"{}\", weight: 3 }}\n        - {{ name: iis2, addr: \"{}\", weight: 1 }}\n{KEYED_AFFINITY}",
        b1.addr, b2.addr
    );
    let proxy = Proxy::start(&section).await;
    let client = client();
    let mut iis1 = 0;
    for _ in 0..100 {
        if get(&client, &proxy.url("/"), None).await.backend() == "iis1" {
            iis1 += 1;
        }
    }
    assert!(
        (70..=80).contains(&iis1),
        "iis1 got {iis1} of 100 at weight 3:1"
    );
}

#[tokio::test]
async fn random_balancing_reaches_every_backend() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&one_pool(
        &[&b1, &b2],
        &format!("      balance: random\n{KEYED_AFFINITY}"),
    ))
    .await;
    let client = client();
    for _ in 0..60 {
        get(&client, &proxy.url("/"), None).await;
    }
    assert!(
        b1.hits() >= 10 && b2.hits() >= 10,
        "iis1 {} / iis2 {}",
        b1.hits(),
        b2.hits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_sends_new_sessions_away_from_a_busy_backend() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&one_pool(
        &[&b1, &b2],
        &format!("      balance: least_requests\n{KEYED_AFFINITY}"),
    ))
    .await;
    let client = client();
    // Pin a session to iis1 and keep three slow requests in flight there.
    let iis1 = cookie_for(&client, &proxy, "/", "iis1").await;
    let mut slow = Vec::new();
    let reached = b1.hits() + 3;
    for _ in 0..3 {
        let (client, url, cookie) = (
            client.clone(),
            proxy.url("/slow/3000"),
            format!("ARRAffinity={iis1}"),
        );
        slow.push(tokio::spawn(async move {
            get(&client, &url, Some(&cookie)).await
        }));
    }
    // Once they have reached iis1 they are in flight there (polled: no assumption on speed).
    let in_flight = eventually(Duration::from_secs(10), || {
        let hits = b1.hits();
        async move { hits >= reached }
    })
    .await;
    assert!(in_flight, "the slow requests reached iis1");
    for _ in 0..5 {
        // Each of these finishes at once, so iis2 always has fewer in flight.
        assert_eq!(get(&client, &proxy.url("/"), None).await.backend(), "iis2");
    }
    for task in slow {
        assert_eq!(task.await.unwrap().backend(), "iis1");
    }
    // Idle again: new sessions share both backends.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(
            get(&client, &proxy.url("/"), None)
                .await
                .backend()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}
