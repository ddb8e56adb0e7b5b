//! Learned sessions shared through a Redis Cluster (`mode: cluster`): three primaries of real
//! `redis-server`s on loopback (created with `redis-cli --cluster create`), two proxy
//! instances (real binaries). Sessions land on all three primaries (checked with
//! `CLUSTER KEYSLOT` and the slot table); a stopped primary costs only the sessions in its
//! slots, which fall back to each proxy's own table, while the others stay shared and no
//! request fails; so does a hung one (SIGSTOP). Slots that move between primaries are
//! followed (`ASK` during the move, `MOVED` after). Bad input: a cluster no node of which
//! answers, and one whose primary is down at start.

mod common;
use common::redis_store::*;
use common::redis_topology::Cluster;
use common::*;
use std::time::Duration;

fn cluster_pool(backends: &[&TestBackend], cluster: &Cluster) -> String {
    shared_pool(
        backends,
        &format!("mode: cluster, nodes: {}", yaml_list(&cluster.addresses())),
        1800,
    )
}

/// Sessions learned through `proxy`, by the primary (index into `cluster.nodes`) holding
/// them, until each primary holds `per_node` (written: checked on that primary).
async fn learn_on_every_primary(
    client: &reqwest::Client,
    proxy: &Proxy,
    cluster: &Cluster,
    per_node: usize,
) -> Vec<Vec<(String, String)>> {
    let mut by_node = vec![Vec::new(); cluster.nodes.len()];
    for _ in 0..200 {
        if by_node.iter().all(|s: &Vec<_>| s.len() >= per_node) {
            break;
        }
        let (id, home) = login(client, proxy).await;
        let slot = cluster.keyslot(&key_of(&id)).await;
        let node = cluster.owner(slot).await;
        let key = key_of(&id);
        let written = eventually(Duration::from_secs(10), || cluster.exists(&key)).await;
        assert!(written, "{id} written to its primary:\n{}", proxy.log());
        by_node[node].push((id, home));
    }
    assert!(
        by_node.iter().all(|s| s.len() >= per_node),
        "sessions on every primary: {:?}",
        by_node.iter().map(Vec::len).collect::<Vec<_>>()
    );
    by_node
}

#[tokio::test]
async fn a_stopped_primary_costs_only_the_sessions_in_its_slots_and_nothing_fails() {
    let mut cluster = Cluster::start().await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = cluster_pool(&[&b1, &b2], &cluster);
    let (a, b) = (Proxy::start(&config).await, Proxy::start(&config).await);
    let client = client();
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    let view = store_view(&client, &a).await;
    assert_eq!(view["mode"], "cluster");
    assert_eq!(view["nodes"].as_array().map(Vec::len), Some(3), "{view}");

    // Learned on A; keys on all three primaries; B follows one of each now.
    let sessions = learn_on_every_primary(&client, &a, &cluster, 3).await;
    for (node, list) in sessions.iter().enumerate() {
        let (id, home) = &list[0];
        assert_honoured(&client, &b, id, home, &format!("before-{node}")).await;
    }

    // Stop the third primary. Under traffic, nothing fails, A keeps every session it learned.
    let gone = 2;
    let gone_address = cluster.nodes[gone].address();
    cluster.nodes[gone].kill();
    let mine: Vec<(String, String)> = sessions.iter().flatten().cloned().collect();
    let mut round = 0;
    let noticed = eventually(Duration::from_secs(30), || {
        round += 1;
        let (client, a, b, mine) = (&client, &a, &b, &mine);
        async move {
            for (id, home) in mine {
                let reply = get(client, &a.url("/"), Some(&format!("JSESSIONID={id}"))).await;
                assert_eq!(reply.status, 200, "{}", a.log());
                assert_eq!(reply.backend(), home, "A's own session moved");
            }
            for proxy in [a, b] {
                let cookie = format!("JSESSIONID=unknown-{round}");
                let reply = get(client, &proxy.url("/"), Some(&cookie)).await;
                assert_eq!(reply.status, 200, "{}", proxy.log());
            }
            store_view(client, a).await["state"] == "partial"
                && store_view(client, b).await["state"] == "partial"
        }
    })
    .await;
    assert!(noticed, "the stopped primary is shown down:\n{}", a.log());
    let view = store_view(&client, &b).await;
    assert_eq!(view["up"], false, "{view}");
    let down: Vec<&serde_json::Value> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] == "down")
        .collect();
    assert_eq!(down.len(), 1, "{view}");
    assert_eq!(down[0]["address"], gone_address.as_str(), "{view}");

    // The sessions of the two live primaries that B has not seen yet: still shared.
    for (node, list) in sessions.iter().enumerate().filter(|(n, _)| *n != gone) {
        for (i, (id, home)) in list.iter().enumerate().skip(1) {
            assert_honoured(&client, &b, id, home, &format!("after-{node}-{i}")).await;
        }
    }
    // The stopped primary's: B cannot know them; its requests are served as new sessions.
    for (i, (id, _)) in sessions[gone].iter().enumerate().skip(1) {
        let path = format!("/lost-{i}");
        let reply = get(&client, &b.url(&path), Some(&format!("JSESSIONID={id}"))).await;
        assert_eq!(reply.status, 200);
        assert_eq!(outcome(&b, &path).await, "new");
    }
    // New sessions keep being shared when their slot's primary is up.
    let mut shared = 0;
    for i in 0..12 {
        let (id, home) = login(&client, &a).await;
        let node = cluster.owner(cluster.keyslot(&key_of(&id)).await).await;
        if node != gone {
            let key = key_of(&id);
            assert!(eventually(Duration::from_secs(10), || cluster.exists(&key)).await);
            assert_honoured(&client, &b, &id, &home, &format!("new-{i}")).await;
            shared += 1;
        }
    }
    assert!(
        shared > 0,
        "some of 12 new sessions landed on a live primary"
    );
    for proxy in [&a, &b] {
        let log = proxy.log();
        let line = format!("primary {gone_address} (");
        let downs = log
            .lines()
            .filter(|l| l.contains(&line) && l.contains("down after"))
            .count();
        assert_eq!(downs, 1, "the primary's fall is logged once:\n{log}");
        assert!(!log.contains("panicked"), "{log}");
    }

    // Back (empty: no persistence): both proxies use it again, and share what lands there.
    cluster.nodes[gone].restart().await;
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    let mut back = 0;
    for i in 0..30 {
        let (id, home) = login(&client, &a).await;
        if cluster.owner(cluster.keyslot(&key_of(&id)).await).await == gone {
            let key = key_of(&id);
            let written = eventually(Duration::from_secs(10), || cluster.exists(&key)).await;
            assert!(written, "{}", a.log());
            assert_honoured(&client, &b, &id, &home, &format!("back-{i}")).await;
            back += 1;
            if back == 2 {
                break;
            }
        }
    }
    assert!(
        back > 0,
        "a new session landed on the primary that came back"
    );
    for proxy in [&a, &b] {
        let log = proxy.log();
        assert!(
            log.contains(&format!("primary {gone_address} (")) && log.contains("up again"),
            "{log}"
        );
    }
}

/// `CLUSTER MYID` of a node.
async fn node_id(node: &common::redis_server::RedisServer) -> String {
    let mut c = node.connection().await;
    redis::cmd("CLUSTER")
        .arg("MYID")
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn run(node: &common::redis_server::RedisServer, args: &[&str]) {
    let mut c = node.connection().await;
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    let _: redis::Value = command.query_async(&mut c).await.unwrap();
}

/// Move the slot of session `id`'s key from primary `from` to `to`, key included, but leave
/// the slot marked migrating (the last step, `CLUSTER SETSLOT … NODE`, is the caller's).
/// Returns the slot.
async fn migrate(cluster: &Cluster, from: usize, to: usize, id: &str) -> String {
    let (source, target) = (&cluster.nodes[from], &cluster.nodes[to]);
    let (source_id, target_id) = (node_id(source).await, node_id(target).await);
    let key = key_of(id);
    let slot = cluster.keyslot(&key).await.to_string();
    run(
        target,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source_id],
    )
    .await;
    run(
        source,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id],
    )
    .await;
    let port = target.port.to_string();
    run(source, &["MIGRATE", "127.0.0.1", &port, &key, "0", "5000"]).await;
    slot
}

#[tokio::test]
async fn sessions_whose_slot_moves_to_another_primary_are_still_followed() {
    let cluster = Cluster::start().await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = cluster_pool(&[&b1, &b2], &cluster);
    let (a, b) = (Proxy::start(&config).await, Proxy::start(&config).await);
    let client = client();
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    // Two sessions on primary 0, in different slots; B has seen neither (its slot map says
    // primary 0 serves them).
    let sessions = learn_on_every_primary(&client, &a, &cluster, 2).await;
    let (moved, asked) = (&sessions[0][0], &sessions[0][1]);
    let target_id = node_id(&cluster.nodes[1]).await;
    // Half-way: the key is on the target, the slot still the source's: the source answers
    // ASK, and the crate asks the target.
    let slot = migrate(&cluster, 0, 1, &asked.0).await;
    assert_honoured(&client, &b, &asked.0, &asked.1, "ask").await;
    for node in &cluster.nodes {
        run(node, &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id]).await;
    }

    // Done: the slot is the target's; B's map still says the source, which answers MOVED.
    let slot = migrate(&cluster, 0, 1, &moved.0).await;
    for node in &cluster.nodes {
        run(node, &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id]).await;
    }
    assert_honoured(&client, &b, &moved.0, &moved.1, "moved").await;

    // A writes to the new owner too (its refresh finds the key there; a logout deletes it).
    let logout = get(
        &client,
        &a.url("/logout"),
        Some(&format!("JSESSIONID={}", moved.0)),
    )
    .await;
    assert_eq!(logout.status, 200);
    let deleted = eventually(Duration::from_secs(10), || async {
        !cluster.exists(&key_of(&moved.0)).await
    })
    .await;
    assert!(deleted, "the delete followed the slot:\n{}", a.log());
    for proxy in [&a, &b] {
        let view = store_view(&client, proxy).await;
        assert_eq!(view["writes_failed"], 0, "{view}");
        assert_eq!(view["lookup_failures"], 0, "{view}");
    }
}

#[tokio::test]
async fn a_cluster_no_node_of_which_answers_leaves_the_proxy_serving_from_its_table() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = shared_pool(
        &[&b1, &b2],
        "mode: cluster, nodes: [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]",
        1800,
    );
    let a = Proxy::start(&config).await;
    assert_serves_alone(&a, "no cluster node answered").await;
}

#[tokio::test]
async fn a_primary_down_at_start_is_said_once_and_the_others_are_shared() {
    let mut cluster = Cluster::start().await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let gone_address = cluster.nodes[2].address();
    cluster.nodes[2].kill();
    let config = cluster_pool(&[&b1, &b2], &cluster);
    let (a, b) = (Proxy::start(&config).await, Proxy::start(&config).await);
    let client = client();
    for proxy in [&a, &b] {
        let partial = eventually(Duration::from_secs(20), || async {
            store_view(&client, proxy).await["state"] == "partial"
        })
        .await;
        assert!(
            partial,
            "{}\n{}",
            store_view(&client, proxy).await,
            proxy.log()
        );
    }
    // Sessions on the live primaries are shared; none fails.
    let mut shared = 0;
    for i in 0..12 {
        let (id, home) = login(&client, &a).await;
        let node = cluster.owner(cluster.keyslot(&key_of(&id)).await).await;
        if node != 2 {
            let key = key_of(&id);
            assert!(eventually(Duration::from_secs(10), || cluster.exists(&key)).await);
            assert_honoured(&client, &b, &id, &home, &format!("s-{i}")).await;
            shared += 1;
        } else {
            let reply = get(&client, &b.url("/"), Some(&format!("JSESSIONID={id}"))).await;
            assert_eq!(reply.status, 200);
        }
    }
    assert!(shared > 0, "some of 12 sessions landed on a live primary");
    // Through several probes of the gone primary, it is said once.
    let started = std::time::Instant::now();
    let mut round = 0;
    while started.elapsed() < 3 * sticky_proxy::affinity::store::service::PROBE_INTERVAL {
        round += 1;
        traffic(&client, &a, &[], &format!("a-{round}")).await;
        traffic(&client, &b, &[], &format!("b-{round}")).await;
    }
    for proxy in [&a, &b] {
        let log = proxy.log();
        let line = format!("primary {gone_address} (");
        let said = log
            .lines()
            .filter(|l| l.contains(&line) && l.contains("down at start"))
            .count();
        assert_eq!(said, 1, "said once:\n{log}");
    }
}

#[tokio::test]
async fn a_hung_primary_costs_only_the_sessions_in_its_slots() {
    let cluster = Cluster::start().await;
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let config = cluster_pool(&[&b1, &b2], &cluster);
    let (a, b) = (Proxy::start(&config).await, Proxy::start(&config).await);
    let client = client();
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
    let sessions = learn_on_every_primary(&client, &a, &cluster, 4).await;
    let hung = 2;
    let hung_address = cluster.nodes[hung].address();
    // SIGSTOP: it accepts nothing and answers nothing.
    cluster.nodes[hung].pause(true);
    let mine: Vec<(String, String)> = sessions.iter().flatten().cloned().collect();
    let mut round = 0;
    let noticed = eventually(Duration::from_secs(30), || {
        round += 1;
        let (client, a, b, mine) = (&client, &a, &b, &mine);
        async move {
            traffic(client, a, mine, &format!("a-{round}")).await;
            traffic(client, b, &[], &format!("b-{round}")).await;
            store_view(client, b).await["state"] == "partial"
        }
    })
    .await;
    assert!(noticed, "{}", b.log());
    // The two others stay shared: B follows the sessions it has not seen on them.
    for (node, list) in sessions.iter().enumerate().filter(|(n, _)| *n != hung) {
        for (i, (id, home)) in list.iter().enumerate() {
            assert_honoured(&client, &b, id, home, &format!("live-{node}-{i}")).await;
        }
    }
    let view = store_view(&client, &b).await;
    let down: Vec<&serde_json::Value> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] != "up")
        .collect();
    assert_eq!(
        down.len(),
        1,
        "only the hung primary is down: {view}\n{}",
        b.log()
    );
    assert_eq!(down[0]["address"], hung_address.as_str());
    for proxy in [&a, &b] {
        let log = proxy.log();
        let line = format!("primary {hung_address} (");
        let others = log
            .lines()
            .filter(|l| l.contains("down after") && !l.contains(&line))
            .count();
        assert_eq!(others, 0, "no other primary fell meanwhile:\n{log}");
    }
    // Woken up, it is used again.
    cluster.nodes[hung].pause(false);
    wait_store(&client, &a, true).await;
    wait_store(&client, &b, true).await;
}
