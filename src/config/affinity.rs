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
    /// Cookie insertion, if on.
    pub cookie: Option<CookieConfig>,
    /// Hashing onto the consistent ring, if on.
    pub hash: Option<HashConfig>,
    /// Learned sessions, if on.
    pub learn: Option<LearnConfig>,
    /// The client-IP table, if on.
    pub client_ip_table: Option<ClientIpTableConfig>,
    /// A registered backend namer's name.
    pub named_node: Option<String>,
    /// What happens when the backend a session requires cannot serve.
    pub failure: FailurePolicy,
}

/// Learned sessions: which ids to follow, and the table.
#[derive(Debug, Clone)]
pub struct LearnConfig {
    /// Cookie names, presets expanded, without duplicates.
    pub cookies: Vec<String>,
    /// A path parameter carrying the id (`/cart;jsessionid=ABC`).
    pub path_parameter: Option<String>,
    /// Query parameters carrying the id, tried in order.
    pub query_parameters: Vec<String>,
    /// The learned sessions' table.
    pub table: TableConfig,
    /// `None`: the local table alone; `Some`: the table in front of a shared Redis.
    pub store: Option<RedisStoreConfig>,
}

/// IP-based persistence as a table.
#[derive(Debug, Clone)]
pub struct ClientIpTableConfig {
    /// Bits of an IPv4 client address that form the key (32: the address).
    pub ipv4_prefix: u8,
    /// Bits of an IPv6 client address that form the key.
    pub ipv6_prefix: u8,
    /// The table's size and lifetimes.
    pub table: TableConfig,
}

/// Rule-based hashing onto the pool's consistent ring.
#[derive(Debug, Clone)]
pub struct HashConfig {
    /// The sources, tried in order; the first that finds a key wins.
    pub sources: Vec<KeySourceConfig>,
    /// Bounded load: no backend takes more than this multiple of the average in-flight
    /// requests (`None`: unbounded).
    pub balance_factor: Option<f64>,
}

/// Where a hash key comes from (the affinity layer's key sources read it).
#[derive(Debug, Clone)]
pub enum KeySourceConfig {
    /// An application cookie's value (or a regex's first capture group over it).
    Cookie {
        /// The cookie's name.
        name: String,
        /// A pattern whose first capture group is the key.
        regex: Option<regex::bytes::Regex>,
    },
    /// A request header's value.
    Header {
        /// The header's name.
        name: http::HeaderName,
    },
    /// Query parameters' values, joined.
    Query {
        /// The parameters' names, in key order.
        params: Vec<String>,
    },
    /// The URL path.
    Path,
    /// The URL path with its query string.
    PathAndQuery,
    /// The `Host` (or HTTP/2 authority), lower-cased.
    Host,
    /// The client IP, masked to a prefix.
    ClientIp {
        /// Bits of an IPv4 address kept.
        ipv4_prefix: u8,
        /// Bits of an IPv6 address kept.
        ipv6_prefix: u8,
    },
    /// A key source registered in Rust under this name.
    Custom {
        /// The name it was registered under.
        name: String,
    },
}

/// Cookie insertion: the proxy's affinity cookie.
#[derive(Clone)]
pub struct CookieConfig {
    /// The cookie's name (`ARRAffinity` by default).
    pub name: String,
    /// How the value is derived from the backend name.
    pub format: CookieFormat,
    /// The `Path` attribute.
    pub path: String,
    /// The `Domain` attribute, if any.
    pub domain: Option<String>,
    /// The `HttpOnly` attribute.
    pub http_only: bool,
    /// `None`: `Secure` on TLS connections only (auto); `Some(b)`: always / never.
    pub secure: Option<bool>,
    /// The `SameSite` attribute, if any.
    pub same_site: Option<SameSite>,
    /// The `Max-Age` attribute, if any.
    pub max_age: Option<Duration>,
    /// The twin cookie's name (sent with `SameSite=None; Secure`), if any.
    pub twin_name: Option<String>,
    /// The proxy's cookies are removed from requests before the backend sees them.
    pub indirect: bool,
    /// Responses that insert the cookie get `Cache-Control: private`.
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
    /// HMAC-SHA256 under a secret.
    Keyed {
        /// The secret (never printed).
        secret: Vec<u8>,
    },
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

/// The `SameSite` attribute's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `Lax`.
    Lax,
    /// `Strict`.
    Strict,
    /// `None` (needs `Secure`).
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
    /// A configured answer.
    Sorry {
        /// Its status.
        status: u16,
        /// Its `Content-Type`.
        content_type: http::HeaderValue,
        /// Its body.
        body: bytes::Bytes,
    },
    /// A `302` to a configured URL.
    Redirect {
        /// Where to.
        location: http::HeaderValue,
    },
    /// Close the connection without an answer.
    Close,
}

impl FailurePolicy {
    /// The policy's name as the YAML and the decision line write it.
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
