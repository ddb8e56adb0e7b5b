//! The validated model of a Redis session store (`…learn.store` with `type: redis`): where
//! Redis is ([`RedisTopology`]: one server, a primary named by Sentinel, or a Cluster), how to
//! log in, and the store's timeouts. Built by `validate/store.rs`; secrets never reach `Debug`.

use std::fmt;
use std::time::Duration;

/// A Redis session store shared by proxy instances.
#[derive(Clone)]
pub struct RedisStoreConfig {
    /// Where Redis is: one server, Sentinel, or a Cluster.
    pub topology: RedisTopology,
    /// The data nodes' ACL user and password (with Sentinel: the primary's and replicas').
    pub username: Option<String>,
    /// The data nodes' password, if any (never printed).
    pub password: Option<String>,
    /// The Redis database number (`SELECT`).
    pub database: u32,
    /// Prepended to every key, so that several proxies' tables can share one server.
    pub key_prefix: String,
    /// How long a request waits for a lookup before it is balanced as a new session.
    pub lookup_timeout: Duration,
    /// Connecting to Redis (and background writes) give up after this long.
    pub connect_timeout: Duration,
    /// An entry's expiry in Redis is refreshed at most once per this interval.
    pub refresh_interval: Duration,
    /// Writes queued at most; more are dropped (and counted).
    pub write_queue: usize,
    /// `Some`: TLS to Redis (and to the sentinels), trusting these PEM CA certificates (empty:
    /// the system's).
    pub tls_ca_pem: Option<Vec<u8>>,
}

/// Where the store's Redis is: `…store.mode` and its address keys.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// `mode: standalone` (the default): one server at `address`.
    Standalone(HostPort),
    /// `mode: sentinel`: the primary the sentinels name for `service`, asked again whenever
    /// it fails or stops being the primary.
    Sentinel {
        /// The sentinels asked, in turn.
        sentinels: Vec<HostPort>,
        /// The name the sentinels monitor the primary under.
        service: String,
        /// The sentinels' own ACL user and password (they may differ from the data nodes').
        username: Option<String>,
        /// The sentinels' password, if any (never printed).
        password: Option<String>,
    },
    /// `mode: cluster`: a Redis Cluster, discovered from these nodes.
    Cluster {
        /// Nodes to discover the cluster from.
        nodes: Vec<HostPort>,
    },
}

/// A host name or IP address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// A host name or an IP address (without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    /// `host:port`, `[v6]:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn list(addresses: &[HostPort]) -> String {
    addresses
        .iter()
        .map(HostPort::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl RedisStoreConfig {
    /// Where Redis is, as configured (for logs and the admin API): `host:port`,
    /// `sentinel <service> via <host:port>,…` or `cluster <host:port>,…`.
    pub fn address(&self) -> String {
        match &self.topology {
            RedisTopology::Standalone(address) => address.to_string(),
            RedisTopology::Sentinel {
                sentinels, service, ..
            } => format!("sentinel {service} via {}", list(sentinels)),
            RedisTopology::Cluster { nodes } => format!("cluster {}", list(nodes)),
        }
    }

    /// `standalone`, `sentinel` or `cluster`.
    pub fn mode(&self) -> &'static str {
        match self.topology {
            RedisTopology::Standalone(_) => "standalone",
            RedisTopology::Sentinel { .. } => "sentinel",
            RedisTopology::Cluster { .. } => "cluster",
        }
    }
}

// Hand-written so that no password ever reaches a log line.
impl fmt::Debug for RedisStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreConfig")
            .field("topology", &self.topology)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("tls", &self.tls_ca_pem.is_some())
            .field("database", &self.database)
            .field("key_prefix", &self.key_prefix)
            .field("lookup_timeout", &self.lookup_timeout)
            .field("refresh_interval", &self.refresh_interval)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTopology::Standalone(address) => write!(f, "Standalone({address})"),
            RedisTopology::Sentinel {
                sentinels,
                service,
                username,
                password,
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", &list(sentinels))
                .field("service", service)
                .field("username", username)
                .field("password", &password.as_ref().map(|_| "<hidden>"))
                .finish(),
            RedisTopology::Cluster { nodes } => write!(f, "Cluster({})", list(nodes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_shown_by_mode_and_passwords_never() {
        let at = |host: &str, port| HostPort {
            host: host.into(),
            port,
        };
        let mut c = RedisStoreConfig {
            topology: RedisTopology::Standalone(at("::1", 6379)),
            username: None,
            password: Some("data-secret".into()),
            database: 0,
            key_prefix: "sticky:".into(),
            lookup_timeout: Duration::from_millis(20),
            connect_timeout: Duration::from_secs(1),
            refresh_interval: Duration::from_secs(60),
            write_queue: 10,
            tls_ca_pem: None,
        };
        assert_eq!(
            (c.address().as_str(), c.mode()),
            ("[::1]:6379", "standalone")
        );
        c.topology = RedisTopology::Sentinel {
            sentinels: vec![at("10.0.0.5", 26379), at("10.0.0.6", 26379)],
            service: "mymaster".into(),
            username: Some("watcher".into()),
            password: Some("sentinel-secret".into()),
        };
        assert_eq!(
            c.address(),
            "sentinel mymaster via 10.0.0.5:26379,10.0.0.6:26379"
        );
        let shown = format!("{c:?}");
        assert!(shown.contains("watcher"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
        c.topology = RedisTopology::Cluster {
            nodes: vec![at("a", 7000), at("b", 7001)],
        };
        assert_eq!(
            (c.address().as_str(), c.mode()),
            ("cluster a:7000,b:7001", "cluster")
        );
    }
}
