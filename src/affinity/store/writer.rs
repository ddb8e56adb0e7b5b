//! The one writer task of a store: drains the bounded write queue in batches of at most
//! `MAX_BATCH` (256), each sent as a pipeline — one for a single server, one per slot in a cluster
//! (the crate refuses a pipeline across slots; the batch's pipelines are sent all at once, so
//! each node still gets its commands back to back on its connection). Writes whose target is
//! down (the store, or a cluster primary) are dropped and counted.

use super::cluster;
use super::connection::{is_broken_connection, Connection};
use super::{Op, RedisStore, Target};
use crate::affinity::sessions::SessionKey;
use std::sync::Arc;

/// The most writes sent in one batch.
const MAX_BATCH: usize = 256;

/// A write: a queued [`Op`], or the writer's own restoring of an entry Redis lost.
#[derive(Debug, Clone, Copy)]
enum Write {
    Op(Op),
    Restore { key: SessionKey, backend: usize },
}

/// Writes that go in one pipeline, to one target.
struct Group {
    target: Target,
    writes: Vec<usize>,
}

/// Drain the queue in batches.
pub async fn write_loop(store: Arc<RedisStore>, mut receiver: tokio::sync::mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match store.connection.get().filter(|_| store.health.is_up()) {
            Some(connection) => {
                let writes = batch.iter().map(|op| Write::Op(*op)).collect();
                write_batch(&store, connection, writes).await;
            }
            None => store.count_writes(0, 0, batch.len()),
        }
        batch.clear();
    }
}

/// Send one batch; where Redis knows better than the local table (another instance recorded
/// the session elsewhere), the local table follows Redis; entries Redis lost (a restart
/// without persistence) are written again.
async fn write_batch(store: &Arc<RedisStore>, connection: Connection, writes: Vec<Write>) {
    let results = send_all(store, &connection, &writes).await;
    let mut restores = Vec::new();
    for (group, values) in results {
        let Some(values) = values else {
            continue;
        };
        // One value per GET / GETEX, in order.
        let mut values = values.into_iter();
        for &i in &group.writes {
            let (key, backend, refresh) = match writes[i] {
                Write::Op(Op::SetIfAbsent { key, backend }) if store.encode(backend).is_some() => {
                    (key, backend, false)
                }
                Write::Op(Op::Refresh { key, backend }) => (key, backend, true),
                _ => continue,
            };
            let stored = values.next().flatten();
            match stored.as_deref().map(|v| store.decode(v)) {
                Some(Some(theirs)) if theirs != backend => {
                    store.table.insert(key, theirs);
                }
                None if refresh => restores.push(Write::Restore { key, backend }),
                _ => {}
            }
        }
    }
    if !restores.is_empty() {
        send_all(store, &connection, &restores).await;
    }
}

/// The groups of a batch: all of it to the store, or (cluster) by slot to each slot's primary
/// if it is up. Also the number of writes dropped (their primary is down or unknown).
fn plan(store: &RedisStore, keys: &[String]) -> (Vec<Group>, usize) {
    let Some(view) = &store.cluster else {
        let writes = (0..keys.len()).collect();
        return (
            vec![Group {
                target: Target::Store,
                writes,
            }],
            0,
        );
    };
    let topology = view.get();
    let slots: Vec<u16> = keys
        .iter()
        .map(|k| cluster::slot_of(k.as_bytes()))
        .collect();
    let mut dropped = 0;
    let mut groups = Vec::new();
    for (slot, writes) in cluster::group_by_slot(&slots) {
        match topology.owner(slot).filter(|n| n.health.is_up()) {
            Some(node) => groups.push(Group {
                target: Target::Node(Arc::clone(node)),
                writes,
            }),
            None => dropped += writes.len(),
        }
    }
    (groups, dropped)
}

/// The commands of one write.
fn add(pipe: &mut redis::Pipeline, store: &RedisStore, key: &str, write: Write) {
    let ttl = store.ttl_seconds();
    match write {
        Write::Op(Op::Set { backend, .. }) => {
            if let Some(value) = store.encode(backend) {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("EX")
                    .arg(ttl)
                    .ignore();
            }
        }
        Write::Op(Op::SetIfAbsent { backend, .. }) => {
            if let Some(value) = store.encode(backend) {
                set_if_absent(pipe, key, value, ttl);
                pipe.cmd("GET").arg(key);
            }
        }
        Write::Op(Op::Refresh { .. }) => {
            pipe.cmd("GETEX").arg(key).arg("EX").arg(ttl);
        }
        Write::Op(Op::Delete { .. }) => {
            pipe.cmd("DEL").arg(key).ignore();
        }
        Write::Restore { backend, .. } => {
            if let Some(value) = store.encode(backend) {
                set_if_absent(pipe, key, value, ttl);
            }
        }
    }
}

/// `SET key value EX ttl NX`, its reply ignored.
fn set_if_absent(pipe: &mut redis::Pipeline, key: &str, value: String, ttl: u64) {
    pipe.cmd("SET")
        .arg(key)
        .arg(value)
        .arg("EX")
        .arg(ttl)
        .arg("NX")
        .ignore();
}

fn key_of(write: &Write) -> SessionKey {
    match *write {
        Write::Op(
            Op::Set { key, .. }
            | Op::SetIfAbsent { key, .. }
            | Op::Refresh { key, .. }
            | Op::Delete { key },
        )
        | Write::Restore { key, .. } => key,
    }
}

/// Send every group (at once when there are several); each group with its replies, `None`
/// for a group that failed.
async fn send_all(
    store: &Arc<RedisStore>,
    connection: &Connection,
    writes: &[Write],
) -> Vec<(Group, Option<Vec<Option<String>>>)> {
    let keys: Vec<String> = writes.iter().map(|w| store.redis_key(key_of(w))).collect();
    let (groups, dropped) = plan(store, &keys);
    store.count_writes(0, 0, dropped);
    let pipeline = |group: &Group| {
        let mut pipe = redis::pipe();
        for &i in &group.writes {
            add(&mut pipe, store, &keys[i], writes[i]);
        }
        pipe
    };
    if groups.len() <= 1 {
        let mut results = Vec::with_capacity(1);
        for group in groups {
            let pipe = pipeline(&group);
            let values = send(
                store,
                connection.clone(),
                &pipe,
                &group.target,
                group.writes.len(),
            )
            .await;
            results.push((group, values));
        }
        return results;
    }
    let mut sends = tokio::task::JoinSet::new();
    for (i, group) in groups.iter().enumerate() {
        let (store, connection, pipe) = (store.clone(), connection.clone(), pipeline(group));
        let (target, count) = (group.target.clone(), group.writes.len());
        sends.spawn(async move { (i, send(&store, connection, &pipe, &target, count).await) });
    }
    let mut replies: Vec<Option<Vec<Option<String>>>> = vec![None; groups.len()];
    while let Some(joined) = sends.join_next().await {
        if let Ok((i, values)) = joined {
            replies[i] = values;
        }
    }
    groups.into_iter().zip(replies).collect()
}

/// Send one group's pipeline within the connect timeout; count it against its target; `None`
/// on failure.
async fn send(
    store: &RedisStore,
    mut connection: Connection,
    pipe: &redis::Pipeline,
    target: &Target,
    writes: usize,
) -> Option<Vec<Option<String>>> {
    let deadline = tokio::time::Instant::now() + store.config.connect_timeout;
    let mut retried = false;
    let result = loop {
        let result = tokio::time::timeout_at(
            deadline,
            pipe.query_async::<Vec<Option<String>>>(&mut connection),
        )
        .await;
        match result {
            // The connection broke (Redis restarted): once more on the reconnected one.
            Ok(Err(e)) if !retried && is_broken_connection(&e) => retried = true,
            result => break result,
        }
    };
    let error = match result {
        Ok(Ok(values)) => {
            store.succeeded(target);
            store.count_writes(writes, 0, 0);
            return Some(values);
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_string(),
    };
    store.count_writes(0, writes, 0);
    store.failed_at(target, "write", &error);
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::affinity::sessions::{key_of, SessionTable};
    use crate::config::{HostPort, RedisStoreConfig, RedisTopology, TableConfig};
    use std::time::Duration;

    /// A cluster store whose view has three primaries (slots 0-5460, 5461-10922, the rest);
    /// the first two up, the third down.
    fn cluster_store() -> RedisStore {
        let at = |port| HostPort {
            host: "127.0.0.1".into(),
            port,
        };
        let config = RedisStoreConfig {
            topology: RedisTopology::Cluster {
                nodes: vec![at(7001)],
            },
            username: None,
            password: None,
            database: 0,
            key_prefix: "sticky:".into(),
            lookup_timeout: Duration::from_millis(20),
            connect_timeout: Duration::from_secs(1),
            refresh_interval: Duration::from_secs(60),
            write_queue: 10,
            tls_ca_pem: None,
        };
        let table = TableConfig {
            capacity: 100,
            idle_timeout: Duration::from_secs(1800),
            max_lifetime: None,
        };
        let table = Arc::new(SessionTable::new(table));
        let store = RedisStore::new(
            config,
            "web",
            "learn",
            vec!["iis1".into()],
            table,
            Duration::from_secs(1800),
            None,
        );
        let ranges = vec![
            (0, 5460, at(7001)),
            (5461, 10922, at(7002)),
            (10923, 16383, at(7003)),
        ];
        let topology = cluster::Topology::from_ranges(ranges, &cluster::Topology::default());
        for node in &topology.nodes()[..2] {
            node.health.probe_succeeded();
        }
        topology.nodes()[2].health.probe_failed();
        store.cluster.as_ref().unwrap().set(topology);
        store.health.probe_succeeded();
        store
    }

    #[test]
    fn a_cluster_batch_goes_out_by_slot_and_the_writes_of_a_primary_that_is_down_are_dropped() {
        let store = cluster_store();
        let keys: Vec<String> = (0..60)
            .map(|i| store.redis_key(key_of(format!("id-{i}").as_bytes())))
            .collect();
        let mut twice = keys.clone();
        twice.push(keys[0].clone());
        let (groups, dropped) = plan(&store, &twice);
        let on_down = twice
            .iter()
            .filter(|k| cluster::slot_of(k.as_bytes()) > 10922)
            .count();
        assert!(
            on_down > 0 && on_down < twice.len(),
            "{on_down} of {}",
            twice.len()
        );
        assert_eq!(dropped, on_down);
        let sent: usize = groups.iter().map(|g| g.writes.len()).sum();
        assert_eq!(sent + dropped, twice.len());
        for group in &groups {
            let slots: Vec<u16> = group
                .writes
                .iter()
                .map(|&i| cluster::slot_of(twice[i].as_bytes()))
                .collect();
            assert!(
                slots.iter().all(|s| *s == slots[0]),
                "one slot per pipeline"
            );
            assert!(group.writes.windows(2).all(|w| w[0] < w[1]), "in order");
            match &group.target {
                Target::Node(node) => assert!(node.health.is_up() && slots[0] <= 10922),
                Target::Store => panic!("a cluster write counts on its primary"),
            }
        }
        // The same key twice: one group, both writes, in order.
        let first = groups.iter().find(|g| g.writes.contains(&0));
        if cluster::slot_of(keys[0].as_bytes()) <= 10922 {
            assert_eq!(first.unwrap().writes[..], [0, 60][..]);
        }
        // Lookups: a key on a primary that is up goes there; on the one down, is not sent.
        for key in &keys {
            let up = cluster::slot_of(key.as_bytes()) <= 10922;
            assert_eq!(store.target(key).is_some(), up, "{key}");
        }
    }

    #[test]
    fn one_server_takes_the_whole_batch_and_nothing_while_down() {
        let mut store = cluster_store();
        store.cluster = None;
        let keys = vec!["a".to_string(), "b".to_string()];
        let (groups, dropped) = plan(&store, &keys);
        assert_eq!((groups.len(), dropped), (1, 0));
        assert!(matches!(groups[0].target, Target::Store));
        assert_eq!(groups[0].writes, vec![0, 1]);
        assert!(store.target("a").is_some());
        for _ in 0..super::super::FAILURES_TO_DOWN {
            store.failed("lookup", "test");
        }
        assert!(store.target("a").is_none(), "down: not asked");
    }
}
