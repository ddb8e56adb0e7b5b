//! The validated model of a pool's or a class's `affinity` section: cookie insertion, hash
//! keys, learned sessions and their table and shared store, the client-IP table, a named node,
//! and the failure policy. Secrets never reach a log line (`Debug` hides them).

use super::kinds::TableConfig;
use super::store::RedisStoreConfig;
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
    /// `keyed` only: lifetimes enforced by the proxy; `None`: a value pins as long as the
    /// client keeps it.
    pub lifetimes: Option<CookieLifetimes>,
}

/// Cookie lifetimes enforced by the proxy (HAProxy `maxidle` / `maxlife`): the value carries
/// its first-issue and last-refresh dates under the HMAC. At least one limit is set; each is
/// 1 s to [`MAX_LIFETIME_SECONDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieLifetimes {
    /// Not refreshed for longer than this: a new session.
    pub max_idle: Option<Duration>,
    /// First issued longer ago than this: a new session.
    pub max_life: Option<Duration>,
    /// A date-less value (from before the lifetimes) still pins, and is re-issued with dates.
    pub accept_undated: bool,
}

/// The longest lifetime a cookie may be given (3650 days), so that dates fit their 32 bits.
pub const MAX_LIFETIME_SECONDS: u64 = 3650 * 86_400;

// Hand-written so that a secret never reaches a log line.
impl fmt::Debug for CookieConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieConfig")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("twin_name", &self.twin_name)
            .field("lifetimes", &self.lifetimes)
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
