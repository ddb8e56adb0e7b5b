//! The file format of a learned-session store, `…learn.store`: `{ type: local }` (the default)
//! or `{ type: redis, … }` with its `mode` — one server (`address`), a primary found through
//! Redis Sentinel (`sentinels`, `service`), or a Redis Cluster (`nodes`). Plain serde, defaults
//! beside it, as in the parent module; `validate/store.rs` checks the combinations.

use serde::Deserialize;

/// `…learn.store` — `{ type: local }` (the default) or `{ type: redis, address: …, … }`.
/// One struct rather than a tagged enum, so that an unknown key is reported under `store`.
/// The Redis keys are options (their defaults are the `default_*` functions below): with
/// `type: local` none may be given, and each `mode` takes only its own address keys.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `local` (default) or `redis`.
    #[serde(rename = "type", default)]
    pub kind: RawStoreKind,
    /// How Redis is deployed; default `standalone`.
    pub mode: Option<RawStoreMode>,
    /// `host:port` of the Redis server (required with mode `standalone`).
    pub address: Option<String>,
    /// `host:port` of each sentinel (required with mode `sentinel`).
    pub sentinels: Option<Vec<String>>,
    /// The name the sentinels monitor the primary under (`sentinel monitor <name> …`; required
    /// with mode `sentinel`).
    pub service: Option<String>,
    /// An ACL user name on the sentinels; absent: the default user.
    pub sentinel_username: Option<String>,
    /// An environment variable holding the sentinels' password.
    pub sentinel_password_env: Option<String>,
    /// A file whose contents (trailing newline trimmed) are the sentinels' password.
    pub sentinel_password_file: Option<String>,
    /// `host:port` of some cluster nodes to start from (required with mode `cluster`).
    pub nodes: Option<Vec<String>>,
    /// An ACL user name (Redis 6+); absent: the default user.
    pub username: Option<String>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
    /// A file whose contents (trailing newline trimmed) are the password.
    pub password_file: Option<String>,
    /// The Redis database number (`SELECT`); default 0 (the only one a cluster has).
    pub database: Option<u32>,
    /// Prefix of every key the proxy writes; default [`default_key_prefix`].
    pub key_prefix: Option<String>,
    /// How long a request waits for Redis on a local miss before balancing without it;
    /// default [`default_lookup_timeout_ms`].
    pub lookup_timeout_ms: Option<u64>,
    /// Connecting (and background writes) give up after this long; default
    /// [`default_store_connect_timeout_ms`].
    pub connect_timeout_ms: Option<u64>,
    /// An entry's Redis TTL is refreshed at most once per this interval (default: a quarter
    /// of the table's idle timeout, between 1 and 60 s).
    pub refresh_interval_seconds: Option<u64>,
    /// Writes waiting for the writer task; more are dropped (and counted). Default
    /// [`default_write_queue`].
    pub write_queue: Option<usize>,
    /// TLS to Redis (`rediss://`), verifying the server's certificate and name; with mode
    /// `sentinel`, to the sentinels too.
    pub tls: Option<bool>,
    /// With `tls`: PEM CA certificates to trust instead of the system's.
    pub ca_file: Option<String>,
}

/// `…learn.store.type`
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawStoreKind {
    /// The in-process table only.
    #[default]
    Local,
    /// The in-process table as a cache in front of Redis.
    Redis,
}

/// `…learn.store.mode`
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawStoreMode {
    /// One server at `address` (or a proxy or load balancer in front of several).
    Standalone,
    /// The primary that Redis Sentinel names for `service`, followed across failovers.
    Sentinel,
    /// Redis Cluster: keys spread over the slots of several primaries.
    Cluster,
}

/// The default `key_prefix` of a Redis store.
pub fn default_key_prefix() -> String {
    "sticky:".to_string()
}
/// The default `lookup_timeout_ms` of a Redis store.
pub fn default_lookup_timeout_ms() -> u64 {
    20
}
/// The default `connect_timeout_ms` of a Redis store.
pub fn default_store_connect_timeout_ms() -> u64 {
    1000
}
/// The default `write_queue` of a Redis store.
pub fn default_write_queue() -> usize {
    10_000
}
