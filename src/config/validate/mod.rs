//! Checks every value of the raw `sticky:` section and builds the typed [`Config`].
//!
//! Each check returns a [`ConfigError`] naming the field by its path in the YAML and quoting the
//! offending value. Limits that protect the process (weights, secret length) live here too.

use super::raw::{RawBackend, RawHealthCheck, RawPool, RawSticky, RawTimeouts};
use super::{
    BackendConfig, ClassConfig, Config, ConfigError, HealthCheckConfig, PoolConfig, TimeoutConfig,
};
use std::net::SocketAddr;
use std::time::Duration;

/// The largest backend weight (HAProxy's limit too); the balancer expands weights into a table.
pub const MAX_WEIGHT: u32 = 256;
/// The shortest accepted HMAC secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

type Result<T> = std::result::Result<T, ConfigError>;

/// Validate the section. `listeners_required`: the proxy's own listeners must be given (the
/// stock binary); a program that embeds the affinity engine listens with its own services.
pub(super) fn validate(raw: RawSticky, listeners_required: bool) -> Result<Config> {
    if raw.pools.is_empty() {
        return Err(ConfigError::new(
            "sticky.pools",
            "at least one pool is required",
        ));
    }
    let mut pools = Vec::with_capacity(raw.pools.len());
    for (i, pool) in raw.pools.into_iter().enumerate() {
        let field = format!("sticky.pools[{i}]");
        let pool = validate_pool(&field, pool)?;
        if let Some(j) = pools.iter().position(|p: &PoolConfig| p.name == pool.name) {
            return Err(ConfigError::new(
                format!("{field}.name"),
                format!(
                    "duplicate pool name: {:?} (also sticky.pools[{j}].name)",
                    pool.name
                ),
            ));
        }
        pools.push(pool);
    }

    let listeners = if raw.listeners.is_empty() && !listeners_required {
        Vec::new()
    } else {
        listeners::validate_listeners(raw.listeners, &pools, !raw.routes.is_empty())?
    };

    let mut hide_headers = Vec::with_capacity(raw.hide_headers.len());
    for (i, name) in raw.hide_headers.iter().enumerate() {
        hide_headers.push(parse_header_name(
            &format!("sticky.hide_headers[{i}]"),
            name,
        )?);
    }

    let mut trusted_proxies = Vec::with_capacity(raw.trusted_proxies.len());
    for (i, net) in raw.trusted_proxies.iter().enumerate() {
        let parsed = net
            .parse::<ipnet::IpNet>()
            .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                ConfigError::new(
                    format!("sticky.trusted_proxies[{i}]"),
                    format!("not a network (CIDR) or IP address: {net:?}"),
                )
            })?;
        trusted_proxies.push(parsed);
    }

    let admin = raw.admin.map(admin::validate_admin).transpose()?;
    if let Some(admin) = &admin {
        if listeners.iter().any(|l| l.addr == admin.addr) {
            return Err(ConfigError::new(
                "sticky.admin.addr",
                format!("already used by a listener: \"{}\"", admin.addr),
            ));
        }
    }

    let mut classes = Vec::with_capacity(raw.classes.len());
    for (name, class) in raw.classes {
        let field = format!("sticky.classes.{name}");
        if name == "none" || name.is_empty() {
            return Err(ConfigError::new(
                field,
                format!("{name:?} is reserved: `class: none` means no affinity"),
            ));
        }
        if let Some(header) = &class.opt_out_header {
            return Err(ConfigError::new(
                format!("{field}.opt_out_header"),
                format!("{header:?}: set it on the pool's affinity, not on a class"),
            ));
        }
        let affinity = affinity::validate_affinity(&field, class)?;
        classes.push(ClassConfig { name, affinity });
    }
    let (routes, default_route, mut warnings) =
        routes::validate_routes(&raw.routes, raw.default_route.as_ref(), &pools, &classes)?;
    warnings.extend(admin.as_ref().and_then(admin::exposure_warning));
    if raw.grace_ms > MAX_GRACE_MS {
        return Err(ConfigError::new(
            "sticky.grace_ms",
            format!(
                "{}: at most {MAX_GRACE_MS} (10 minutes; the value is in milliseconds)",
                raw.grace_ms
            ),
        ));
    }

    Ok(Config {
        listeners,
        pools,
        hide_headers,
        trusted_proxies,
        admin,
        access_log_format: raw.access_log.format,
        classes,
        routes,
        default_route,
        warnings,
        grace: std::time::Duration::from_millis(raw.grace_ms),
        state_file: raw
            .state_file
            .as_deref()
            .map(state_file::validate)
            .transpose()?,
    })
}

/// The longest accepted `pools[].slow_start_seconds`.
const MAX_SLOW_START_SECONDS: u64 = 3600;

/// The longest accepted `sticky.grace_ms`.
const MAX_GRACE_MS: u64 = 600_000;

fn validate_pool(field: &str, raw: RawPool) -> Result<PoolConfig> {
    if raw.name.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.name"),
            "must not be empty",
        ));
    }
    let discovery = raw
        .discovery
        .map(|d| discovery::validate(&format!("{field}.discovery"), d))
        .transpose()?;
    if raw.backends.is_empty() && discovery.is_none() {
        return Err(ConfigError::new(
            format!("{field}.backends"),
            "at least one backend is required (or a `discovery`)",
        ));
    }
    let mut backends: Vec<BackendConfig> = Vec::with_capacity(raw.backends.len());
    for (j, backend) in raw.backends.into_iter().enumerate() {
        let field = format!("{field}.backends[{j}]");
        let backend = validate_backend(&field, backend)?;
        // Compared ignoring case, Unicode's as ARR's: `arr` cookies hash `to_lowercase(name)`,
        // so `Ä` and `ä` (or `K`, the Kelvin sign, and `k`) would share one cookie value.
        let lower = backend.name.to_lowercase();
        if let Some(k) = backends.iter().position(|b| b.name.to_lowercase() == lower) {
            return Err(ConfigError::new(
                format!("{field}.name"),
                format!(
                    "duplicate backend name: {:?} (also backends[{k}])",
                    backend.name
                ),
            ));
        }
        if let Some(k) = backends.iter().position(|b| b.addr == backend.addr) {
            return Err(ConfigError::new(
                format!("{field}.addr"),
                format!(
                    "duplicate backend address: \"{}\" (also backends[{k}])",
                    backend.addr
                ),
            ));
        }
        backends.push(backend);
    }
    if backends.len() > u16::MAX as usize {
        return Err(ConfigError::new(
            format!("{field}.backends"),
            format!("at most {} backends per pool", u16::MAX),
        ));
    }
    let health_check = raw
        .health_check
        .map(|h| validate_health_check(&format!("{field}.health_check"), h))
        .transpose()?;
    let timeouts = validate_timeouts(&format!("{field}.timeouts"), &raw.timeouts)?;
    let opt_out_header = parse_header_name(
        &format!("{field}.affinity.opt_out_header"),
        raw.affinity
            .opt_out_header
            .as_deref()
            .unwrap_or("Arr-Disable-Session-Affinity"),
    )?;
    let served_by_header = served_by::validate(
        &format!("{field}.served_by_header"),
        raw.served_by_header.as_deref(),
        &opt_out_header,
        field,
        &backends,
    )?;
    let slow_start = match raw.slow_start_seconds {
        0 => None,
        s if s <= MAX_SLOW_START_SECONDS => Some(Duration::from_secs(s)),
        s => {
            return Err(ConfigError::new(
                format!("{field}.slow_start_seconds"),
                format!("must be between 0 (off) and {MAX_SLOW_START_SECONDS} (an hour): {s}"),
            ))
        }
    };
    let affinity = affinity::validate_affinity(&format!("{field}.affinity"), raw.affinity)?;
    let tls = raw
        .tls
        .map(|t| listeners::validate_upstream_tls(&format!("{field}.tls"), t))
        .transpose()?;
    let default_host = raw
        .default_host
        .map(|h| parse_host(&format!("{field}.default_host"), &h))
        .transpose()?;
    Ok(PoolConfig {
        name: raw.name,
        balance: raw.balance,
        backends,
        health_check,
        timeouts,
        affinity,
        opt_out_header,
        served_by_header,
        slow_start,
        tls,
        default_host,
        discovery,
    })
}

pub(super) fn validate_backend(field: &str, raw: RawBackend) -> Result<BackendConfig> {
    if raw.name.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.name"),
            "must not be empty",
        ));
    }
    let addr = parse_addr(&format!("{field}.addr"), &raw.addr)?;
    if raw.weight == 0 || raw.weight > MAX_WEIGHT {
        return Err(ConfigError::new(
            format!("{field}.weight"),
            format!("must be between 1 and {MAX_WEIGHT}: {}", raw.weight),
        ));
    }
    Ok(BackendConfig {
        name: raw.name,
        addr,
        weight: raw.weight,
        state: raw.state,
    })
}

fn validate_health_check(field: &str, raw: RawHealthCheck) -> Result<HealthCheckConfig> {
    if !raw.path.starts_with('/') || http::uri::PathAndQuery::try_from(raw.path.as_str()).is_err() {
        return Err(ConfigError::new(
            format!("{field}.path"),
            format!("not an absolute request path: {:?}", raw.path),
        ));
    }
    if http::HeaderValue::from_str(&raw.host).is_err() || raw.host.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.host"),
            format!("not a valid Host header value: {:?}", raw.host),
        ));
    }
    if !(100..=599).contains(&raw.expect_status) {
        return Err(ConfigError::new(
            format!("{field}.expect_status"),
            format!("not an HTTP status: {}", raw.expect_status),
        ));
    }
    let interval = positive_ms(&format!("{field}.interval_ms"), raw.interval_ms)?;
    let timeout = positive_ms(&format!("{field}.timeout_ms"), raw.timeout_ms)?;
    for (name, value) in [("rise", raw.rise), ("fall", raw.fall)] {
        if value == 0 || value > 1000 {
            return Err(ConfigError::new(
                format!("{field}.{name}"),
                format!("must be between 1 and 1000: {value}"),
            ));
        }
    }
    Ok(HealthCheckConfig {
        kind: raw.kind,
        path: raw.path,
        host: raw.host,
        expect_status: raw.expect_status,
        interval,
        timeout,
        rise: raw.rise,
        fall: raw.fall,
    })
}

fn validate_timeouts(field: &str, raw: &RawTimeouts) -> Result<TimeoutConfig> {
    Ok(TimeoutConfig {
        connect: positive_ms(&format!("{field}.connect_ms"), raw.connect_ms)?,
        read: positive_ms(&format!("{field}.read_ms"), raw.read_ms)?,
        write: positive_ms(&format!("{field}.write_ms"), raw.write_ms)?,
        idle: positive_ms(&format!("{field}.idle_ms"), raw.idle_ms)?,
        total: raw
            .total_ms
            .map(|ms| positive_ms(&format!("{field}.total_ms"), ms))
            .transpose()?,
    })
}

fn parse_addr(field: &str, value: &str) -> Result<SocketAddr> {
    value
        .parse()
        .map_err(|_| ConfigError::new(field, format!("not a socket address: {value:?}")))
}

/// A `Host` value: a host name or IP address, with an optional port (`uri-host [ ":" port ]`).
fn parse_host(field: &str, value: &str) -> Result<http::HeaderValue> {
    let is_port = |p: &str| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok();
    let port_ok = match value.strip_prefix('[') {
        Some(v6) => v6.split_once(']').is_some_and(|(ip, rest)| {
            ip.parse::<std::net::Ipv6Addr>().is_ok()
                && (rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port))
        }),
        None => value.split_once(':').is_none_or(|(_, port)| is_port(port)),
    };
    let valid = port_ok
        && !value.contains('@')
        && http::uri::Authority::try_from(value).is_ok_and(|a| a.as_str() == value);
    match http::HeaderValue::from_str(value) {
        Ok(header) if valid => Ok(header),
        _ => Err(ConfigError::new(
            field,
            format!("not a host, or host:port: {value:?}"),
        )),
    }
}

fn parse_header_name(field: &str, value: &str) -> Result<http::HeaderName> {
    http::HeaderName::from_bytes(value.as_bytes())
        .map_err(|_| ConfigError::new(field, format!("not a header name: {value:?}")))
}

fn positive_ms(field: &str, ms: u64) -> Result<Duration> {
    if ms == 0 || ms > 86_400_000 {
        return Err(ConfigError::new(
            field,
            format!("must be between 1 and 86400000 milliseconds: {ms}"),
        ));
    }
    Ok(Duration::from_millis(ms))
}

/// A `filters` list: names of registered Rust filters (checked against the registered ones by
/// the extension module), each given once.
fn filter_names(field: &str, names: &[String]) -> Result<Vec<String>> {
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                "empty: name a registered filter",
            ));
        }
        if let Some(j) = names[..i].iter().position(|n| n == name) {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("{name:?} is listed twice (also {field}[{j}])"),
            ));
        }
    }
    Ok(names.to_vec())
}

/// RFC 6265 `cookie-name` is an RFC 7230 token.
fn check_cookie_name(field: &str, name: &str) -> Result<()> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(ConfigError::new(
            field,
            format!("not a valid cookie name: {name:?}"),
        ));
    }
    Ok(())
}

/// Attribute values may not contain `;`, control characters or non-ASCII bytes.
fn check_attribute_value(field: &str, value: &str) -> Result<()> {
    // Leading or trailing spaces are trimmed by every cookie parser (RFC 6265 5.2): `Path=/ `
    // would be a cookie for `/`, not the configured path.
    if value
        .bytes()
        .any(|b| b == b';' || b.is_ascii_control() || !b.is_ascii())
        || value.trim_matches(' ') != value
    {
        return Err(ConfigError::new(
            field,
            format!("not a valid cookie attribute value: {value:?}"),
        ));
    }
    Ok(())
}

mod admin;
mod affinity;
mod cookie;
mod discovery;
#[cfg(test)]
mod extension_tests;
mod listeners;
pub(super) mod routes;
mod served_by;
mod state_file;
mod store;
#[cfg(test)]
mod tests;
