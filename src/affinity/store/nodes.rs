//! Cluster mode's background checks, once a second: connect (the crate's cluster connection,
//! which reads the slot map itself), read `CLUSTER SLOTS` into the store's [`Topology`] (for
//! the per-primary accounting only: routing stays the crate's), and check each primary
//! (`CLUSTER INFO`: it answers and says `cluster_state:ok`) on a connection of its own — a
//! heartbeat while it is up, a probe (connect, then within the lookup timeout) while it is
//! not. Not through the cluster connection: for a command without a key it falls back to any
//! node when the slot's primary is not connected, so a gone primary would seem to answer.
//! Each primary's changes of state are logged once.

use super::cluster::{self, Node, Range, Topology};
use super::connection::{self, Connection};
use super::service::report_probe;
use super::RedisStore;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What the background service keeps for a cluster store: the crate's cluster client, and a
/// connection of its own to each primary (by address) for the pings.
pub struct Checker {
    client: redis::cluster::ClusterClient,
    direct: HashMap<String, MultiplexedConnection>,
}

impl Checker {
    pub fn new(client: redis::cluster::ClusterClient) -> Checker {
        Checker {
            client,
            direct: HashMap::new(),
        }
    }
}

/// One tick of the background service for a cluster store.
pub async fn tick(store: &Arc<RedisStore>, checker: &mut Checker) {
    let (c, client) = (&store.config, &checker.client);
    let Some(view) = &store.cluster else {
        return;
    };
    let connection = match store.connection.get() {
        Some(Connection::Cluster(connection)) => connection,
        _ => match tokio::time::timeout(c.connect_timeout * 2, cluster::connect(c, client)).await {
            Ok(Ok(connection)) => {
                store
                    .connection
                    .set(Connection::Cluster(connection.clone()), None);
                connection
            }
            Ok(Err(e)) => {
                return report_probe(store, Err(format!("no cluster node answered: {e}")))
            }
            Err(_) => return report_probe(store, Err("no cluster node answered in time".into())),
        },
    };
    let topology = view.get();
    match read_slots(store, connection.clone(), &topology).await {
        Ok(ranges) if !topology.same_ranges(&ranges) => {
            let next = Topology::from_ranges(ranges, &topology);
            log::info!(
                "session store redis {} ({}): cluster slots {}: {}",
                c.address(),
                store.label,
                if topology.nodes().is_empty() {
                    "read"
                } else {
                    "changed"
                },
                next.describe()
            );
            view.set(next);
        }
        Ok(_) => {}
        Err(e) if topology.nodes().is_empty() => {
            return report_probe(store, Err(format!("cannot read the cluster's slots: {e}")))
        }
        // The last slot table read stays in force.
        Err(_) => {}
    }
    report_probe(store, Ok(()));
    check_nodes(store, &mut checker.direct, view.get()).await;
}

/// `CLUSTER SLOTS` from a primary that is up, or any node.
async fn read_slots(
    store: &RedisStore,
    mut connection: ClusterConnection,
    topology: &Topology,
) -> Result<Vec<Range>, String> {
    let routes = topology
        .nodes()
        .iter()
        .filter(|n| n.health.is_up())
        .map(|n| to_slot(n.first_slot))
        .chain(std::iter::once(RoutingInfo::SingleNode(
            SingleNodeRoutingInfo::Random,
        )));
    let mut last = String::new();
    for route in routes {
        let mut command = redis::cmd("CLUSTER");
        command.arg("SLOTS");
        let answer = tokio::time::timeout(
            store.config.connect_timeout,
            connection.route_command(command, route),
        )
        .await;
        match answer {
            Ok(Ok(reply)) => match cluster::parse_slots(&reply) {
                Some(ranges) if !ranges.is_empty() => return Ok(ranges),
                _ => last = format!("unexpected CLUSTER SLOTS reply: {reply:?}"),
            },
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".to_string(),
        }
    }
    Err(last)
}

fn to_slot(slot: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
        slot,
        SlotAddr::Master,
    )))
}

/// `CLUSTER INFO` on `connection` within `timeout`: the primary answers, and serves (a
/// node that just came back says `cluster_state:fail` until it knows the cluster again; so
/// do all nodes, with `cluster-require-full-coverage yes`, while some slot has no primary).
async fn ping(connection: &mut MultiplexedConnection, timeout: Duration) -> Result<(), String> {
    let mut info = redis::cmd("CLUSTER");
    info.arg("INFO");
    match tokio::time::timeout(timeout, info.query_async::<String>(connection)).await {
        Ok(Ok(info)) => serving(&info),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

/// Whether a `CLUSTER INFO` reply says the node serves.
pub fn serving(info: &str) -> Result<(), String> {
    let state = info
        .lines()
        .find_map(|l| l.strip_prefix("cluster_state:"))
        .map(str::trim);
    match state {
        Some("ok") => Ok(()),
        Some(state) => Err(format!("cluster_state:{state}")),
        None => Err("no cluster_state in CLUSTER INFO".to_string()),
    }
}

/// A primary's own connection: the one kept, or a new one within the connect timeout.
async fn direct(
    store: &RedisStore,
    node: &Node,
    kept: Option<MultiplexedConnection>,
) -> Result<MultiplexedConnection, String> {
    if let Some(kept) = kept {
        return Ok(kept);
    }
    let client =
        connection::standalone_client(&store.config, &node.at).map_err(|e| e.to_string())?;
    let timeout = store.config.connect_timeout;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    match tokio::time::timeout(
        timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

/// Every primary at once: a slow or gone one does not hold up the others. A connection that
/// failed is dropped (the next tick connects anew).
async fn check_nodes(
    store: &Arc<RedisStore>,
    kept: &mut HashMap<String, MultiplexedConnection>,
    topology: Arc<Topology>,
) {
    kept.retain(|address, _| topology.nodes().iter().any(|n| n.address == *address));
    let mut pings = tokio::task::JoinSet::new();
    for (i, node) in topology.nodes().iter().enumerate() {
        let (store, node, connection) = (store.clone(), node.clone(), kept.remove(&node.address));
        pings.spawn(async move {
            let up = node.health.is_up();
            let (lookup, connect) = (store.config.lookup_timeout, store.config.connect_timeout);
            let result = match direct(&store, &node, connection).await {
                Ok(mut connection) => {
                    let first = if up {
                        Ok(())
                    } else {
                        ping(&mut connection, connect).await
                    };
                    match first {
                        Ok(()) => ping(&mut connection, lookup).await.map(|()| connection),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            (i, up, result)
        });
    }
    while let Some(joined) = pings.join_next().await {
        let Ok((i, up, result)) = joined else {
            continue;
        };
        let Some(node) = topology.nodes().get(i) else {
            continue;
        };
        let result = match result {
            Ok(connection) => {
                kept.insert(node.address.clone(), connection);
                Ok(())
            }
            Err(e) => Err(e),
        };
        match (up, result) {
            (true, Ok(())) => node.health.success(),
            (true, Err(e)) => store.node_failed(node, "heartbeat", &e),
            (false, result) => report_node_probe(store, node, result),
        }
    }
}

/// Log a primary's probe if it changed its state (once per change).
fn report_node_probe(store: &RedisStore, node: &Node, result: Result<(), String>) {
    let (address, label) = (store.config.address(), &store.label);
    let primary = format!("primary {} ({} slots)", node.address, node.slots);
    match result {
        Ok(()) => {
            if let Some(before) = node.health.probe_succeeded() {
                if before != super::State::Starting {
                    log::warn!(
                        "session store redis {address} ({label}): {primary} up again; the \
                         sessions in its slots are shared again"
                    );
                }
            }
        }
        Err(e) => {
            if node.health.probe_failed() {
                log::warn!(
                    "session store redis {address} ({label}): {primary} down at start ({e}); \
                     the sessions in its slots use the local table alone until it answers"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_serves_when_it_says_its_cluster_is_ok() {
        assert_eq!(serving("cluster_enabled:1\r\ncluster_state:ok\r\n"), Ok(()));
        assert_eq!(
            serving("cluster_state:fail\r\ncluster_slots_assigned:16384\r\n"),
            Err("cluster_state:fail".to_string())
        );
        assert!(serving("# nothing").is_err());
    }
}
