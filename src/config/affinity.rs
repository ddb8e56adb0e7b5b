//! The validated model of a pool's or a class's `affinity` section: cookie insertion, hash
//! keys, learned sessions and their table and shared store, the client-IP table, a named node,
//! and the failure policy. Secrets never reach a log line (`Debug` hides them).

use super::kinds::TableConfig;
use std::fmt;
use std::time::Duration;

/// A pool's affinity mechanisms. A request goes to the first backend recorded for it (inserted
/// cookie, then learned session id, then client-IP table), else to its hash key's backend, else
/// to the balancer.
#[derive(Debug, Clone)]
pub struct AffinityConfig {
    pub cookie: Option<CookieConfig>,
    pub hash: Option<HashConfig>,
    pub learn: Option<LearnConfig>,
    pub client_ip_table: Option<ClientIpTableConfig>,
    /// A registered backend namer's name.
    pub named_node: Option<String>,
    pub failure: FailurePolicy,
}

/// Learned sessions: which ids to follow, and the table.
#[derive(Debug, Clone)]
pub struct LearnConfig {
    /// Cookie names, presets expanded, without duplicates.
    pub cookies: Vec<String>,
    pub path_parameter: Option<String>,
    pub query_parameters: Vec<String>,
    pub table: TableConfig,
    /// `None`: the local table alone; `Some`: the table in front of a shared Redis.
    pub store: Option<RedisStoreConfig>,
}

/// A Redis session store shared by proxy instances.
#[derive(Clone)]
pub struct RedisStoreConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: u32,
    pub key_prefix: String,
    pub lookup_timeout: Duration,
    pub connect_timeout: Duration,
    pub refresh_interval: Duration,
    pub write_queue: usize,
    /// `Some`: TLS to Redis, trusting these PEM CA certificates (empty: the system's).
    pub tls_ca_pem: Option<Vec<u8>>,
}

impl RedisStoreConfig {
    /// `host:port` as configured (for logs and the admin API).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

// Hand-written so that the password never reaches a log line.
impl fmt::Debug for RedisStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreConfig")
            .field("address", &self.address())
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

/// IP-based persistence as a table.
#[derive(Debug, Clone)]
pub struct ClientIpTableConfig {
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub table: TableConfig,
}

/// Rule-based hashing onto the pool's consistent ring.
#[derive(Debug, Clone)]
pub struct HashConfig {
    pub sources: Vec<KeySourceConfig>,
    pub balance_factor: Option<f64>,
}

/// Where a hash key comes from (the affinity layer's key sources read it).
#[derive(Debug, Clone)]
pub enum KeySourceConfig {
    Cookie {
        name: String,
        regex: Option<regex::bytes::Regex>,
    },
    Header {
        name: http::HeaderName,
    },
    Query {
        params: Vec<String>,
    },
    Path,
    PathAndQuery,
    Host,
    ClientIp {
        ipv4_prefix: u8,
        ipv6_prefix: u8,
    },
    /// A key source registered in Rust under this name.
    Custom {
        name: String,
    },
}

#[derive(Clone)]
pub struct CookieConfig {
    pub name: String,
    pub format: CookieFormat,
    pub path: String,
    pub domain: Option<String>,
    pub http_only: bool,
    /// `None`: `Secure` on TLS connections only (auto); `Some(b)`: always / never.
    pub secure: Option<bool>,
    pub same_site: Option<SameSite>,
    pub max_age: Option<Duration>,
    pub twin_name: Option<String>,
    pub indirect: bool,
    pub nocache: bool,
}

// Hand-written so that a secret never reaches a log line.
impl fmt::Debug for CookieConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieConfig")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("twin_name", &self.twin_name)
            .finish_non_exhaustive()
    }
}

/// How a cookie value is derived from a backend name.
#[derive(Clone)]
pub enum CookieFormat {
    /// HMAC-SHA256 under this secret.
    Keyed { secret: Vec<u8> },
    /// ARR's unkeyed SHA-256 of the backend name.
    Arr,
}

impl fmt::Debug for CookieFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CookieFormat::Keyed { .. } => f.write_str("Keyed { secret: <hidden> }"),
            CookieFormat::Arr => f.write_str("Arr"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

/// What happens when the backend a session requires cannot serve it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Balance to a working backend; a new cookie / table entry follows.
    #[default]
    Rebalance,
    /// 503, the session kept.
    Strict,
    Sorry {
        status: u16,
        content_type: http::HeaderValue,
        body: bytes::Bytes,
    },
    Redirect {
        location: http::HeaderValue,
    },
    /// Close the connection without an answer.
    Close,
}

impl FailurePolicy {
    pub fn name(&self) -> &'static str {
        match self {
            FailurePolicy::Rebalance => "rebalance",
            FailurePolicy::Strict => "strict",
            FailurePolicy::Sorry { .. } => "sorry",
            FailurePolicy::Redirect { .. } => "redirect",
            FailurePolicy::Close => "close",
        }
    }
}
