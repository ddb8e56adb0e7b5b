//! Configuration: the validated, typed model of our `sticky:` section, and how it is loaded.
//!
//! The YAML file is Pingora's own configuration file; Pingora ignores keys it does not know, so
//! our section lives beside its keys. [`load_str`] parses the section with serde ([`raw`]), then
//! `validate` checks every value and builds [`Config`]. Every failure is a [`ConfigError`]
//! whose one-line message names the field and the value, e.g.
//! `sticky.pools[0].backends[1].addr: not a socket address: "10.0.0.1"`.

mod affinity;
mod discovery;
mod kinds;
pub mod raw;
mod store;
mod tls;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub use affinity::{
    AffinityConfig, ClientIpTableConfig, CookieConfig, CookieFormat, CookieLifetimes,
    FailurePolicy, HashConfig, KeySourceConfig, LearnConfig, SameSite, MAX_LIFETIME_SECONDS,
};
pub use discovery::{DiscoveryConfig, DiscoveryKind};
pub use kinds::{
    AccessLogFormat, AlpnProtocol, BackendState, Balance, HealthCheckKind, MinVersion, TableConfig,
};
pub use store::{HostPort, RedisStoreConfig, RedisTopology};
pub use tls::{CertificateConfig, ListenerTlsConfig, UpstreamTlsConfig};
pub use validate::routes::starts_with_ignore_case;

/// The validated `sticky:` section.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sticky.listeners`: the proxy's listeners (empty for an embedded section).
    pub listeners: Vec<ListenerConfig>,
    /// `sticky.pools`, in configured order (routes and listeners refer to them by index).
    pub pools: Vec<PoolConfig>,
    /// Lower-case response header names removed before the client sees them.
    pub hide_headers: Vec<http::HeaderName>,
    /// Proxies whose forwarding headers are believed for the client IP.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `sticky.admin`: the admin listener, if any.
    pub admin: Option<AdminConfig>,
    /// `sticky.access_log.format`: how decision lines are written.
    pub access_log_format: AccessLogFormat,
    /// Named persistence classes, in name order.
    pub classes: Vec<ClassConfig>,
    /// Ordered routes; empty: each listener serves its own pool.
    pub routes: Vec<RouteConfig>,
    /// What requests that match no route get.
    pub default_route: DefaultRoute,
    /// Accepted oddities reported at start (overlapping or unreachable routes).
    pub warnings: Vec<String>,
    /// `sticky.grace_ms`: serving on after SIGTERM before the stop (the lifecycle module applies it).
    pub grace: std::time::Duration,
    /// `sticky.state_file`: backend states set through the admin API, written here and applied
    /// at the next start (an absolute path); `None`: not kept.
    pub state_file: Option<std::path::PathBuf>,
}

/// A named persistence class: the mechanisms of a pool's `affinity`, shareable by routes.
#[derive(Debug, Clone)]
pub struct ClassConfig {
    /// The class's name (a key of `sticky.classes`).
    pub name: String,
    /// `None` when the class has no mechanism (or `enabled: false`).
    pub affinity: Option<AffinityConfig>,
}

/// Which affinity a route applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// The pool's own `affinity` section.
    PoolDefault,
    /// No affinity (`class: none`).
    None,
    /// Index into [`Config::classes`].
    Class(usize),
}

/// A host condition: exact, or any subdomain of a suffix (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// A host name, lower-case.
    Exact(String),
    /// The suffix with its leading dot: `.example.com`.
    Suffix(String),
}

/// One route: conditions, then the pool and class.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The host condition, if any.
    pub host: Option<HostMatch>,
    /// The path prefix condition (`/…`), if any.
    pub path_prefix: Option<String>,
    /// `path_prefix` compared ignoring ASCII case.
    pub ignore_case: bool,
    /// The methods the request may have; empty: any.
    pub methods: Vec<http::Method>,
    /// A header that must be present (with this value, if one is given).
    pub header: Option<(http::HeaderName, Option<http::HeaderValue>)>,
    /// Index into [`Config::pools`].
    pub pool: usize,
    /// The affinity applied.
    pub class: RouteClass,
    /// The names of the Rust filters run for this route's requests, after the listener's.
    pub filters: Vec<String>,
}

/// What requests matching no route get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultRoute {
    /// The proxy answers with this status (404 unless configured).
    Status(u16),
    /// Requests go to a pool, with a class's affinity.
    Pool {
        /// Index into [`Config::pools`].
        pool: usize,
        /// The affinity applied.
        class: RouteClass,
    },
}

/// The admin listener.
#[derive(Clone)]
pub struct AdminConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The bearer token for mutating calls; `None`: mutations are off.
    pub token: Option<String>,
    /// Callers from other than loopback addresses are accepted.
    pub allow_remote: bool,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("allow_remote", &self.allow_remote)
            .finish()
    }
}

/// One listener and the pool it serves.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Index into [`Config::pools`].
    pub pool: usize,
    /// `Some`: an HTTPS listener.
    pub tls: Option<ListenerTlsConfig>,
    /// Accept cleartext HTTP/2 (prior knowledge).
    pub h2c: bool,
    /// Answer every request with a redirect to HTTPS.
    pub redirect_to_https: Option<RedirectToHttps>,
    /// Set TCP_DEFER_ACCEPT on the listening socket.
    pub defer_accept: bool,
    /// How long the client may take over a request head, stay idle between requests, or leave
    /// the proxy's sending without progress.
    pub timeouts: ClientTimeouts,
    /// The names of the Rust filters run for every routed request of this listener, in order.
    pub filters: Vec<String>,
}

/// A listener's client-side timeouts (`sticky.listeners[].timeouts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// A request head must be complete this long after its first byte (for a connection's
    /// first request: after the connection was accepted). HAProxy `timeout http-request`.
    pub http_request: Duration,
    /// Between requests, a kept-alive connection is closed after this long without a byte.
    /// HAProxy `timeout http-keep-alive`, NGINX `keepalive_timeout`.
    pub keepalive: Duration,
    /// Sending to the client that makes no progress this long ends the connection (and the
    /// backend connection behind it). NGINX `send_timeout`, HAProxy `timeout client`.
    pub client_send: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            http_request: Duration::from_secs(30),
            keepalive: Duration::from_secs(60),
            client_send: Duration::from_secs(60),
        }
    }
}

/// A plain listener's redirect to HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectToHttps {
    /// The HTTPS port in the `Location` (443 is left out of the URL).
    pub port: u16,
    /// 301, 302, 307 or 308.
    pub status: u16,
}

/// A named group of backends with its balancing, health checks and affinity.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The pool's name, unique (part of the keyed cookie value).
    pub name: String,
    /// How new sessions are balanced.
    pub balance: Balance,
    /// The backends, in configured order (their indexes are the backend indexes everywhere).
    pub backends: Vec<BackendConfig>,
    /// Active health checks; `None`: every backend counts as healthy.
    pub health_check: Option<HealthCheckConfig>,
    /// Upstream timeouts.
    pub timeouts: TimeoutConfig,
    /// `None` when affinity is switched off for the pool.
    pub affinity: Option<AffinityConfig>,
    /// The response header with which a backend opts out of affinity; always removed from
    /// responses, and from requests so that clients cannot smuggle it.
    pub opt_out_header: http::HeaderName,
    /// A response header set to the name of the backend that served the response.
    pub served_by_header: Option<http::HeaderName>,
    /// `slow_start_seconds`: how long a backend that comes back takes to ramp up to its full
    /// share of new sessions; `None`: no ramp.
    pub slow_start: Option<Duration>,
    /// TLS to the backends; `None`: plain HTTP.
    pub tls: Option<UpstreamTlsConfig>,
    /// `Host` for requests that have none (HTTP/1.0); `None`: the SNI name or the backend's
    /// address.
    pub default_host: Option<http::HeaderValue>,
    /// `discovery`: backends found through DNS at run time, beside the static `backends`.
    pub discovery: Option<DiscoveryConfig>,
}

/// A backend of a pool.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Unique name in its pool; identifies it in cookies, logs and the admin API.
    pub name: String,
    /// `ip:port`.
    pub addr: SocketAddr,
    /// 1 to 256: its share of new sessions.
    pub weight: u32,
    /// Its state at start-up (changeable through the admin API).
    pub state: BackendState,
}

/// A pool's active health check.
#[derive(Debug, Clone)]
pub struct HealthCheckConfig {
    /// TCP connect or HTTP `GET`.
    pub kind: HealthCheckKind,
    /// HTTP: the path probed.
    pub path: String,
    /// HTTP: the probe's `Host`.
    pub host: String,
    /// HTTP: the status that counts as healthy.
    pub expect_status: u16,
    /// Time between probes.
    pub interval: Duration,
    /// A probe's connect (and read) timeout.
    pub timeout: Duration,
    /// Consecutive successes that bring an unhealthy backend back.
    pub rise: u32,
    /// Consecutive failures that take a healthy backend out.
    pub fall: u32,
}

/// A pool's upstream timeouts.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutConfig {
    /// Connecting to a backend.
    pub connect: Duration,
    /// Each read from a backend.
    pub read: Duration,
    /// Each write to a backend.
    pub write: Duration,
    /// How long an idle upstream connection is kept for reuse.
    pub idle: Duration,
    /// Request arrival to the end of the response, retries included.
    pub total: Option<Duration>,
}

/// A configuration error: the field's path and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field's path in the YAML, e.g. `sticky.pools[0].backends[1].addr`.
    pub field: String,
    /// What is wrong with its value.
    pub message: String,
}

impl ConfigError {
    /// The error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Parse and validate the `sticky:` section of a whole Pingora YAML document. Names of Rust
/// extensions (custom key sources, backend namers) are checked against the registered ones by
/// the extension module (`extension::load_str_with`).
pub fn load_str(yaml: &str) -> Result<Config, ConfigError> {
    validate::validate(parse(yaml)?, true)
}

/// [`load_str`] for a program that embeds the affinity engine in its own Pingora proxy
/// (`sticky_proxy::StickyAffinity`): the same `sticky:` section, the same checks, but
/// `listeners` may be left out (the program's own services listen).
pub fn load_str_embedded(yaml: &str) -> Result<Config, ConfigError> {
    validate::validate(parse(yaml)?, false)
}

/// Validate a `sticky:` section built in code (the file format's types, [`raw::RawSticky`]) as
/// [`load_str_embedded`] validates one read from YAML: the errors name the same fields.
pub fn from_raw_embedded(section: raw::RawSticky) -> Result<Config, ConfigError> {
    validate::validate(section, false)
}

/// Validate one backend as `sticky.pools[].backends[]` is validated (name, address, weight),
/// for a backend added while the proxy runs (`POST /api/pools/{pool}/backends`); the error
/// names `field`'s member (`name`, `addr`, `weight`).
pub fn backend_from_raw(field: &str, raw: raw::RawBackend) -> Result<BackendConfig, ConfigError> {
    validate::validate_backend(field, raw)
}

/// The `sticky:` section of a whole YAML document, as the file format's types.
fn parse(yaml: &str) -> Result<raw::RawSticky, ConfigError> {
    let deserializer = serde_yaml::Deserializer::from_str(yaml);
    let document: raw::Document = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        // `?`: the YAML itself is broken (no field yet); the message carries line and column.
        // Outside our section (`?`: no field yet, or a key of Pingora's) the error is the YAML
        // itself being broken; the message carries the line and column.
        let field = match path.as_str() {
            "." => "sticky".to_string(),
            p if p.starts_with("sticky") => path,
            _ => "yaml".to_string(),
        };
        let message = one_line(&e.into_inner().to_string());
        // serde_yaml usually starts its message with the enclosing path already; keep that
        // form ("sticky.pools[0]: unknown field `x`") rather than repeating the path.
        match message.split_once(": ") {
            Some((prefix, rest)) if field.starts_with(prefix) && prefix.starts_with("sticky") => {
                ConfigError::new(prefix, rest)
            }
            _ => ConfigError::new(field, message),
        }
    })?;
    document
        .sticky
        .ok_or_else(|| ConfigError::new("sticky", "section missing from the configuration file"))
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
