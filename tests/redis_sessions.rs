//! Learned sessions shared through a real `redis-server` on loopback: two proxy instances (real
//! binaries) follow each other's sessions, survive a restart, and keep serving — each from its
//! own table — while Redis is gone, then share again when it is back.
//!
//! Lookups here get a generous `lookup_timeout_ms` (500): the test machine is shared and
//! noisy, and these tests check behaviour, not speed (the benchmark measures that). Sentinel
//! and Cluster deployments: `redis_sentinel.rs`, `redis_cluster.rs`.

mod common;
use common::redis_server::RedisServer;
use common::redis_store::*;
use common::*;
use std::time::Duration;

/// A pool with learned `JSESSIONID`s in one Redis server, and an admin listener.
fn shared(backends: &[&TestBackend], redis: &RedisServer, idle: u64, refresh: u64) -> String {
    shared_pool(
        backends,
        &format!(
            "address: \"{}\", refresh_interval_seconds: {refresh}",
            redis.address()
        ),
        idle,
    )
}

async fn exists(redis: &RedisServer, id: &str) -> bool {
    let mut c = redis.connection().await;
    redis::cmd("EXISTS")
        .arg(key_of(id))
        .query_async::<i64>(&mut c)
        .await
        .unwrap()
        == 1
}

async fn wait_exists(redis: &RedisServer, id: &str, want: bool) -> bool {
    eventually(Duration::from_secs(10), || async {
        exists(redis, id).await == want
    })
    .await
}

#[tokio::test]
async fn a_session_learned_through_one_instance_is_honoured_by_another() {
    let redis = RedisServer::start().await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = shared(&[&b1, &b2], &redis, 1800, 60);
    let (a, b) = (Proxy::start(&config).await, Proxy::start(&config).await);
    let client = client();
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    let (id, home) = login(&client, &a).await;
    assert!(wait_exists(&redis, &id, true).await, "A wrote the session");
    let mut c = redis.connection().await;
    let value: String = redis::cmd("GET")
        .arg(key_of(&id))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        value.ends_with(&format!(" {home}")),
        "stored by name: {value:?}"
    );
    assert!(!value.contains(&id), "the id itself is never stored");
    assert_honoured(&client, &b, &id, &home, "b").await;
    let stats = store_view(&client, &b).await;
    assert_eq!(stats["lookup_hits"], 1, "{stats}");
}

#[tokio::test]
async fn a_restarted_proxy_keeps_the_sessions_learned_before() {
    let redis = RedisServer::start().await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = shared(&[&b1, &b2], &redis, 1800, 60);
    let client = client();
    let mut first = Proxy::start(&config).await;
    wait_store(&client, &first, true).await;
    let (id, home) = login(&client, &first).await;
    assert!(wait_exists(&redis, &id, true).await);
    first.stop();
    let listen = first.release_sockets().remove(0);
    drop(first);
    let second = Proxy::start_on(&config, listen).await;
    // The first process's kept-alive connections died with it: reconnect.
    let client = common::client();
    wait_store(&client, &second, true).await;
    assert_honoured(&client, &second, &id, &home, "restarted").await;
}

#[tokio::test]
async fn redis_killed_under_load_fails_no_request_and_each_instance_keeps_its_own_sessions() {
    let mut redis = RedisServer::start().await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = shared(&[&b1, &b2], &redis, 1800, 1);
    let (a, b) = (Proxy::start(&config).await, Proxy::start(&config).await);
    let client = client();
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    let mut sessions = Vec::new(); // (proxy index, id, home)
    for i in 0..8 {
        let proxy = if i % 2 == 0 { &a } else { &b };
        let (id, home) = login(&client, proxy).await;
        sessions.push((i % 2, id, home));
    }
    let proxies = [&a, &b];
    let mut failed = 0;
    let mut moved = 0;
    let mut served = 0;
    // 60 rounds, Redis killed before the 30th: counted in rounds, not seconds, so a slow
    // machine runs the same test.
    for round in 1..=60 {
        if round == 30 {
            redis.kill();
        }
        for (p, id, home) in &sessions {
            let reply = get(
                &client,
                &proxies[*p].url("/load"),
                Some(&format!("JSESSIONID={id}")),
            )
            .await;
            served += 1;
            if reply.status != 200 {
                failed += 1;
            } else if reply.backend() != home {
                moved += 1;
            }
        }
        // Ids neither table knows: looked up in Redis (which fails once it is gone), balanced.
        for proxy in proxies {
            let reply = get(
                &client,
                &proxy.url("/new"),
                Some(&format!("JSESSIONID=unknown-{round}")),
            )
            .await;
            served += 1;
            failed += usize::from(reply.status != 200);
        }
    }
    assert_eq!(failed, 0, "of {served} requests");
    assert_eq!(moved, 0, "each instance kept the sessions it learned");
    wait_store(&client, &a, false).await;
    wait_store(&client, &b, false).await;
    // Still learning locally while Redis is gone.
    let (id, home) = login(&client, &a).await;
    for _ in 0..4 {
        let reply = get(&client, &a.url("/"), Some(&format!("JSESSIONID={id}"))).await;
        assert_eq!(reply.backend(), home);
    }
    let metrics = get(&client, &a.admin_url("/metrics"), None).await.body;
    assert!(
        metrics.contains("sticky_session_store_up{pool=\"web\",table=\"learn\"} 0"),
        "{metrics}"
    );
    let downs = a.log().matches("down after").count();
    assert_eq!(downs, 1, "the state change is logged once:\n{}", a.log());
}

#[tokio::test]
async fn when_redis_comes_back_the_instances_share_sessions_again() {
    let mut redis = RedisServer::start().await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = shared(&[&b1, &b2], &redis, 1800, 1);
    let (a, b) = (Proxy::start(&config).await, Proxy::start(&config).await);
    let client = client();
    wait_store(&client, &a, true).await;
    redis.kill();
    // Unknown ids make A ask Redis until it notices that Redis is gone.
    let noticed = eventually(Duration::from_secs(15), || async {
        get(&client, &a.url("/"), Some("JSESSIONID=probe")).await;
        store_view(&client, &a).await["up"] == false
    })
    .await;
    assert!(noticed, "{}", a.log());
    // Learned by A while Redis is down: only in A's table.
    let (during, during_home) = login(&client, &a).await;
    redis.restart().await;
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    assert!(a.log().contains("up again"), "{}", a.log());
    // A new session is shared at once.
    let (id, home) = login(&client, &a).await;
    assert!(wait_exists(&redis, &id, true).await);
    assert_honoured(&client, &b, &id, &home, "after").await;
    // The one learned during the outage is written again when A uses it (refresh interval 1 s).
    let restored = eventually(Duration::from_secs(10), || async {
        get(&client, &a.url("/"), Some(&format!("JSESSIONID={during}"))).await;
        exists(&redis, &during).await
    })
    .await;
    assert!(restored, "A wrote back the session Redis lost");
    assert_honoured(&client, &b, &during, &during_home, "restored").await;
}

#[tokio::test]
async fn an_entry_lives_while_used_and_expires_from_redis_without_use() {
    let redis = RedisServer::start().await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    // Idle timeout (the Redis TTL) 3 s, refreshed at most once a second.
    let config = shared(&[&b1, &b2], &redis, 3, 1);
    let a = Proxy::start(&config).await;
    let client = client();
    wait_store(&client, &a, true).await;
    let (id, home) = login(&client, &a).await;
    assert!(wait_exists(&redis, &id, true).await);
    let mut c = redis.connection().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(key_of(&id))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!((1..=3).contains(&ttl), "TTL is the idle timeout: {ttl}");
    // Used for 6 s, twice the TTL: still there.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let reply = get(&client, &a.url("/"), Some(&format!("JSESSIONID={id}"))).await;
        assert_eq!(reply.backend(), home);
        assert!(exists(&redis, &id).await, "expired while in use");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Unused: gone within the TTL (plus Redis's expiry granularity).
    let started = std::time::Instant::now();
    assert!(wait_exists(&redis, &id, false).await, "never expired");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "expired too early"
    );
}

#[tokio::test]
async fn a_cleared_session_cookie_deletes_the_shared_entry_and_unknown_names_are_misses() {
    let redis = RedisServer::start().await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = shared(&[&b1, &b2], &redis, 1800, 60);
    let (a, b) = (Proxy::start(&config).await, Proxy::start(&config).await);
    let client = client();
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    let (id, _) = login(&client, &a).await;
    assert!(wait_exists(&redis, &id, true).await);
    let logout = get(
        &client,
        &a.url("/logout"),
        Some(&format!("JSESSIONID={id}")),
    )
    .await;
    assert!(logout.set_cookies().iter().any(|l| l.contains("Max-Age=0")));
    assert!(
        wait_exists(&redis, &id, false).await,
        "the logout deleted it in Redis"
    );
    // A record naming a backend this instance does not have is a miss: a new session.
    let mut c = redis.connection().await;
    let _: () = redis::cmd("SET")
        .arg(key_of("foreign"))
        .arg("1700000000 iis9")
        .query_async(&mut c)
        .await
        .unwrap();
    let reply = get(&client, &b.url("/foreign"), Some("JSESSIONID=foreign")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(outcome(&b, "/foreign").await, "new");
}

#[tokio::test]
async fn a_hung_redis_fails_no_request_and_is_used_again_once_it_answers() {
    let redis = RedisServer::start().await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = shared(&[&b1, &b2], &redis, 1800, 60);
    let a = Proxy::start(&config).await;
    let client = client();
    wait_store(&client, &a, true).await;
    let (id, home) = login(&client, &a).await;
    assert!(wait_exists(&redis, &id, true).await);
    redis.pause(true);
    // Local misses wait at most the lookup timeout, then are balanced; known ids stay pinned.
    for i in 0..6 {
        let unknown = get(&client, &a.url("/"), Some(&format!("JSESSIONID=hung-{i}"))).await;
        assert_eq!(unknown.status, 200);
        let known = get(&client, &a.url("/"), Some(&format!("JSESSIONID={id}"))).await;
        assert_eq!(known.backend(), home);
    }
    assert_eq!(store_view(&client, &a).await["up"], false, "{}", a.log());
    redis.pause(false);
    wait_store(&client, &a, true).await;
    let (id, home) = login(&client, &a).await;
    assert!(
        wait_exists(&redis, &id, true).await,
        "written again once Redis answers"
    );
    let reply = get(&client, &a.url("/"), Some(&format!("JSESSIONID={id}"))).await;
    assert_eq!(reply.backend(), home);
}

#[tokio::test]
async fn sessions_are_shared_through_a_redis_that_speaks_only_tls() {
    let redis = RedisServer::start_tls().await;
    let ca = redis.tls_cert().unwrap().cert_file.display().to_string();
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = shared(&[&b1, &b2], &redis, 1800, 60).replacen(
        "refresh_interval_seconds: 60 }",
        &format!("refresh_interval_seconds: 60, tls: true, ca_file: \"{ca}\" }}"),
        1,
    );
    assert!(config.contains("tls: true"), "{config}");
    let (a, b) = (Proxy::start(&config).await, Proxy::start(&config).await);
    let client = client();
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    let (id, home) = login(&client, &a).await;
    assert!(
        wait_exists(&redis, &id, true).await,
        "A wrote the session over TLS"
    );
    assert_honoured(&client, &b, &id, &home, "b").await;

    // A proxy that does not trust the server's certificate never gets the store up, and
    // still serves from its own table.
    let dir = tempfile::tempdir().unwrap();
    let stranger = common::tls::TestCert::generate(dir.path(), "stranger", &["127.0.0.1"]);
    let untrusting = config.replace(&ca, &stranger.cert_file.display().to_string());
    let c = Proxy::start(&untrusting).await;
    let said = eventually(Duration::from_secs(10), || {
        let log = c.log();
        async move { log.contains("down at start") }
    });
    assert!(said.await, "the store says it is down:\n{}", c.log());
    assert_eq!(store_view(&client, &c).await["up"], false, "{}", c.log());
    assert_eq!(get(&client, &c.url("/"), None).await.status, 200);
}
