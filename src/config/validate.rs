//! Checks every value of the raw `sticky:` section and builds the typed [`Config`].
//!
//! Each check returns a [`ConfigError`] naming the field by its path in the YAML and quoting the
//! offending value. Limits that protect the process (weights, secret length) live here too.

use super::raw::{
    RawAffinity, RawBackend, RawCookie, RawCookieFormat, RawHash, RawHealthCheck, RawKeySource,
    RawPool, RawSameSite, RawSticky, RawTimeouts,
};
use super::{
    AffinityConfig, BackendConfig, Config, ConfigError, CookieConfig, CookieFormat, HashConfig,
    HealthCheckConfig, KeySourceConfig, ListenerConfig, PoolConfig, SameSite, TimeoutConfig,
};
use std::net::SocketAddr;
use std::time::Duration;

/// The largest backend weight (HAProxy's limit too); the balancer expands weights into a table.
pub const MAX_WEIGHT: u32 = 256;
/// The shortest accepted HMAC secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn validate(raw: RawSticky) -> Result<Config> {
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

    if raw.listeners.is_empty() {
        return Err(ConfigError::new(
            "sticky.listeners",
            "at least one listener is required",
        ));
    }
    let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(raw.listeners.len());
    for (i, listener) in raw.listeners.into_iter().enumerate() {
        let field = format!("sticky.listeners[{i}]");
        let addr = parse_addr(&format!("{field}.addr"), &listener.addr)?;
        if let Some(j) = listeners.iter().position(|l| l.addr == addr) {
            return Err(ConfigError::new(
                format!("{field}.addr"),
                format!(
                    "duplicate listener address: {:?} (also sticky.listeners[{j}].addr)",
                    listener.addr
                ),
            ));
        }
        let pool = match &listener.pool {
            Some(name) => pools.iter().position(|p| &p.name == name).ok_or_else(|| {
                ConfigError::new(
                    format!("{field}.pool"),
                    format!("no pool named {name:?} in sticky.pools"),
                )
            })?,
            None if pools.len() == 1 => 0,
            None => {
                return Err(ConfigError::new(
                    format!("{field}.pool"),
                    "required when there is more than one pool",
                ))
            }
        };
        listeners.push(ListenerConfig { addr, pool });
    }

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

    Ok(Config {
        listeners,
        pools,
        hide_headers,
        trusted_proxies,
    })
}

fn validate_pool(field: &str, raw: RawPool) -> Result<PoolConfig> {
    if raw.name.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.name"),
            "must not be empty",
        ));
    }
    if raw.backends.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.backends"),
            "at least one backend is required",
        ));
    }
    let mut backends: Vec<BackendConfig> = Vec::with_capacity(raw.backends.len());
    for (j, backend) in raw.backends.into_iter().enumerate() {
        let field = format!("{field}.backends[{j}]");
        let backend = validate_backend(&field, backend)?;
        if let Some(k) = backends.iter().position(|b| b.name == backend.name) {
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
        &raw.affinity.opt_out_header,
    )?;
    let affinity = validate_affinity(&format!("{field}.affinity"), raw.affinity)?;
    Ok(PoolConfig {
        name: raw.name,
        balance: raw.balance,
        backends,
        health_check,
        timeouts,
        affinity,
        opt_out_header,
    })
}

fn validate_backend(field: &str, raw: RawBackend) -> Result<BackendConfig> {
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
    })
}

fn validate_affinity(field: &str, raw: RawAffinity) -> Result<Option<AffinityConfig>> {
    // Every part is checked even when affinity is off, so that switching it back on cannot
    // reveal a latent error.
    let cookie = raw
        .cookie
        .map(|c| validate_cookie(&format!("{field}.cookie"), c))
        .transpose()?;
    let hash = raw
        .hash
        .map(|h| validate_hash(&format!("{field}.hash"), h))
        .transpose()?;
    if !raw.enabled || (cookie.is_none() && hash.is_none()) {
        return Ok(None);
    }
    Ok(Some(AffinityConfig { cookie, hash }))
}

fn validate_hash(field: &str, raw: RawHash) -> Result<HashConfig> {
    if raw.sources.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.sources"),
            "at least one key source is required",
        ));
    }
    if let Some(factor) = raw.balance_factor {
        if !(factor > 1.0 && factor <= 100.0) {
            return Err(ConfigError::new(
                format!("{field}.balance_factor"),
                format!("must be above 1.0 and at most 100: {factor}"),
            ));
        }
    }
    let mut sources = Vec::with_capacity(raw.sources.len());
    for (i, source) in raw.sources.into_iter().enumerate() {
        sources.push(validate_key_source(
            &format!("{field}.sources[{i}]"),
            source,
        )?);
    }
    Ok(HashConfig {
        sources,
        balance_factor: raw.balance_factor,
    })
}

fn validate_key_source(field: &str, raw: RawKeySource) -> Result<KeySourceConfig> {
    Ok(match raw {
        RawKeySource::Cookie { name, regex } => {
            check_cookie_name(&format!("{field}.name"), &name)?;
            let regex = regex
                .map(|pattern| {
                    let f = format!("{field}.regex");
                    let compiled = regex::bytes::RegexBuilder::new(&pattern)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| {
                            let reason = e.to_string();
                            let reason = reason.lines().last().unwrap_or_default().trim();
                            ConfigError::new(
                                &f,
                                format!("not a valid regex: {pattern:?}: {reason}"),
                            )
                        })?;
                    if compiled.captures_len() < 2 {
                        return Err(ConfigError::new(
                            f,
                            format!("needs a capture group for the key: {pattern:?}"),
                        ));
                    }
                    Ok(compiled)
                })
                .transpose()?;
            KeySourceConfig::Cookie { name, regex }
        }
        RawKeySource::Header { name } => KeySourceConfig::Header {
            name: parse_header_name(&format!("{field}.name"), &name)?,
        },
        RawKeySource::Query { params } => {
            if params.is_empty() || params.iter().any(|p| p.is_empty()) {
                return Err(ConfigError::new(
                    format!("{field}.params"),
                    format!("needs one or more non-empty parameter names: {params:?}"),
                ));
            }
            KeySourceConfig::Query { params }
        }
        RawKeySource::Path => KeySourceConfig::Path,
        RawKeySource::PathAndQuery => KeySourceConfig::PathAndQuery,
        RawKeySource::Host => KeySourceConfig::Host,
        RawKeySource::ClientIp {
            ipv4_prefix,
            ipv6_prefix,
        } => {
            if ipv4_prefix > 32 {
                return Err(ConfigError::new(
                    format!("{field}.ipv4_prefix"),
                    format!("must be 0 to 32: {ipv4_prefix}"),
                ));
            }
            if ipv6_prefix > 128 {
                return Err(ConfigError::new(
                    format!("{field}.ipv6_prefix"),
                    format!("must be 0 to 128: {ipv6_prefix}"),
                ));
            }
            KeySourceConfig::ClientIp {
                ipv4_prefix,
                ipv6_prefix,
            }
        }
    })
}

fn validate_cookie(field: &str, raw: RawCookie) -> Result<CookieConfig> {
    check_cookie_name(&format!("{field}.name"), &raw.name)?;
    if let Some(twin) = &raw.same_site_none_twin {
        check_cookie_name(&format!("{field}.same_site_none_twin"), twin)?;
        if twin == &raw.name {
            return Err(ConfigError::new(
                format!("{field}.same_site_none_twin"),
                format!("must differ from the cookie name: {twin:?}"),
            ));
        }
    }
    check_attribute_value(&format!("{field}.path"), &raw.path)?;
    if !raw.path.starts_with('/') {
        return Err(ConfigError::new(
            format!("{field}.path"),
            format!("must start with '/': {:?}", raw.path),
        ));
    }
    if let Some(domain) = &raw.domain {
        check_attribute_value(&format!("{field}.domain"), domain)?;
        if domain.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.domain"),
                "must not be empty",
            ));
        }
    }
    let same_site = raw.same_site.map(|s| match s {
        RawSameSite::Lax => SameSite::Lax,
        RawSameSite::Strict => SameSite::Strict,
        RawSameSite::None => SameSite::None,
    });
    if same_site == Some(SameSite::None) && !raw.secure {
        return Err(ConfigError::new(
            format!("{field}.same_site"),
            "\"none\" requires secure: true (browsers drop SameSite=None cookies without Secure)",
        ));
    }
    let format = match raw.format {
        RawCookieFormat::Arr => {
            if raw.secret.is_some() || raw.secret_file.is_some() || raw.secret_env.is_some() {
                return Err(ConfigError::new(
                    format!("{field}.format"),
                    "\"arr\" takes no secret; remove secret/secret_file/secret_env or use \"keyed\"",
                ));
            }
            CookieFormat::Arr
        }
        RawCookieFormat::Keyed => CookieFormat::Keyed {
            secret: load_secret(field, &raw)?,
        },
    };
    Ok(CookieConfig {
        name: raw.name,
        format,
        path: raw.path,
        domain: raw.domain,
        http_only: raw.http_only,
        secure: raw.secure,
        same_site,
        max_age: raw.max_age_seconds.map(Duration::from_secs),
        twin_name: raw.same_site_none_twin,
        indirect: raw.indirect,
        nocache: raw.nocache,
    })
}

fn load_secret(field: &str, raw: &RawCookie) -> Result<Vec<u8>> {
    let given = [
        raw.secret.is_some(),
        raw.secret_file.is_some(),
        raw.secret_env.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        return Err(ConfigError::new(
            format!("{field}.secret"),
            "format \"keyed\" needs exactly one of secret, secret_file, secret_env",
        ));
    }
    let (secret_field, secret) = if let Some(s) = &raw.secret {
        (format!("{field}.secret"), s.clone())
    } else if let Some(path) = &raw.secret_file {
        let f = format!("{field}.secret_file");
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&f, format!("cannot read {path:?}: {e}")))?;
        (f, text.trim_end_matches(['\r', '\n']).to_string())
    } else {
        let var = raw.secret_env.as_deref().unwrap_or_default();
        let f = format!("{field}.secret_env");
        let value = std::env::var(var).map_err(|_| {
            ConfigError::new(&f, format!("environment variable {var:?} is not set"))
        })?;
        (f, value)
    };
    if secret.len() < MIN_SECRET_LEN {
        // The value itself is not echoed: it is a secret.
        return Err(ConfigError::new(
            secret_field,
            format!(
                "secret too short: {} bytes, at least {MIN_SECRET_LEN} required",
                secret.len()
            ),
        ));
    }
    Ok(secret.into_bytes())
}

fn parse_addr(field: &str, value: &str) -> Result<SocketAddr> {
    value
        .parse()
        .map_err(|_| ConfigError::new(field, format!("not a socket address: {value:?}")))
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
    if value
        .bytes()
        .any(|b| b == b';' || b.is_ascii_control() || !b.is_ascii())
    {
        return Err(ConfigError::new(
            field,
            format!("not a valid cookie attribute value: {value:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
