//! The affinity part of the file format: `…affinity` with its `cookie`, `hash`, `learn` (its
//! Redis `store` is in `store.rs`), `client_ip_table`, `named_node` and `failure` sections. Plain serde
//! structs, defaults beside them, as in the parent module.

use serde::Deserialize;

use super::RawStore;

/// `sticky.pools[i].affinity`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAffinity {
    /// `false` switches affinity off for the pool (ARR's `web.config` way): no cookie is issued,
    /// incoming ones and hash keys are ignored.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Cookie insertion; absent: no cookie is inserted.
    pub cookie: Option<RawCookie>,
    /// Rule-based hashing onto a consistent ring; absent: no hashing.
    pub hash: Option<RawHash>,
    /// Learned sessions: follow the application's own session ids; absent: off.
    pub learn: Option<RawLearn>,
    /// IP-based persistence as a table (not a hash); absent: off.
    pub client_ip_table: Option<RawClientIpTable>,
    /// What happens when the backend a session requires cannot serve.
    #[serde(default)]
    pub failure: RawFailure,
    /// A registered Rust backend namer that names the backend directly (Stingray's "named node").
    pub named_node: Option<RawNamedNode>,
    /// The response header with which a backend opts a response out of affinity (pool level).
    pub opt_out_header: Option<String>,
}

/// `…affinity.named_node`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamedNode {
    /// The name under which the namer was registered (`Extensions::with_backend_namer`).
    pub source: String,
}

/// `…affinity.failure` — the failure policy when the required backend cannot serve.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFailure {
    /// Which policy (default `rebalance`).
    #[serde(default)]
    pub policy: RawPolicy,
    /// `sorry`: the status (default 503).
    pub status: Option<u16>,
    /// `sorry`: the content type (default `text/plain; charset=utf-8`).
    pub content_type: Option<String>,
    /// `sorry`: the body.
    pub body: Option<String>,
    /// `redirect`: where to (a 302 with this `Location`).
    pub location: Option<String>,
}

/// `…affinity.failure.policy`.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawPolicy {
    /// Drop the session record and balance to a working backend (new cookie / entry).
    #[default]
    Rebalance,
    /// 503, and keep the session (Envoy's `strict`).
    Strict,
    /// A configured sorry response.
    Sorry,
    /// A redirect to a configured URL.
    Redirect,
    /// Drop the connection without an answer.
    Close,
}

impl Default for RawAffinity {
    fn default() -> Self {
        RawAffinity {
            enabled: true,
            cookie: None,
            hash: None,
            learn: None,
            client_ip_table: None,
            failure: RawFailure::default(),
            named_node: None,
            opt_out_header: None,
        }
    }
}

/// `sticky.pools[i].affinity.learn`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLearn {
    /// Shorthands: `j2ee` (JSESSIONID cookie and `;jsessionid=` path parameter), `aspnet`
    /// (ASP.NET_SessionId), `php` (PHPSESSID).
    #[serde(default)]
    pub presets: Vec<RawPreset>,
    /// Session cookie names to learn from `Set-Cookie` and follow in `Cookie`.
    #[serde(default)]
    pub cookies: Vec<String>,
    /// A path parameter carrying the id (`/cart;jsessionid=ABC`), as in J2EE URL rewriting.
    pub path_parameter: Option<String>,
    /// Query parameters carrying the id, tried in order.
    #[serde(default)]
    pub query_parameters: Vec<String>,
    /// The table's size and lifetimes.
    #[serde(default)]
    pub table: RawTable,
    /// Where learned sessions are kept: `local` (default, the table alone) or `redis` (the table
    /// in front of a Redis shared by every proxy instance).
    #[serde(default)]
    pub store: RawStore,
}

/// `…learn.presets[]`: a framework's session cookie (and URL parameter).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawPreset {
    /// `JSESSIONID` cookie and `;jsessionid=` path parameter.
    J2ee,
    /// `ASP.NET_SessionId` cookie.
    Aspnet,
    /// `PHPSESSID` cookie.
    Php,
}

/// `sticky.pools[i].affinity.client_ip_table`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientIpTable {
    /// Bits of an IPv4 client address that form the key (default 32).
    #[serde(default = "default_ipv4_prefix")]
    pub ipv4_prefix: u8,
    /// Bits of an IPv6 client address that form the key (default 64).
    #[serde(default = "default_table_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// The table's size and lifetimes.
    #[serde(default)]
    pub table: RawTable,
}

/// Size and lifetime of a session table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    /// The most entries kept.
    #[serde(default = "default_table_capacity")]
    pub capacity: u64,
    /// Entries unused this long are dropped (each hit restarts the clock).
    #[serde(default = "default_idle_timeout_seconds")]
    pub idle_timeout_seconds: u64,
    /// Entries are dropped this long after they were recorded, used or not.
    pub max_lifetime_seconds: Option<u64>,
}

impl Default for RawTable {
    fn default() -> Self {
        RawTable {
            capacity: default_table_capacity(),
            idle_timeout_seconds: default_idle_timeout_seconds(),
            max_lifetime_seconds: None,
        }
    }
}

/// A client-IP *table* keys IPv6 clients by their /64: one host owns a whole /64, and keying on
/// /128 would let it flush the table by rotating addresses.
fn default_table_ipv6_prefix() -> u8 {
    64
}

fn default_table_capacity() -> u64 {
    100_000
}
fn default_idle_timeout_seconds() -> u64 {
    1800
}

/// `sticky.pools[i].affinity.hash`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHash {
    /// Ordered key sources; the first one present in a request is the key.
    pub sources: Vec<RawKeySource>,
    /// Bounded load (HAProxy `hash-balance-factor`, Envoy `hash_balance_factor`): no backend
    /// takes more than this multiple of the average in-flight requests; > 1.0.
    pub balance_factor: Option<f64>,
}

/// One key source, e.g. `- { type: cookie, name: CUserID }`, `- { type: path }`,
/// `- { type: client_ip, ipv4_prefix: 24 }`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawKeySource {
    /// An application cookie's value, or the first capture group of `regex` on that value.
    Cookie {
        /// The cookie's name.
        name: String,
        /// A pattern whose first capture group is the key.
        regex: Option<String>,
    },
    /// A request header's value (ARR's "server variable hash").
    Header {
        /// The header's name.
        name: String,
    },
    /// A key source registered in Rust (`Extensions::with_key_source`).
    Custom {
        /// The name it was registered under.
        name: String,
    },
    /// Query-string parameters, values concatenated in this order (ARR's "query string hash").
    Query {
        /// The parameters' names, in key order.
        params: Vec<String>,
    },
    /// The URL path (ARR's "request hash").
    Path,
    /// The URL path and query string.
    PathAndQuery,
    /// The `Host` header.
    Host,
    /// The client IP, masked to a prefix (NGINX `ip_hash` uses /24).
    ClientIp {
        /// Bits of an IPv4 address kept (default 32).
        #[serde(default = "default_ipv4_prefix")]
        ipv4_prefix: u8,
        /// Bits of an IPv6 address kept (default 128).
        #[serde(default = "default_ipv6_prefix")]
        ipv6_prefix: u8,
    },
}

fn default_ipv4_prefix() -> u8 {
    32
}
fn default_ipv6_prefix() -> u8 {
    128
}

pub(super) fn default_true() -> bool {
    true
}

/// `sticky.pools[i].affinity.cookie`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCookie {
    /// The cookie's name (default `ARRAffinity`).
    #[serde(default = "default_cookie_name")]
    pub name: String,
    /// `keyed` (default) or `arr`.
    #[serde(default)]
    pub format: RawCookieFormat,
    /// `keyed` only: the HMAC secret, inline (prefer `secret_file` or `secret_env`).
    pub secret: Option<String>,
    /// `keyed` only: a file whose contents (trailing newline trimmed) are the secret.
    pub secret_file: Option<String>,
    /// `keyed` only: an environment variable holding the secret.
    pub secret_env: Option<String>,
    /// The `Path` attribute (default `/`).
    #[serde(default = "default_cookie_path")]
    pub path: String,
    /// The `Domain` attribute; absent: none.
    pub domain: Option<String>,
    /// The `HttpOnly` attribute (default on).
    #[serde(default = "default_true")]
    pub http_only: bool,
    /// `Secure` attribute: absent = on for requests that came over TLS (auto); `true` always;
    /// `false` never.
    pub secure: Option<bool>,
    /// `lax`, `strict` or `none`; absent: no attribute.
    pub same_site: Option<RawSameSite>,
    /// The `Max-Age` attribute; absent: a session cookie.
    pub max_age_seconds: Option<u64>,
    /// Name of the twin cookie sent with `SameSite=None; Secure` (ARR's `ARRAffinitySameSite`).
    pub same_site_none_twin: Option<String>,
    /// Remove the proxy's cookies from the `Cookie` header sent to the backend (HAProxy `indirect`).
    #[serde(default = "default_true")]
    pub indirect: bool,
    /// Mark responses that insert the cookie `Cache-Control: private` (HAProxy `nocache`).
    #[serde(default = "default_true")]
    pub nocache: bool,
    /// `keyed` only: a cookie not refreshed for longer than this is a new session (HAProxy
    /// `maxidle`); absent: no idle limit.
    pub max_idle_seconds: Option<u64>,
    /// `keyed` only: a cookie first issued longer ago than this is a new session (HAProxy
    /// `maxlife`); absent: no age limit.
    pub max_life_seconds: Option<u64>,
    /// With lifetimes: a date-less value (issued before the lifetimes were configured) still
    /// pins and is re-issued with dates; default `true`.
    pub accept_undated: Option<bool>,
}

fn default_cookie_name() -> String {
    "ARRAffinity".to_string()
}
fn default_cookie_path() -> String {
    "/".to_string()
}

/// How the cookie value is derived from the backend name.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawCookieFormat {
    /// HMAC-SHA256 under a secret: nobody without the secret can mint a value.
    #[default]
    Keyed,
    /// ARR's own: hex SHA-256 of the backend name.
    Arr,
}

/// `…cookie.same_site`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawSameSite {
    /// `lax`.
    Lax,
    /// `strict`.
    Strict,
    /// `none` (needs `Secure`).
    None,
}

/// A cookie section as `cookie: {}` gives it: every default (name `ARRAffinity`, `keyed`, no
/// secret yet, path `/`, `HttpOnly`, `indirect`, `nocache`).
impl Default for RawCookie {
    fn default() -> Self {
        serde_yaml::from_str("{}").unwrap_or_else(|_| unreachable!("every key has a default"))
    }
}
