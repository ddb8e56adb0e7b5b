//! Redis Cluster mode. Routing is the `redis` crate's: its cluster connection keeps the slot
//! map, sends each command to the primary owning its key's slot, and follows `MOVED` and `ASK`.
//! What the store adds is per-primary up/down accounting, so that a primary that is gone
//! costs only the sessions in its slots (they fall back to the local tables) while the others
//! stay shared: every second the background service reads `CLUSTER SLOTS` (through the same
//! connection) into a [`Topology`], and pings each primary through one of its slots.
//!
//! One session is one key (`<prefix><pool>:<table>:<32 hex digits>`, no hash tag), so each
//! session lives in exactly one slot and the sessions spread over every slot. A pipeline must
//! stay within one slot (the crate refuses a cross-slot one), so the writer sends one pipeline
//! per slot, all of a batch's at once: on the wire they go to each node's one multiplexed
//! connection back to back, which is that node's pipeline.

use super::health::Health;
use crate::config::{HostPort, RedisStoreConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::Value;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Slots in a Redis Cluster.
pub const SLOTS: usize = 16_384;
/// No known owner.
const NO_OWNER: u16 = u16::MAX;

/// The slot of a key: CRC16 (XMODEM, the `crc16` crate, as the `redis` crate uses) of the key (or of its `{hash tag}`) modulo 16384, as Redis
/// (`CLUSTER KEYSLOT`) and the crate compute it.
pub fn slot_of(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS as u16
}

/// One primary, as the store tracks it.
#[derive(Debug)]
pub struct Node {
    /// `ip:port` as the cluster announces it.
    pub address: String,
    /// The same, to connect to.
    pub at: HostPort,
    /// A slot it serves: requests for the node (pings) are routed to it.
    pub first_slot: u16,
    /// How many slots it serves.
    pub slots: usize,
    /// Shared with the same primary in the next topology.
    pub health: Arc<Health>,
}

/// A `CLUSTER SLOTS` range: first slot, last slot, the primary's `ip:port`.
pub type Range = (u16, u16, HostPort);

/// Which primary owns each slot, as `CLUSTER SLOTS` said last.
#[derive(Debug)]
pub struct Topology {
    ranges: Vec<Range>,
    /// An index into `nodes` per slot, or [`NO_OWNER`].
    owners: Vec<u16>,
    nodes: Vec<Arc<Node>>,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            ranges: Vec::new(),
            owners: vec![NO_OWNER; SLOTS],
            nodes: Vec::new(),
        }
    }
}

impl Topology {
    /// From `CLUSTER SLOTS` ranges; a primary `previous` knew keeps its health (the same
    /// [`Health`], which requests may be counting on right now).
    pub fn from_ranges(mut ranges: Vec<Range>, previous: &Topology) -> Topology {
        ranges.sort_by_key(|(first, last, _)| (*first, *last));
        let mut owners = vec![NO_OWNER; SLOTS];
        let mut nodes: Vec<Node> = Vec::new();
        for (first, last, at) in &ranges {
            let address = at.to_string();
            let index = match nodes.iter().position(|n| n.address == address) {
                Some(i) => i,
                None => {
                    let health = previous
                        .nodes
                        .iter()
                        .find(|n| n.address == address)
                        .map_or_else(Arc::default, |n| n.health.clone());
                    nodes.push(Node {
                        address,
                        at: at.clone(),
                        first_slot: *first,
                        slots: 0,
                        health,
                    });
                    nodes.len() - 1
                }
            };
            for slot in (*first..=*last).map(usize::from).filter(|s| *s < SLOTS) {
                if let Some(before) = nodes.get_mut(usize::from(owners[slot])) {
                    before.slots -= 1;
                }
                owners[slot] = index as u16;
                nodes[index].slots += 1;
            }
        }
        Topology {
            ranges,
            owners,
            nodes: nodes.into_iter().map(Arc::new).collect(),
        }
    }

    /// The primary owning `slot`, if known.
    pub fn owner(&self, slot: u16) -> Option<&Arc<Node>> {
        let index = *self.owners.get(usize::from(slot))?;
        self.nodes.get(usize::from(index))
    }

    pub fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    /// Whether `ranges` are what this topology was built from.
    pub fn same_ranges(&self, ranges: &[Range]) -> bool {
        let mut sorted = ranges.to_vec();
        sorted.sort_by_key(|(first, last, _)| (*first, *last));
        sorted == self.ranges
    }

    /// `ip:port (n slots), …` for the log.
    pub fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{} ({} slots)", n.address, n.slots))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The store's view of its cluster: replaced (never changed in place) by the background
/// service; requests read it.
#[derive(Debug, Default)]
pub struct ClusterView(RwLock<Arc<Topology>>);

impl ClusterView {
    pub fn get(&self) -> Arc<Topology> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, topology: Topology) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(topology);
    }
}

/// The primaries' ranges out of a `CLUSTER SLOTS` reply
/// (`[[first, last, [ip, port, id, …], replicas…], …]`); `None` if it is not one.
pub fn parse_slots(reply: &Value) -> Option<Vec<Range>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    ranges
        .iter()
        .map(|range| {
            let Value::Array(fields) = range else {
                return None;
            };
            let int = |v: &Value| match v {
                Value::Int(i) => u16::try_from(*i).ok(),
                _ => None,
            };
            let first = int(fields.first()?)?;
            let last = int(fields.get(1)?)?;
            let Value::Array(primary) = fields.get(2)? else {
                return None;
            };
            let host = match primary.first()? {
                Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
                Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            let port = int(primary.get(1)?)?;
            (first <= last).then_some((first, last, HostPort { host, port }))
        })
        .collect()
}

/// Indices of `slots` grouped by slot, groups in order of first appearance, indices in order
/// (so that the writes to one key keep their order).
pub fn group_by_slot(slots: &[u16]) -> Vec<(u16, Vec<usize>)> {
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    let mut index: HashMap<u16, usize> = HashMap::new();
    for (i, slot) in slots.iter().enumerate() {
        let g = *index.entry(*slot).or_insert_with(|| {
            groups.push((*slot, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    groups
}

/// The crate's cluster client for `nodes`, with the store's login, TLS and timeouts.
pub fn client(c: &RedisStoreConfig, nodes: &[HostPort]) -> redis::RedisResult<ClusterClient> {
    let settings = super::connection::settings(c);
    let infos = nodes
        .iter()
        .map(|at| {
            redis::IntoConnectionInfo::into_connection_info(super::connection::address(c, at))
                .map(|info| info.set_redis_settings(settings.clone()))
        })
        .collect::<redis::RedisResult<Vec<_>>>()?;
    let mut builder = ClusterClientBuilder::new(infos)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .connection_timeout(c.connect_timeout)
        .response_timeout(c.connect_timeout)
        .retries(2)
        .min_retry_wait(10)
        .max_retry_wait(200);
    if c.tls_ca_pem.is_some() {
        builder = builder.tls(redis::TlsMode::Secure);
    }
    if let Some(certificates) = super::connection::certificates(c) {
        builder = builder.certs(certificates);
    }
    builder.build()
}

/// Connect to the cluster (reads its slot map); fails if no node answers.
pub async fn connect(
    c: &RedisStoreConfig,
    client: &ClusterClient,
) -> redis::RedisResult<ClusterConnection> {
    let config = ClusterConfig::new()
        .set_connection_timeout(c.connect_timeout)
        .set_response_timeout(c.connect_timeout);
    client.get_async_connection_with_config(config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_ones_redis_computes() {
        // CLUSTER KEYSLOT values from redis-server.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"a"), 15495);
        assert_eq!(slot_of(b"123456789"), 0x31c3);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_ne!(
            slot_of(b"foo{}{bar}"),
            slot_of(b"bar"),
            "an empty tag is no tag"
        );
        for i in 0..2000 {
            let key = format!(
                "sticky:web:learn:{:032x}",
                u128::from(i as u32) * 0x9e37_79b9
            );
            let ours = redis::cluster_routing::Slot::new(slot_of(key.as_bytes()));
            assert_eq!(
                Some(redis::cluster_routing::Slot::for_key(&key)),
                ours,
                "{key}"
            );
        }
    }

    fn reply(ranges: &[(i64, i64, &str, i64)]) -> Value {
        Value::Array(
            ranges
                .iter()
                .map(|(first, last, ip, port)| {
                    Value::Array(vec![
                        Value::Int(*first),
                        Value::Int(*last),
                        Value::Array(vec![
                            Value::BulkString(ip.as_bytes().to_vec()),
                            Value::Int(*port),
                            Value::BulkString(b"d43b142dee83".to_vec()),
                            Value::Map(vec![]),
                        ]),
                        Value::Array(vec![
                            Value::BulkString(b"127.0.0.9".to_vec()),
                            Value::Int(9),
                        ]),
                    ])
                })
                .collect(),
        )
    }

    #[test]
    fn the_slot_table_names_each_slots_primary_and_keeps_the_health_of_known_ones() {
        let three = reply(&[
            (0, 5460, "127.0.0.1", 7001),
            (5461, 10922, "127.0.0.1", 7002),
            (10923, 16383, "127.0.0.1", 7003),
        ]);
        let ranges = parse_slots(&three).unwrap();
        let t = Topology::from_ranges(ranges.clone(), &Topology::default());
        assert_eq!(t.nodes().len(), 3);
        assert_eq!(t.owner(0).unwrap().address, "127.0.0.1:7001");
        assert_eq!(t.owner(12182).unwrap().address, "127.0.0.1:7003");
        assert_eq!(t.owner(10922).unwrap().slots, 5462);
        assert!(t.same_ranges(&ranges));
        assert_eq!(
            t.describe(),
            "127.0.0.1:7001 (5461 slots), 127.0.0.1:7002 (5462 slots), 127.0.0.1:7003 (5461 slots)"
        );
        assert!(
            t.owner(0).unwrap().health.probe_failed(),
            "7001 down at start"
        );
        // Slot 0..=99 moved to 7002; 7001 keeps its state.
        let moved = parse_slots(&reply(&[
            (0, 99, "127.0.0.1", 7002),
            (100, 5460, "127.0.0.1", 7001),
            (5461, 10922, "127.0.0.1", 7002),
            (10923, 16383, "127.0.0.1", 7003),
        ]))
        .unwrap();
        assert!(!t.same_ranges(&moved));
        let after = Topology::from_ranges(moved, &t);
        assert_eq!(after.owner(0).unwrap().address, "127.0.0.1:7002");
        assert_eq!(after.owner(0).unwrap().slots, 5562);
        assert_eq!(
            after.owner(100).unwrap().health.state(),
            super::super::State::Down,
            "7001 is still down"
        );
        assert_eq!(
            after.owner(5461).unwrap().health.state(),
            super::super::State::Starting
        );
        assert!(parse_slots(&Value::Int(1)).is_none());
        assert!(parse_slots(&Value::Array(vec![Value::Array(vec![Value::Int(1)])])).is_none());
        assert!(Topology::default().owner(5).is_none());
    }

    #[test]
    fn writes_are_grouped_by_slot_in_order() {
        assert_eq!(
            group_by_slot(&[7, 3, 7, 9, 3]),
            vec![(7, vec![0, 2]), (3, vec![1, 4]), (9, vec![3])]
        );
        assert!(group_by_slot(&[]).is_empty());
    }
}
