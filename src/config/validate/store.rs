//! Validation of a learned-session store (`…learn.store`): `local`, or a Redis shared by proxy
//! instances — one server, a primary found through Sentinel, or a Cluster. Reads the passwords
//! (environment variable or file) but never connects: `-t` must work without a running Redis.

use super::super::raw::{self, RawStore, RawStoreKind, RawStoreMode};
use super::super::TableConfig;
use super::super::{ConfigError, HostPort, RedisStoreConfig, RedisTopology};
use super::Result;
use std::time::Duration;

/// The longest accepted key prefix, in bytes.
const MAX_PREFIX_LEN: usize = 128;
/// The longest accepted Sentinel service (master) name, in bytes.
const MAX_SERVICE_LEN: usize = 128;

pub(super) fn validate_store(
    field: &str,
    raw: RawStore,
    table: &TableConfig,
) -> Result<Option<RedisStoreConfig>> {
    match raw.kind {
        RawStoreKind::Local => match given(&raw).iter().find(|(_, given)| *given) {
            Some((name, _)) => Err(ConfigError::new(
                format!("{field}.{name}"),
                "not used by type \"local\" (did you mean type: redis?)",
            )),
            None => Ok(None),
        },
        RawStoreKind::Redis => validate_redis(field, raw, table).map(Some),
    }
}

/// Every Redis key, and whether it was given.
fn given(raw: &RawStore) -> [(&'static str, bool); 19] {
    [
        ("mode", raw.mode.is_some()),
        ("address", raw.address.is_some()),
        ("sentinels", raw.sentinels.is_some()),
        ("service", raw.service.is_some()),
        ("sentinel_username", raw.sentinel_username.is_some()),
        ("sentinel_password_env", raw.sentinel_password_env.is_some()),
        (
            "sentinel_password_file",
            raw.sentinel_password_file.is_some(),
        ),
        ("nodes", raw.nodes.is_some()),
        ("username", raw.username.is_some()),
        ("password_env", raw.password_env.is_some()),
        ("password_file", raw.password_file.is_some()),
        ("database", raw.database.is_some()),
        ("key_prefix", raw.key_prefix.is_some()),
        ("lookup_timeout_ms", raw.lookup_timeout_ms.is_some()),
        ("connect_timeout_ms", raw.connect_timeout_ms.is_some()),
        (
            "refresh_interval_seconds",
            raw.refresh_interval_seconds.is_some(),
        ),
        ("write_queue", raw.write_queue.is_some()),
        ("tls", raw.tls.is_some()),
        ("ca_file", raw.ca_file.is_some()),
    ]
}

/// The keys of the other modes, each with what to say when it is given.
fn foreign_keys(mode: RawStoreMode) -> &'static [(&'static str, &'static str)] {
    const SENTINEL: &str = "did you mean mode: sentinel?";
    const CLUSTER: &str = "did you mean mode: cluster?";
    match mode {
        RawStoreMode::Standalone => &[
            ("sentinels", SENTINEL),
            ("service", SENTINEL),
            ("sentinel_username", SENTINEL),
            ("sentinel_password_env", SENTINEL),
            ("sentinel_password_file", SENTINEL),
            ("nodes", CLUSTER),
        ],
        RawStoreMode::Sentinel => &[
            (
                "address",
                "the sentinels name the primary: list them in sentinels",
            ),
            ("nodes", CLUSTER),
        ],
        RawStoreMode::Cluster => &[
            ("address", "list the cluster's nodes in nodes"),
            ("sentinels", SENTINEL),
            ("service", SENTINEL),
            ("sentinel_username", SENTINEL),
            ("sentinel_password_env", SENTINEL),
            ("sentinel_password_file", SENTINEL),
        ],
    }
}

fn mode_name(mode: RawStoreMode) -> &'static str {
    match mode {
        RawStoreMode::Standalone => "standalone",
        RawStoreMode::Sentinel => "sentinel",
        RawStoreMode::Cluster => "cluster",
    }
}

fn validate_redis(field: &str, raw: RawStore, table: &TableConfig) -> Result<RedisStoreConfig> {
    let err = |name: &str, message: String| ConfigError::new(format!("{field}.{name}"), message);
    let mode = raw.mode.unwrap_or(RawStoreMode::Standalone);
    let given = given(&raw);
    for (name, hint) in foreign_keys(mode) {
        if given.iter().any(|(n, g)| n == name && *g) {
            return Err(err(
                name,
                format!("not used by mode {:?} ({hint})", mode_name(mode)),
            ));
        }
    }
    let tls_ca_pem = match (raw.tls == Some(true), raw.ca_file.as_deref()) {
        (false, Some(path)) => {
            return Err(err(
                "ca_file",
                format!("{path:?} is only used with tls: true"),
            ))
        }
        (false, None) => None,
        (true, None) => Some(Vec::new()),
        (true, Some(path)) => {
            let pem = std::fs::read(path)
                .map_err(|e| err("ca_file", format!("cannot read {path:?}: {e}")))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(err("ca_file", format!("no PEM certificate in {path:?}")));
            }
            Some(pem)
        }
    };
    let key_prefix = raw
        .key_prefix
        .clone()
        .unwrap_or_else(raw::default_key_prefix);
    if key_prefix.len() > MAX_PREFIX_LEN
        || key_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(err(
            "key_prefix",
            format!(
                "at most {MAX_PREFIX_LEN} bytes without spaces or control characters: {key_prefix:?}"
            ),
        ));
    }
    let topology = match mode {
        RawStoreMode::Standalone => {
            let address = raw.address.as_deref().ok_or_else(|| {
                err(
                    "address",
                    "required with type \"redis\" (or mode: sentinel or cluster)".to_string(),
                )
            })?;
            RedisTopology::Standalone(
                parse_host_port(address)
                    .ok_or_else(|| err("address", format!("not host:port: {address:?}")))?,
            )
        }
        RawStoreMode::Sentinel => {
            let sentinels = address_list(field, "sentinels", raw.sentinels.as_deref())?;
            let service = raw
                .service
                .as_deref()
                .ok_or_else(|| err("service", "required with mode \"sentinel\": the name the sentinels monitor the primary under".to_string()))?;
            if service.is_empty()
                || service.len() > MAX_SERVICE_LEN
                || service.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(err(
                    "service",
                    format!("1 to {MAX_SERVICE_LEN} bytes without spaces or control characters: {service:?}"),
                ));
            }
            let password = load_password(
                field,
                (
                    "sentinel_password_env",
                    raw.sentinel_password_env.as_deref(),
                ),
                (
                    "sentinel_password_file",
                    raw.sentinel_password_file.as_deref(),
                ),
            )?;
            check_user(
                field,
                "sentinel_username",
                &raw.sentinel_username,
                &password,
            )?;
            RedisTopology::Sentinel {
                sentinels,
                service: service.to_string(),
                username: raw.sentinel_username.clone(),
                password,
            }
        }
        RawStoreMode::Cluster => {
            if raw.database.is_some_and(|d| d != 0) {
                return Err(err(
                    "database",
                    format!(
                        "a cluster has only database 0: {}",
                        raw.database.unwrap_or_default()
                    ),
                ));
            }
            if key_prefix.contains(['{', '}']) {
                return Err(err(
                    "key_prefix",
                    format!("no braces with mode \"cluster\": a hash tag would put every session in one slot: {key_prefix:?}"),
                ));
            }
            RedisTopology::Cluster {
                nodes: address_list(field, "nodes", raw.nodes.as_deref())?,
            }
        }
    };
    let password = load_password(
        field,
        ("password_env", raw.password_env.as_deref()),
        ("password_file", raw.password_file.as_deref()),
    )?;
    check_user(field, "username", &raw.username, &password)?;
    let millis = |name: &str, value: u64, max: u64| {
        if value == 0 || value > max {
            return Err(err(
                name,
                format!("must be between 1 and {max} ms: {value}"),
            ));
        }
        Ok(Duration::from_millis(value))
    };
    let lookup_timeout = millis(
        "lookup_timeout_ms",
        raw.lookup_timeout_ms
            .unwrap_or_else(raw::default_lookup_timeout_ms),
        5_000,
    )?;
    let connect_timeout = millis(
        "connect_timeout_ms",
        raw.connect_timeout_ms
            .unwrap_or_else(raw::default_store_connect_timeout_ms),
        60_000,
    )?;
    let idle = table.idle_timeout.as_secs();
    let refresh = raw
        .refresh_interval_seconds
        .unwrap_or_else(|| (idle / 4).clamp(1, 60));
    if refresh == 0 || refresh >= idle {
        return Err(err(
            "refresh_interval_seconds",
            format!(
                "must be at least 1 and below the table's idle_timeout_seconds ({idle}): {refresh}"
            ),
        ));
    }
    let write_queue = raw.write_queue.unwrap_or_else(raw::default_write_queue);
    if write_queue == 0 || write_queue > 1_000_000 {
        return Err(err(
            "write_queue",
            format!("must be between 1 and 1000000: {write_queue}"),
        ));
    }
    Ok(RedisStoreConfig {
        topology,
        username: raw.username,
        password,
        database: raw.database.unwrap_or(0),
        key_prefix,
        lookup_timeout,
        connect_timeout,
        refresh_interval: Duration::from_secs(refresh),
        write_queue,
        tls_ca_pem,
    })
}

/// `sentinels` / `nodes`: at least one `host:port`, no duplicates.
fn address_list(field: &str, name: &str, list: Option<&[String]>) -> Result<Vec<HostPort>> {
    let list = list.ok_or_else(|| {
        ConfigError::new(
            format!("{field}.{name}"),
            "required with this mode: a list of host:port",
        )
    })?;
    if list.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.{name}"),
            "needs at least one host:port: []",
        ));
    }
    let mut parsed: Vec<HostPort> = Vec::with_capacity(list.len());
    for (i, address) in list.iter().enumerate() {
        let f = format!("{field}.{name}[{i}]");
        let at = parse_host_port(address)
            .ok_or_else(|| ConfigError::new(&f, format!("not host:port: {address:?}")))?;
        if let Some(j) = parsed.iter().position(|p| *p == at) {
            return Err(ConfigError::new(
                f,
                format!("duplicate address {address:?} (also {name}[{j}])"),
            ));
        }
        parsed.push(at);
    }
    Ok(parsed)
}

/// A user name needs a password.
fn check_user(
    field: &str,
    name: &str,
    user: &Option<String>,
    password: &Option<String>,
) -> Result<()> {
    match (user, password) {
        (Some(user), None) => Err(ConfigError::new(
            format!("{field}.{name}"),
            format!(
                "{user:?} needs a password ({} or {})",
                name.replace("username", "password_env"),
                name.replace("username", "password_file")
            ),
        )),
        _ => Ok(()),
    }
}

/// `host:port`, `[v6]:port`; the port 1–65535.
fn parse_host_port(address: &str) -> Option<HostPort> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')?
            .parse::<std::net::Ipv6Addr>()
            .ok()?
            .to_string(),
        None if host.contains(':') => return None,
        None => host.to_string(),
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    valid.then_some(HostPort { host, port })
}

/// The password from `(env key, variable)` or `(file key, path)`: one of them at most.
fn load_password(
    field: &str,
    (env_key, env): (&str, Option<&str>),
    (file_key, file): (&str, Option<&str>),
) -> Result<Option<String>> {
    let (f, value) = match (env, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                format!("{field}.{env_key}"),
                format!("give one of {env_key}, {file_key}, not both"),
            ))
        }
        (None, None) => return Ok(None),
        (Some(var), None) => {
            let f = format!("{field}.{env_key}");
            let value = std::env::var(var).map_err(|_| {
                ConfigError::new(&f, format!("environment variable {var:?} is not set"))
            })?;
            (f, value)
        }
        (None, Some(path)) => {
            let f = format!("{field}.{file_key}");
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(&f, format!("cannot read {path:?}: {e}")))?;
            (f, text.trim_end_matches(['\r', '\n']).to_string())
        }
    };
    if value.is_empty() {
        // The value itself is never echoed: it is a secret.
        return Err(ConfigError::new(f, "the password is empty"));
    }
    Ok(Some(value))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
