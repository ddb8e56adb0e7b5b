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
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("EX")
                    .arg(ttl)
                    .arg("NX")
                    .ignore();
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
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("EX")
                    .arg(ttl)
                    .arg("NX")
                    .ignore();
            }
        }
    }
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
