//! Real Redis deployments on loopback for the store's Sentinel and Cluster tests, made of
//! [`RedisServer`]s: a primary with one replica watched by three sentinels (short
//! `down-after-milliseconds` and `failover-timeout`, so that a failover takes seconds; or
//! smaller, with passwords), and a
//! three-primary cluster created with `redis-cli --cluster create`. A missing `redis-server`
//! or `redis-cli` fails the test (`scripts/setup.sh` installs both).

use super::eventually;
use super::redis_server::RedisServer;
use std::path::PathBuf;
use std::time::Duration;

/// `redis-cli` on PATH, else `/usr/bin/redis-cli`.
fn redis_cli() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-cli"))
        .chain(std::iter::once(PathBuf::from("/usr/bin/redis-cli")))
        .find(|p| p.is_file())
        .expect(
            "redis-cli not found on PATH or at /usr/bin/redis-cli: scripts/setup.sh (run by \
             make test) installs the Debian package redis-tools",
        )
}

async fn query<T: redis::FromRedisValue>(server: &RedisServer, command: &redis::Cmd) -> T {
    let mut c = server.connection().await;
    command.query_async(&mut c).await.unwrap()
}

/// One line (`field:value`) of `INFO <section>`.
pub async fn info_field(server: &RedisServer, section: &str, field: &str) -> Option<String> {
    let mut c = server.try_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(&mut c)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// A primary, its replica, and sentinels monitoring them as `service`.
pub struct SentinelSet {
    pub service: String,
    pub primary: RedisServer,
    pub replica: Option<RedisServer>,
    pub sentinels: Vec<RedisServer>,
}

/// What [`SentinelSet::start_with`] starts.
pub struct SentinelOptions {
    pub replica: bool,
    pub sentinels: usize,
    /// `requirepass` (and `masterauth`) of the primary and replica.
    pub data_password: Option<&'static str>,
    /// `requirepass` of the sentinels (their own login, not the data nodes').
    pub sentinel_password: Option<&'static str>,
}

impl SentinelSet {
    /// A primary, one replica and three sentinels: what a failover needs.
    pub async fn start(service: &str) -> SentinelSet {
        let options = SentinelOptions {
            replica: true,
            sentinels: 3,
            data_password: None,
            sentinel_password: None,
        };
        Self::start_with(service, options).await
    }

    pub async fn start_with(service: &str, options: SentinelOptions) -> SentinelSet {
        let mut auth: Vec<&str> = Vec::new();
        if let Some(password) = options.data_password {
            auth.extend(["--requirepass", password, "--masterauth", password]);
        }
        let primary = RedisServer::start_with_args(&auth).await;
        let port = primary.port.to_string();
        let replica = if options.replica {
            let mut args = vec!["--replicaof", "127.0.0.1", &port];
            args.extend(&auth);
            let replica = RedisServer::start_with_args(&args).await;
            let synced = eventually(Duration::from_secs(20), || async {
                info_field(&replica, "replication", "master_link_status")
                    .await
                    .as_deref()
                    == Some("up")
            })
            .await;
            assert!(synced, "the replica never synced:\n{}", replica.log());
            Some(replica)
        } else {
            None
        };
        let mut lines = format!(
            "sentinel monitor {service} 127.0.0.1 {port} 2\n\
             sentinel down-after-milliseconds {service} 500\n\
             sentinel failover-timeout {service} 3000\n\
             sentinel parallel-syncs {service} 1\n"
        );
        if let Some(password) = options.data_password {
            lines.push_str(&format!("sentinel auth-pass {service} {password}\n"));
        }
        if let Some(password) = options.sentinel_password {
            lines.push_str(&format!(
                "requirepass {password}\nsentinel sentinel-pass {password}\n"
            ));
        }
        let mut sentinels = Vec::new();
        for _ in 0..options.sentinels {
            sentinels.push(RedisServer::start_sentinel(&lines).await);
        }
        let set = SentinelSet {
            service: service.to_string(),
            primary,
            replica,
            sentinels,
        };
        // A failover needs each sentinel to know the replica and the other sentinels (they
        // find each other through the primary, every couple of seconds).
        let (others, replicas) = (options.sentinels - 1, usize::from(options.replica));
        for sentinel in &set.sentinels {
            let ready = eventually(Duration::from_secs(30), || async {
                let mut known = redis::cmd("SENTINEL");
                known.arg("SENTINELS").arg(service);
                let known: Vec<redis::Value> = query(sentinel, &known).await;
                let mut listed = redis::cmd("SENTINEL");
                listed.arg("REPLICAS").arg(service);
                let listed: Vec<redis::Value> = query(sentinel, &listed).await;
                known.len() == others && listed.len() == replicas
            })
            .await;
            assert!(ready, "the sentinels never met:\n{}", sentinel.log());
        }
        set
    }

    /// The sentinels' `host:port`, as the store's `sentinels` list.
    pub fn addresses(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::address).collect()
    }

    /// The primary's port as the first sentinel names it.
    pub async fn primary_port(&self) -> u16 {
        let mut command = redis::cmd("SENTINEL");
        command.arg("GET-MASTER-ADDR-BY-NAME").arg(&self.service);
        let (_, port): (String, u16) = query(&self.sentinels[0], &command).await;
        port
    }
}

/// Three primaries (no replicas) in one cluster; `cluster-require-full-coverage no`, so that
/// the slots of the others stay served while one primary is gone.
pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
            "--cluster-require-full-coverage",
            "no",
        ];
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_with_args(&args).await);
        }
        let output = std::process::Command::new(redis_cli())
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(RedisServer::address))
            .arg("--cluster-yes")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Cluster { nodes };
        for node in &cluster.nodes {
            let ok = eventually(Duration::from_secs(20), || async {
                info_state(node).await.as_deref() == Some("ok")
                    && cluster.slot_table(node).await.len() == 3
            })
            .await;
            assert!(ok, "the cluster never formed:\n{}", node.log());
        }
        cluster
    }

    /// `host:port` of every node, as the store's `nodes` list.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::address).collect()
    }

    /// `(first slot, last slot, port)` of each primary, as `node` sees them.
    async fn slot_table(&self, node: &RedisServer) -> Vec<(u16, u16, u16)> {
        let Ok(mut c) = node.try_connection().await else {
            return Vec::new();
        };
        let reply: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut c)
            .await
            .unwrap_or_default();
        reply
            .iter()
            .filter_map(|range| {
                let redis::Value::Array(fields) = range else {
                    return None;
                };
                let int = |v: &redis::Value| match v {
                    redis::Value::Int(i) => u16::try_from(*i).ok(),
                    _ => None,
                };
                let redis::Value::Array(primary) = fields.get(2)? else {
                    return None;
                };
                Some((int(&fields[0])?, int(&fields[1])?, int(primary.get(1)?)?))
            })
            .collect()
    }

    /// `CLUSTER KEYSLOT key`, as Redis computes it.
    pub async fn keyslot(&self, key: &str) -> u16 {
        let mut command = redis::cmd("CLUSTER");
        command.arg("KEYSLOT").arg(key);
        let live = self.nodes.iter().find(|n| n.is_running()).unwrap();
        query(live, &command).await
    }

    /// The index (into `nodes`) of the primary serving `slot`.
    pub async fn owner(&self, slot: u16) -> usize {
        let live = self.nodes.iter().find(|n| n.is_running()).unwrap();
        let table = self.slot_table(live).await;
        let (_, _, port) = table
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .copied()
            .unwrap_or_else(|| panic!("no primary serves slot {slot}: {table:?}"));
        self.nodes.iter().position(|n| n.port == port).unwrap()
    }

    /// Whether the key is stored, asking the primary that serves it (`false` while it
    /// does not answer, or refuses: a node that just came back says `CLUSTERDOWN` a moment).
    pub async fn exists(&self, key: &str) -> bool {
        let node = &self.nodes[self.owner(self.keyslot(key).await).await];
        let Ok(mut c) = node.try_connection().await else {
            return false;
        };
        let answer = redis::cmd("EXISTS")
            .arg(key)
            .query_async::<i64>(&mut c)
            .await;
        answer.is_ok_and(|n| n == 1)
    }

    /// The node's own view of the cluster (`cluster_state` of `CLUSTER INFO`).
    pub async fn state(node: &RedisServer) -> Option<String> {
        info_state(node).await
    }
}

async fn info_state(node: &RedisServer) -> Option<String> {
    let mut c = node.try_connection().await.ok()?;
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut c)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("cluster_state:"))
        .map(|v| v.trim().to_string())
}
