//! Outages: every backend down (before and after the health checks notice), service resuming by
//! itself when a backend returns, and what a plain restart does to learned-only sessions (the
//! restart under load itself is in tests/restart.rs).
//!
//! Latencies are printed, never asserted (timing belongs in benchmarks); the bounds here are
//! hang guards only. `cargo nextest run --test outages --no-capture` shows the figures.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// TCP checks every 100 ms; one failure takes a backend out, one success brings it back.
const FAST_CHECK: &str = "      health_check: { type: tcp, interval_ms: 100, fall: 1, rise: 1 }\n";

/// A request must answer within this or the proxy is hanging (a hang guard, not a speed check).
const HANG_GUARD: Duration = Duration::from_secs(5);

/// GET with an optional cookie, failing the test on a hang.
async fn timed_get(client: &reqwest::Client, url: &str, cookie: Option<&str>) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = tokio::time::timeout(HANG_GUARD, get(client, url, cookie))
        .await
        .unwrap_or_else(|_| panic!("no answer within {HANG_GUARD:?}: the proxy hangs"));
    (reply, started.elapsed())
}

/// The proxy's own 503: short plain body, no cookie, nothing naming a backend or an address.
fn assert_proxys_own_503(reply: &Reply, backends: &[&TestBackend]) {
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.body, "503 Service Unavailable\n");
    assert!(reply
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    assert!(reply.set_cookies().is_empty(), "{reply:?}");
    let text = format!("{:?} {}", reply.headers, reply.body);
    assert!(!text.contains("127.0.0.1"), "an address leaked: {text}");
    for backend in backends {
        assert!(
            !text.contains(&backend.name),
            "a backend name leaked: {text}"
        );
        assert!(
            !text.contains(&format!(":{}", backend.addr.port())),
            "a backend port leaked: {text}"
        );
    }
}

/// `p50 / p99 / max` in milliseconds.
fn summary(mut latencies: Vec<Duration>) -> String {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    format!(
        "{} requests: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        at(1.0).as_secs_f64() * 1000.0
    )
}

/// Two backends under fast health checks and keyed cookies, with one session pinned to each.
struct TwoSessions {
    b1: TestBackend,
    b2: TestBackend,
    proxy: Proxy,
    client: reqwest::Client,
    /// `Cookie` header values pinning to iis1 and to iis2.
    c1: String,
    c2: String,
}

async fn two_sessions() -> TwoSessions {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let section = one_pool(&[&b1, &b2], &format!("{FAST_CHECK}{KEYED_AFFINITY}"));
    let proxy = Proxy::start(&section).await;
    let client = client();
    let pinned_to = |name: &'static str| {
        let (client, proxy) = (&client, &proxy);
        async move { format!("ARRAffinity={}", cookie_for(client, proxy, "/", name).await) }
    };
    let (c1, c2) = (pinned_to("iis1").await, pinned_to("iis2").await);
    TwoSessions {
        b1,
        b2,
        proxy,
        client,
        c1,
        c2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_killed_and_marked_down_gets_the_proxys_own_503_without_hanging() {
    let TwoSessions {
        mut b1,
        mut b2,
        proxy,
        client,
        c1,
        c2,
    } = two_sessions().await;
    b1.stop().await;
    b2.stop().await;
    let noticed = eventually(Duration::from_secs(5), || async {
        let log = proxy.log();
        log.contains("backend iis1 is now unhealthy")
            && log.contains("backend iis2 is now unhealthy")
    })
    .await;
    assert!(
        noticed,
        "the health checks mark both down:\n{}",
        proxy.log()
    );

    let mut latencies = Vec::new();
    for i in 0..100 {
        let cookie = [None, Some(c1.as_str()), Some(c2.as_str())][i % 3];
        let (reply, took) = timed_get(&client, &proxy.url("/all-down"), cookie).await;
        assert_proxys_own_503(&reply, &[&b1, &b2]);
        latencies.push(took);
    }
    assert_eq!(proxy.outcome_of("/all-down").as_deref(), Some("failed"));
    println!("every backend marked down: {}", summary(latencies));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_any_health_check_notices_refused_connects_to_every_backend_end_in_the_proxys_own_503(
) {
    let (mut b1, mut b2, mut b3) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
        TestBackend::start("iis3").await,
    );
    // No health check: the proxy believes every backend is up, so each request tries them all.
    let section = one_pool(&[&b1, &b2, &b3], KEYED_AFFINITY);
    let proxy = Proxy::start(&section).await;
    let client = client();
    let c1 = format!(
        "ARRAffinity={}",
        cookie_for(&client, &proxy, "/", "iis1").await
    );
    b1.stop().await;
    b2.stop().await;
    b3.stop().await;

    let mut latencies = Vec::new();
    for i in 0..100 {
        let cookie = (i % 2 == 0).then_some(c1.as_str());
        let (reply, took) = timed_get(&client, &proxy.url("/refused"), cookie).await;
        assert_proxys_own_503(&reply, &[&b1, &b2, &b3]);
        latencies.push(took);
    }
    assert_eq!(proxy.outcome_of("/refused").as_deref(), Some("failed"));
    println!(
        "every backend refusing, no health check: {}",
        summary(latencies)
    );

    // A backend that returns serves at once: nothing has to notice it first.
    b3.restart().await;
    let (reply, _) = timed_get(&client, &proxy.url("/"), Some(&c1)).await;
    assert_eq!(reply.backend(), "iis3");
    assert!(reply.cookie("ARRAffinity").is_some(), "the session moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_backend_returns_service_resumes_by_itself_and_old_cookies_pin_to_it_again() {
    let TwoSessions {
        mut b1,
        mut b2,
        proxy,
        client,
        c1,
        c2,
    } = two_sessions().await;
    b1.stop().await;
    b2.stop().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&client, &proxy.url("/"), Some(&c2)).await.status == 503
                && proxy.log().contains("backend iis2 is now unhealthy")
        })
        .await,
        "{}",
        proxy.log()
    );

    // iis2 returns; nobody touches the proxy.
    b2.restart().await;
    let resumed = eventually(Duration::from_secs(5), || async {
        get(&client, &proxy.url("/"), Some(&c2)).await.status == 200
    })
    .await;
    assert!(resumed, "service resumes by itself:\n{}", proxy.log());
    let pinned = get(&client, &proxy.url("/"), Some(&c2)).await;
    assert_eq!(pinned.backend(), "iis2");
    assert!(pinned.set_cookies().is_empty(), "its old cookie pins again");
    let moved = get(&client, &proxy.url("/"), Some(&c1)).await;
    assert_eq!(moved.backend(), "iis2", "iis1's sessions move meanwhile");
    assert!(moved.cookie("ARRAffinity").is_some());

    // iis1 returns: its old cookie, still held by clients that did not take the new one, pins
    // to it again.
    b1.restart().await;
    let back = eventually(Duration::from_secs(5), || async {
        get(&client, &proxy.url("/"), Some(&c1)).await.backend() == "iis1"
    })
    .await;
    assert!(back, "{}", proxy.log());
    let pinned = get(&client, &proxy.url("/"), Some(&c1)).await;
    assert_eq!(pinned.backend(), "iis1");
    assert!(pinned.set_cookies().is_empty());
    assert_eq!(
        get(&client, &proxy.url("/"), Some(&c2)).await.backend(),
        "iis2"
    );
}

/// `/login` sessions: (JSESSIONID value, the backend that issued it), from `n` logins.
async fn logins(client: &reqwest::Client, proxy: &Proxy, n: usize) -> Vec<(String, String, Reply)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let reply = get(client, &proxy.url("/login"), None).await;
        let id = reply.cookie("JSESSIONID").unwrap();
        out.push((id, reply.backend().to_string(), reply));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_plain_restart_a_learned_only_session_is_relearned_wherever_its_next_request_lands()
{
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let section = one_pool(
        &[&b1, &b2],
        "      affinity:\n        learn: { presets: [j2ee] }\n",
    );
    let mut old = Proxy::start(&section).await;
    let client = client();
    let mut sessions: Vec<(String, String)> = logins(&client, &old, 10)
        .await
        .into_iter()
        .map(|(id, home, _)| (id, home))
        .collect();
    for (id, home) in &sessions {
        let reply = get(&client, &old.url("/"), Some(&format!("JSESSIONID={id}"))).await;
        assert_eq!(&reply.backend(), home, "learned before the restart");
    }

    assert!(old.terminate(Duration::from_secs(10)).await.is_some());
    let listen = old.release_sockets().remove(0);
    let new = Proxy::start_on(&section, listen).await;
    // The old process's kept-alive connections died with it; a client reconnects (reusing one
    // the pool has not yet seen closed is the client's keep-alive race, not what this tests).
    let client = common::client();
    // Return in an order the round robin does not reproduce: every iis1 session first.
    sessions.sort_by(|a, b| a.1.cmp(&b.1));
    let mut moved = 0;
    for (id, home) in &sessions {
        let cookie = format!("JSESSIONID={id}");
        let landed = get(&client, &new.url("/"), Some(&cookie)).await;
        assert_eq!(landed.status, 200);
        if landed.backend() != home {
            moved += 1;
        }
        // Recorded where it was served: it stays there from now on.
        for _ in 0..3 {
            let again = get(&client, &new.url("/"), Some(&cookie)).await;
            assert_eq!(
                again.backend(),
                landed.backend(),
                "re-learned where it landed"
            );
        }
    }
    println!(
        "learned-only sessions after a plain restart: {moved} of {} landed on another backend",
        sessions.len()
    );
    assert!(
        moved > 0,
        "the table is per process: a learned-only session is balanced again after a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_plain_restart_a_session_with_both_cookies_stays_home_and_its_id_is_relearned_there(
) {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let section = one_pool(
        &[&b1, &b2],
        "      affinity:\n        learn: { presets: [j2ee] }\n        cookie:\n          secret: test-secret-0123456789abcdef\n",
    );
    let mut old = Proxy::start(&section).await;
    let client = client();
    let mut sessions: Vec<(String, String, String)> = logins(&client, &old, 10)
        .await
        .into_iter()
        .map(|(id, home, reply)| (id, home, reply.cookie("ARRAffinity").unwrap()))
        .collect();

    assert!(old.terminate(Duration::from_secs(10)).await.is_some());
    let listen = old.release_sockets().remove(0);
    let new = Proxy::start_on(&section, listen).await;
    // The old process's kept-alive connections died with it; a client reconnects (reusing one
    // the pool has not yet seen closed is the client's keep-alive race, not what this tests).
    let client = common::client();
    sessions.sort_by(|a, b| a.1.cmp(&b.1));
    for (id, home, affinity) in &sessions {
        let both = format!("JSESSIONID={id}; ARRAffinity={affinity}");
        let reply = get(&client, &new.url("/"), Some(&both)).await;
        assert_eq!(
            &reply.backend(),
            home,
            "the affinity cookie pins across the restart"
        );
        assert!(reply.set_cookies().is_empty());
    }
    // The id the table did not know was recorded where it was served: the id alone now pins.
    for (id, home, _) in &sessions {
        let reply = get(&client, &new.url("/"), Some(&format!("JSESSIONID={id}"))).await;
        assert_eq!(&reply.backend(), home, "re-learned from the request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_more_backends_refusing_than_pingoras_retry_limit_the_answer_is_still_the_proxys_own_503(
) {
    // Pingora tries an upstream at most `max_retries` (16) times per request: with 17 backends
    // refusing and no health check, the attempts run out before the pool does.
    let mut backends = Vec::new();
    for i in 0..17 {
        backends.push(TestBackend::start(&format!("node{i}")).await);
    }
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let proxy = Proxy::start(&one_pool(&refs, KEYED_AFFINITY)).await;
    let client = client();
    assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    for backend in backends.iter_mut() {
        backend.stop().await;
    }
    let refs: Vec<&TestBackend> = backends.iter().collect();
    for _ in 0..5 {
        let (reply, _) = timed_get(&client, &proxy.url("/many-down"), None).await;
        assert_proxys_own_503(&reply, &refs);
    }
    assert_eq!(proxy.outcome_of("/many-down").as_deref(), Some("failed"));
}
