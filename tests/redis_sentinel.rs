//! Learned sessions shared through Redis Sentinel (`mode: sentinel`): real `redis-server`s on
//! loopback — a primary, one replica, three sentinels with short failover timings — and two
//! proxy instances (real binaries). The primary is killed: the sentinels promote the replica,
//! both proxies follow it by themselves, no request fails, and sessions written after the
//! failover are shared again. Sessions written just before it may be lost in the replication
//! window: the test measures how many and prints it (it is the machine's business, not a
//! pass/fail). A primary demoted while alive (a manual failover) is left as well. Also bad
//! input: sentinels that do not answer, a service they do not know, and sentinels whose
//! password differs from the data nodes'.

mod common;
use common::redis_server::RedisServer;
use common::redis_store::*;
use common::redis_topology::{SentinelOptions, SentinelSet};
use common::*;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn sentinel_pool(backends: &[&TestBackend], set: &SentinelSet, extra: &str) -> String {
    shared_pool(
        backends,
        &format!(
            "mode: sentinel, sentinels: {}, service: {}{extra}",
            yaml_list(&set.addresses()),
            set.service
        ),
        1800,
    )
}

/// Whether the key of session `id` is on `server`.
async fn stored_on(server: &RedisServer, id: &str) -> bool {
    let Ok(mut c) = server.try_connection().await else {
        return false;
    };
    redis::cmd("EXISTS")
        .arg(key_of(id))
        .query_async::<i64>(&mut c)
        .await
        .is_ok_and(|n| n == 1)
}

/// The primary a proxy's store talks to now (`/api/pools/web`).
async fn primary_of(client: &reqwest::Client, proxy: &Proxy) -> String {
    store_view(client, proxy).await["primary"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn after_the_sentinels_promote_the_replica_both_proxies_keep_sharing_sessions() {
    let mut set = SentinelSet::start("mymaster").await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = sentinel_pool(&[&b1, &b2], &set, "");
    let (a, b) = (Proxy::start(&config).await, Proxy::start(&config).await);
    let client = client();
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    let replica = set.replica.take().unwrap();
    assert_eq!(primary_of(&client, &a).await, set.primary.address());
    assert_eq!(store_view(&client, &a).await["mode"], "sentinel");

    // Learned on A and replicated: these must survive the failover.
    let mut replicated = Vec::new();
    for _ in 0..10 {
        replicated.push(login(&client, &a).await);
    }
    for (id, _) in &replicated {
        let there = eventually(Duration::from_secs(10), || stored_on(&replica, id)).await;
        assert!(there, "{id} reached the replica");
    }
    assert_honoured(&client, &b, &replicated[0].0, &replicated[0].1, "before").await;

    // Learned on A under load (four clients logging in), up to the moment the primary dies:
    // the answers went out before the failover; their writes may not reach the replica.
    let stop = Arc::new(AtomicBool::new(false));
    let learned = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, url) = (client.clone(), a.url("/login"));
        let (stop, learned) = (stop.clone(), learned.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Relaxed) {
                let reply = get(&client, &url, None).await;
                assert_eq!(reply.status, 200);
                let id = reply.cookie("JSESSIONID").unwrap();
                let at = Instant::now();
                learned
                    .lock()
                    .unwrap()
                    .push((id, reply.backend().to_string(), at));
            }
        }));
    }
    let busy = eventually(Duration::from_secs(30), || {
        let n = learned.lock().unwrap().len();
        async move { n >= 200 }
    })
    .await;
    assert!(busy, "logins under load");
    let killed_at = Instant::now();
    set.primary.kill();
    stop.store(true, Relaxed);
    for task in clients {
        task.await.unwrap();
    }
    let last_moment: Vec<(String, String)> = learned
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, at)| *at < killed_at)
        .map(|(id, home, _)| (id.clone(), home.clone()))
        .collect();
    let old = set.primary.address();

    // Through the failover: every request is served, each proxy keeps its own sessions.
    let mine_a: Vec<_> = replicated.iter().chain(&last_moment).cloned().collect();
    let mut round = 0;
    let new = replica.address();
    let promoted = eventually(Duration::from_secs(60), || {
        round += 1;
        let tag = format!("failover-{round}");
        let (client, a, b, mine_a, new) = (&client, &a, &b, &mine_a, &new);
        async move {
            traffic(client, a, mine_a, &tag).await;
            traffic(client, b, &[], &tag).await;
            primary_of(client, a).await == *new && primary_of(client, b).await == *new
        }
    })
    .await;
    assert!(
        promoted,
        "the proxies never followed:\n{}\n{}",
        a.log(),
        b.log()
    );
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    for proxy in [&a, &b] {
        let log = proxy.log();
        assert_eq!(
            log.matches("the sentinels name a new primary").count(),
            1,
            "the failover is logged once:\n{log}"
        );
        assert!(log.contains(&format!("(was {old})")), "{log}");
    }

    // What survived: every replicated session; of the last moment's, those that reached the
    // replica before the primary died.
    for (i, (id, home)) in replicated.iter().enumerate().skip(1) {
        assert_honoured(&client, &b, id, home, &format!("replicated-{i}")).await;
    }
    let mut kept = Vec::new();
    for (id, home) in &last_moment {
        if stored_on(&replica, id).await {
            kept.push((id, home));
        }
    }
    // B follows those that survived (the first and last ten of them).
    let sample = kept.iter().take(10).chain(kept.iter().rev().take(10));
    for (i, (id, home)) in sample.enumerate() {
        assert_honoured(&client, &b, id, home, &format!("last-{i}")).await;
    }
    let kept = kept.len();
    println!(
        "sentinel failover: {} of {} sessions learned in the last moment before the primary \
         was killed (answered, under load) were lost: not on the promoted replica; all {} \
         learned earlier were kept",
        last_moment.len() - kept,
        last_moment.len(),
        replicated.len()
    );

    // After the failover, sharing works both ways through the new primary.
    let (id, home) = login(&client, &a).await;
    let shared = eventually(Duration::from_secs(10), || stored_on(&replica, &id)).await;
    assert!(shared, "A writes to the new primary:\n{}", a.log());
    assert_honoured(&client, &b, &id, &home, "after-b").await;
    let (id, home) = login(&client, &b).await;
    assert!(eventually(Duration::from_secs(10), || stored_on(&replica, &id)).await);
    assert_honoured(&client, &a, &id, &home, "after-a").await;
}

#[tokio::test]
async fn a_primary_demoted_alive_by_a_manual_failover_is_left_for_the_new_one() {
    let mut set = SentinelSet::start("mymaster").await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = sentinel_pool(&[&b1, &b2], &set, "");
    let (a, b) = (Proxy::start(&config).await, Proxy::start(&config).await);
    let client = client();
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    let replica = set.replica.take().unwrap();
    let (before, before_home) = login(&client, &a).await;
    assert!(eventually(Duration::from_secs(10), || stored_on(&replica, &before)).await);
    // The old primary stays up, now a replica: it answers, but refuses writes (`READONLY`).
    let mut failover = redis::cmd("SENTINEL");
    failover.arg("FAILOVER").arg(&set.service);
    let mut c = set.sentinels[0].connection().await;
    let _: () = failover.query_async(&mut c).await.unwrap();
    let new = replica.address();
    let mut round = 0;
    let followed = eventually(Duration::from_secs(60), || {
        round += 1;
        let tag = format!("demoted-{round}");
        let (client, a, b, new) = (&client, &a, &b, &new);
        async move {
            traffic(client, a, &[], &tag).await;
            traffic(client, b, &[], &tag).await;
            primary_of(client, a).await == *new && primary_of(client, b).await == *new
        }
    })
    .await;
    assert!(
        followed,
        "the proxies never left the demoted primary:\n{}",
        a.log()
    );
    let demoted = set.primary.address();
    for proxy in [&a, &b] {
        let log = proxy.log();
        assert!(log.contains(&format!("(was {demoted})")), "{log}");
    }
    // Shared before and after, through the new primary.
    assert_honoured(&client, &b, &before, &before_home, "before").await;
    let (id, home) = login(&client, &a).await;
    assert!(eventually(Duration::from_secs(10), || stored_on(&replica, &id)).await);
    assert_honoured(&client, &b, &id, &home, "after").await;
}

#[tokio::test]
async fn sentinels_that_do_not_answer_leave_the_proxy_serving_from_its_table_and_say_so_once() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    // Nothing listens on these (port 1 and 2 on loopback are refused at once).
    let config = shared_pool(
        &[&b1, &b2],
        "mode: sentinel, sentinels: [\"127.0.0.1:1\", \"127.0.0.1:2\"], service: mymaster",
        1800,
    );
    let a = Proxy::start(&config).await;
    assert_serves_alone(&a, "no primary from the sentinels").await;
}

#[tokio::test]
async fn a_service_the_sentinels_do_not_know_leaves_the_proxy_serving_from_its_table() {
    let set = SentinelSet::start_with(
        "mymaster",
        SentinelOptions {
            replica: false,
            sentinels: 1,
            data_password: None,
            sentinel_password: None,
        },
    )
    .await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = shared_pool(
        &[&b1, &b2],
        &format!(
            "mode: sentinel, sentinels: {}, service: nosuchservice",
            yaml_list(&set.addresses())
        ),
        1800,
    );
    let a = Proxy::start(&config).await;
    assert_serves_alone(&a, "no primary from the sentinels").await;
}

#[tokio::test]
async fn sentinels_and_data_nodes_may_have_different_passwords() {
    let set = SentinelSet::start_with(
        "mymaster",
        SentinelOptions {
            replica: false,
            sentinels: 1,
            data_password: Some("data-secret"),
            sentinel_password: Some("sentinel-secret"),
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (data, watcher) = (dir.path().join("data"), dir.path().join("sentinel"));
    std::fs::write(&data, "data-secret\n").unwrap();
    std::fs::write(&watcher, "sentinel-secret\n").unwrap();
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let login_keys = format!(
        ", password_file: \"{}\", sentinel_password_file: \"{}\"",
        data.display(),
        watcher.display()
    );
    let config = sentinel_pool(&[&b1, &b2], &set, &login_keys);
    let (a, b) = (Proxy::start(&config).await, Proxy::start(&config).await);
    let client = client();
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    let (id, home) = login(&client, &a).await;
    assert!(eventually(Duration::from_secs(10), || stored_on(&set.primary, &id)).await);
    assert_honoured(&client, &b, &id, &home, "b").await;

    // With the data nodes' password given to the sentinels too, the store never comes up.
    let wrong = sentinel_pool(
        &[&b1, &b2],
        &set,
        &format!(
            ", password_file: \"{}\", sentinel_password_file: \"{}\"",
            data.display(),
            data.display()
        ),
    );
    let c = Proxy::start(&wrong).await;
    assert_serves_alone(&c, "no primary from the sentinels").await;
}
