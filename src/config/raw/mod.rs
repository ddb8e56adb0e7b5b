//! The file format of our `sticky:` section: plain serde structs that mirror the YAML.
//!
//! Every struct denies unknown keys, so a typo is a start-up error naming the field. Defaults
//! live here (as `#[serde(default = ...)]`) so that docs/configuration.md's tables and the code agree in one
//! place. Nothing here is validated beyond its type: `super::validate` turns these into the typed
//! model in `super` (socket addresses, durations, header names, secrets).

use super::kinds::{
    AccessLogFormat, AlpnProtocol, BackendState, Balance, HealthCheckKind, MinVersion,
};
use serde::Deserialize;

mod affinity;
mod discovery;
mod routes;
mod store;
use affinity::default_true;
pub use affinity::*;
pub use discovery::*;
pub use routes::*;
pub use store::*;

/// The whole YAML document as we see it: Pingora's own keys are ignored here (Pingora reads them),
/// only `sticky:` is ours.
#[derive(Debug, Deserialize)]
pub struct Document {
    /// `sticky:`, if the document has it.
    pub sticky: Option<RawSticky>,
}

/// `sticky:` — our section. Built in code, start from `RawSticky::default()` (no listeners,
/// no pools) and validate it with `config::from_raw_embedded`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSticky {
    /// The proxy's listeners (at least one for the stock binary).
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    /// The pools (at least one).
    #[serde(default)]
    pub pools: Vec<RawPool>,
    /// Response headers removed before the client sees them (NGINX `proxy_hide_header`).
    #[serde(default)]
    pub hide_headers: Vec<String>,
    /// Networks (CIDR) of proxies in front of us whose `X-Forwarded-For` / `Forwarded` is
    /// believed for the client-IP key (NGINX `set_real_ip_from`).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The admin listener (JSON API, health, metrics); absent: none.
    pub admin: Option<RawAdmin>,
    /// Named persistence classes, shared by routes: `{ servlet: { cookie: …, failure: … } }`.
    #[serde(default)]
    pub classes: std::collections::BTreeMap<String, RawAffinity>,
    /// Ordered routes; the first match wins. Absent: each listener serves its pool.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// What a request matching no route gets (default: 404 from the proxy).
    pub default_route: Option<RawDefaultRoute>,
    /// The decision line's format.
    #[serde(default)]
    pub access_log: RawAccessLog,
    /// After SIGTERM, keep accepting and serving this long (readyz 503, connections closed after
    /// each response) before stopping (HAProxy `grace`). 0: stop at once.
    #[serde(default)]
    pub grace_ms: u64,
    /// Where backend states set through the admin API are kept across restarts (HAProxy
    /// `server-state-file`); absent: nowhere.
    pub state_file: Option<String>,
}

/// `sticky.admin`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `ip:port` of the admin listener (default `127.0.0.1:6189`).
    #[serde(default = "default_admin_addr")]
    pub addr: String,
    /// A file holding the bearer token for mutating calls.
    pub token_file: Option<String>,
    /// An environment variable holding the bearer token for mutating calls.
    pub token_env: Option<String>,
    /// Accept callers from other than loopback addresses.
    #[serde(default)]
    pub allow_remote: bool,
}

fn default_admin_addr() -> String {
    "127.0.0.1:6189".to_string()
}

/// `sticky.access_log`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: AccessLogFormat,
}

/// `sticky.listeners[i]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// `ip:port` to listen on.
    pub addr: String,
    /// The pool this listener serves; may be left out when there is exactly one pool.
    pub pool: Option<String>,
    /// Terminate TLS on this listener (HTTPS; HTTP/2 by ALPN).
    pub tls: Option<RawListenerTls>,
    /// Plain listeners: accept HTTP/2 without TLS (prior knowledge) beside HTTP/1.1.
    #[serde(default)]
    pub h2c: bool,
    /// Plain listeners: answer every request with a redirect to the same URL over HTTPS.
    pub redirect_to_https: Option<RawRedirectToHttps>,
    /// TCP_DEFER_ACCEPT: a connection is accepted once its first bytes arrived (NGINX
    /// `deferred`, HAProxy `defer-accept`), so a stop does not drop a plain-HTTP request whose
    /// head was already on its way.
    #[serde(default = "default_true")]
    pub defer_accept: bool,
    /// Client-side timeouts: the request head, keep-alive idle, sending to the client.
    #[serde(default)]
    pub timeouts: RawListenerTimeouts,
    /// Rust filters (registered by name, `Extensions::with_filter`) run for every request of
    /// this listener that has a route, in this order, before the route's own.
    #[serde(default)]
    pub filters: Vec<String>,
}

/// `sticky.listeners[i].timeouts` — the client side of a listener (HAProxy `timeout
/// http-request` / `http-keep-alive` / `client`, NGINX `client_header_timeout` /
/// `keepalive_timeout` / `send_timeout`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTimeouts {
    /// A request head must be complete this long after its first byte (default 30000).
    #[serde(default = "default_http_request_ms")]
    pub http_request_ms: u64,
    /// A kept-alive connection idle this long is closed (default 60000).
    #[serde(default = "default_keepalive_ms")]
    pub keepalive_ms: u64,
    /// Sending to the client without progress this long ends the connection (default 60000).
    #[serde(default = "default_client_send_ms")]
    pub client_send_ms: u64,
}

impl Default for RawListenerTimeouts {
    fn default() -> Self {
        RawListenerTimeouts {
            http_request_ms: default_http_request_ms(),
            keepalive_ms: default_keepalive_ms(),
            client_send_ms: default_client_send_ms(),
        }
    }
}

fn default_http_request_ms() -> u64 {
    30_000
}
fn default_keepalive_ms() -> u64 {
    60_000
}
fn default_client_send_ms() -> u64 {
    60_000
}

/// `sticky.listeners[i].tls`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    /// Certificates, chosen by SNI; the first is the default.
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    /// Names for a self-signed certificate made in memory at start-up (demos, tests).
    #[serde(default)]
    pub self_signed: Vec<String>,
    /// `TLSv1.2` (default) or `TLSv1.3`.
    #[serde(default)]
    pub min_version: MinVersion,
    /// Protocols offered by ALPN, HTTP/2 first.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<AlpnProtocol>,
    /// Refuse handshakes whose SNI names no certificate (HAProxy `strict-sni`).
    #[serde(default)]
    pub strict_sni: bool,
}

fn default_alpn() -> Vec<AlpnProtocol> {
    vec![AlpnProtocol::H2, AlpnProtocol::Http11]
}

/// `sticky.listeners[i].tls.certificates[j]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// PEM: the certificate, then its intermediates.
    pub cert_file: String,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// SNI names served; absent: the certificate's own DNS names.
    #[serde(default)]
    pub server_names: Vec<String>,
}

/// `sticky.listeners[i].redirect_to_https`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirectToHttps {
    /// The HTTPS port in the `Location` (443 is left out of the URL).
    #[serde(default = "default_https_port")]
    pub port: u16,
    /// 301, 302, 307 or 308.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

fn default_https_port() -> u16 {
    443
}

fn default_redirect_status() -> u16 {
    301
}

/// `sticky.pools[i].tls`: TLS from the proxy to the pool's backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// The name sent as SNI and verified in the backend's certificate.
    pub sni: Option<String>,
    /// PEM file of CA certificates to trust instead of the system's.
    pub ca_file: Option<String>,
    /// Verify the backend's certificate chain.
    #[serde(default = "default_true")]
    pub verify: bool,
    /// Verify that the certificate names `sni`.
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
}

/// `sticky.pools[i]`. `RawPool::default()` has every default and no name nor backends (both
/// required, the backends unless `discovery` is set).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// The pool's name, unique (part of the keyed cookie value).
    pub name: String,
    /// `round_robin` (default), `random` or `least_requests`.
    #[serde(default)]
    pub balance: Balance,
    /// The backends, in order (may be left out with `discovery`).
    #[serde(default)]
    pub backends: Vec<RawBackend>,
    /// Active health checks; absent: every backend counts as healthy.
    pub health_check: Option<RawHealthCheck>,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// The pool's own affinity; absent: none.
    #[serde(default)]
    pub affinity: RawAffinity,
    /// A response header naming the backend that served the response (its configured name,
    /// never its address), for troubleshooting; absent: none.
    pub served_by_header: Option<String>,
    /// Slow start (HAProxy `slowstart`, NGINX Plus `slow_start`): a backend that comes back
    /// (healthy again, or re-enabled) ramps its share of new sessions up over this many
    /// seconds; 0 (default): at once.
    #[serde(default)]
    pub slow_start_seconds: u64,
    /// TLS to the backends; absent: plain HTTP.
    pub tls: Option<RawUpstreamTls>,
    /// The `Host` sent to the backends for a request that has none (HTTP/1.0 allows that;
    /// HTTP/1.1 backends must refuse it). Absent: the `tls.sni` name, else the backend's
    /// address (NGINX's `$proxy_host`). A request's own `Host` is always kept.
    pub default_host: Option<String>,
    /// DNS discovery of more backends (HAProxy `server-template` + `resolvers`, NGINX Plus
    /// `resolve`); absent: the static `backends` only.
    pub discovery: Option<RawDiscovery>,
}

/// `sticky.pools[i].backends[j]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// Unique name in its pool.
    pub name: String,
    /// `ip:port`.
    pub addr: String,
    /// 1 to 256 (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// `active` (default), `draining` or `disabled`; changeable at run time (admin API).
    #[serde(default)]
    pub state: BackendState,
}

fn default_weight() -> u32 {
    1
}

impl RawBackend {
    /// A backend as `{ name: <name>, addr: <addr> }` in the file: weight 1, `active`.
    pub fn new(name: impl Into<String>, addr: impl Into<String>) -> Self {
        RawBackend {
            name: name.into(),
            addr: addr.into(),
            weight: default_weight(),
            state: BackendState::default(),
        }
    }
}

/// `sticky.pools[i].health_check`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// `tcp` or `http`.
    #[serde(rename = "type")]
    pub kind: HealthCheckKind,
    /// HTTP only: the path probed with `GET`.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// HTTP only: the `Host` header of the probe.
    #[serde(default = "default_health_host")]
    pub host: String,
    /// HTTP only: the status that counts as healthy.
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// Time between probes (default 2000).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// A probe's connect (and read) timeout (default 1000).
    #[serde(default = "default_health_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive successes that bring an unhealthy backend back (HAProxy `rise`).
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that take a healthy backend out (HAProxy `fall`).
    #[serde(default = "default_fall")]
    pub fall: u32,
}

fn default_health_path() -> String {
    "/".to_string()
}
fn default_health_host() -> String {
    "localhost".to_string()
}
fn default_expect_status() -> u16 {
    200
}
fn default_interval_ms() -> u64 {
    2000
}
fn default_health_timeout_ms() -> u64 {
    1000
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

/// `sticky.pools[i].timeouts` — per-pool upstream timeouts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// Connecting to a backend (default 3000).
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    /// Each read from a backend (default 60000).
    #[serde(default = "default_read_ms")]
    pub read_ms: u64,
    /// Each write to a backend (default 60000).
    #[serde(default = "default_write_ms")]
    pub write_ms: u64,
    /// How long an idle upstream connection is kept for reuse (default 60000).
    #[serde(default = "default_idle_ms")]
    pub idle_ms: u64,
    /// From the request's arrival to the end of the backend's response, retries included
    /// (Envoy's route `timeout`); absent: no overall limit.
    pub total_ms: Option<u64>,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        RawTimeouts {
            connect_ms: default_connect_ms(),
            read_ms: default_read_ms(),
            write_ms: default_write_ms(),
            idle_ms: default_idle_ms(),
            total_ms: None,
        }
    }
}

fn default_connect_ms() -> u64 {
    3000
}
fn default_read_ms() -> u64 {
    60_000
}
fn default_write_ms() -> u64 {
    60_000
}
fn default_idle_ms() -> u64 {
    60_000
}
