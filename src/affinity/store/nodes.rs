//! Cluster mode's background checks, once a second: connect (the crate's cluster connection,
//! which reads the slot map itself), read `CLUSTER SLOTS` into the store's [`Topology`] (for
//! the per-primary accounting only: routing stays the crate's), and ping each primary through
//! one of its slots — a heartbeat while it is up, a probe (connect, then within the lookup
//! timeout) while it is not. Each primary's changes of state are logged once.

use super::cluster::{self, Node, Range, Topology};
use super::connection::Connection;
use super::service::report_probe;
use super::RedisStore;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use std::sync::Arc;
use std::time::Duration;

/// One tick of the background service for a cluster store.
pub async fn tick(store: &Arc<RedisStore>, client: &redis::cluster::ClusterClient) {
    let c = &store.config;
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
    check_nodes(store, connection, view.get()).await;
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

/// `PING` to the primary of `slot` within `timeout`.
async fn ping(
    mut connection: ClusterConnection,
    slot: u16,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(
        timeout,
        connection.route_command(redis::cmd("PING"), to_slot(slot)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

/// Every primary at once: a slow or gone one does not hold up the others.
async fn check_nodes(store: &RedisStore, connection: ClusterConnection, topology: Arc<Topology>) {
    let (lookup, connect) = (store.config.lookup_timeout, store.config.connect_timeout);
    let mut pings = tokio::task::JoinSet::new();
    for (i, node) in topology.nodes().iter().enumerate() {
        let (connection, slot, up) = (connection.clone(), node.first_slot, node.health.is_up());
        pings.spawn(async move {
            let result = if up {
                ping(connection, slot, lookup).await
            } else {
                match ping(connection.clone(), slot, connect).await {
                    Ok(()) => ping(connection, slot, lookup).await,
                    Err(e) => Err(e),
                }
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
