//! Validation of a pool's `affinity:` section: cookie insertion, hash keys, learned sessions
//! and the client-IP table.

use super::super::raw::{
    RawAffinity, RawClientIpTable, RawFailure, RawHash, RawKeySource, RawLearn, RawPolicy,
    RawPreset, RawTable,
};
use super::super::TableConfig;
use super::super::{
    AffinityConfig, ClientIpTableConfig, ConfigError, FailurePolicy, HashConfig, KeySourceConfig,
    LearnConfig,
};
use super::{check_cookie_name, parse_header_name, Result};
use std::time::Duration;

pub(super) fn validate_affinity(field: &str, raw: RawAffinity) -> Result<Option<AffinityConfig>> {
    // Every part is checked even when affinity is off, so that switching it back on cannot
    // reveal a latent error.
    let cookie = raw
        .cookie
        .map(|c| super::cookie::validate_cookie(&format!("{field}.cookie"), c))
        .transpose()?;
    let hash = raw
        .hash
        .map(|h| validate_hash(&format!("{field}.hash"), h))
        .transpose()?;
    let learn = raw
        .learn
        .map(|l| validate_learn(&format!("{field}.learn"), l))
        .transpose()?;
    let client_ip_table = raw
        .client_ip_table
        .map(|t| validate_ip_table(&format!("{field}.client_ip_table"), t))
        .transpose()?;
    // Resolved against the registered extensions when the affinities are built
    // (`extension::check`): the model only names it.
    let named_node = raw.named_node.map(|n| n.source);
    let failure = validate_failure(&format!("{field}.failure"), raw.failure)?;
    if !raw.enabled
        || (cookie.is_none()
            && hash.is_none()
            && learn.is_none()
            && client_ip_table.is_none()
            && named_node.is_none())
    {
        return Ok(None);
    }
    Ok(Some(AffinityConfig {
        cookie,
        hash,
        learn,
        client_ip_table,
        named_node,
        failure,
    }))
}

fn validate_failure(field: &str, raw: RawFailure) -> Result<FailurePolicy> {
    let unused = |name: &str, given: bool| {
        if given {
            Err(ConfigError::new(
                format!("{field}.{name}"),
                format!(
                    "not used by policy {:?}",
                    format!("{:?}", raw.policy).to_lowercase()
                ),
            ))
        } else {
            Ok(())
        }
    };
    Ok(match raw.policy {
        RawPolicy::Rebalance | RawPolicy::Strict | RawPolicy::Close => {
            unused("status", raw.status.is_some())?;
            unused("content_type", raw.content_type.is_some())?;
            unused("body", raw.body.is_some())?;
            unused("location", raw.location.is_some())?;
            match raw.policy {
                RawPolicy::Rebalance => FailurePolicy::Rebalance,
                RawPolicy::Strict => FailurePolicy::Strict,
                _ => FailurePolicy::Close,
            }
        }
        RawPolicy::Sorry => {
            unused("location", raw.location.is_some())?;
            let status = raw.status.unwrap_or(503);
            if !(200..=599).contains(&status) {
                return Err(ConfigError::new(
                    format!("{field}.status"),
                    format!("not a final HTTP status: {status}"),
                ));
            }
            let content_type = raw
                .content_type
                .unwrap_or_else(|| "text/plain; charset=utf-8".to_string());
            let content_type = http::HeaderValue::from_str(&content_type).map_err(|_| {
                ConfigError::new(
                    format!("{field}.content_type"),
                    format!("not a header value: {content_type:?}"),
                )
            })?;
            FailurePolicy::Sorry {
                status,
                content_type,
                body: bytes::Bytes::from(raw.body.unwrap_or_default()),
            }
        }
        RawPolicy::Redirect => {
            unused("status", raw.status.is_some())?;
            unused("content_type", raw.content_type.is_some())?;
            unused("body", raw.body.is_some())?;
            let location = raw.location.ok_or_else(|| {
                ConfigError::new(
                    format!("{field}.location"),
                    "required by policy \"redirect\"",
                )
            })?;
            let valid = http::Uri::try_from(location.as_str()).is_ok() && !location.is_empty();
            let header = http::HeaderValue::from_str(&location)
                .ok()
                .filter(|_| valid);
            FailurePolicy::Redirect {
                location: header.ok_or_else(|| {
                    ConfigError::new(
                        format!("{field}.location"),
                        format!("not a URL: {location:?}"),
                    )
                })?,
            }
        }
    })
}

/// The largest session table (entries): about 10 GB at ~100 bytes per entry.
pub const MAX_TABLE_CAPACITY: u64 = 100_000_000;

fn validate_table(field: &str, raw: &RawTable) -> Result<TableConfig> {
    if raw.capacity == 0 || raw.capacity > MAX_TABLE_CAPACITY {
        return Err(ConfigError::new(
            format!("{field}.capacity"),
            format!(
                "must be between 1 and {MAX_TABLE_CAPACITY}: {}",
                raw.capacity
            ),
        ));
    }
    let seconds = |name: &str, value: u64| {
        if value == 0 || value > 31_536_000 {
            return Err(ConfigError::new(
                format!("{field}.{name}"),
                format!("must be between 1 and 31536000 seconds: {value}"),
            ));
        }
        Ok(Duration::from_secs(value))
    };
    Ok(TableConfig {
        capacity: raw.capacity,
        idle_timeout: seconds("idle_timeout_seconds", raw.idle_timeout_seconds)?,
        max_lifetime: raw
            .max_lifetime_seconds
            .map(|v| seconds("max_lifetime_seconds", v))
            .transpose()?,
    })
}

fn validate_learn(field: &str, raw: RawLearn) -> Result<LearnConfig> {
    let mut cookies: Vec<String> = Vec::new();
    let mut path_parameter = raw.path_parameter.clone();
    for preset in &raw.presets {
        let name = match preset {
            RawPreset::J2ee => {
                path_parameter.get_or_insert_with(|| "jsessionid".to_string());
                "JSESSIONID"
            }
            RawPreset::Aspnet => "ASP.NET_SessionId",
            RawPreset::Php => "PHPSESSID",
        };
        if !cookies.iter().any(|c| c == name) {
            cookies.push(name.to_string());
        }
    }
    for (i, name) in raw.cookies.iter().enumerate() {
        check_cookie_name(&format!("{field}.cookies[{i}]"), name)?;
        if !cookies.contains(name) {
            cookies.push(name.clone());
        }
    }
    if let Some(param) = &path_parameter {
        check_cookie_name(&format!("{field}.path_parameter"), param)?;
    }
    for (i, param) in raw.query_parameters.iter().enumerate() {
        if param.is_empty() || param.contains(['&', '=', '#']) {
            return Err(ConfigError::new(
                format!("{field}.query_parameters[{i}]"),
                format!("not a query parameter name: {param:?}"),
            ));
        }
    }
    if cookies.is_empty() && path_parameter.is_none() && raw.query_parameters.is_empty() {
        return Err(ConfigError::new(
            field,
            "name at least one of presets, cookies, path_parameter, query_parameters",
        ));
    }
    let table = validate_table(&format!("{field}.table"), &raw.table)?;
    Ok(LearnConfig {
        cookies,
        path_parameter,
        query_parameters: raw.query_parameters,
        store: super::store::validate_store(&format!("{field}.store"), raw.store, &table)?,
        table,
    })
}

fn validate_ip_table(field: &str, raw: RawClientIpTable) -> Result<ClientIpTableConfig> {
    check_prefixes(field, raw.ipv4_prefix, raw.ipv6_prefix)?;
    Ok(ClientIpTableConfig {
        ipv4_prefix: raw.ipv4_prefix,
        ipv6_prefix: raw.ipv6_prefix,
        table: validate_table(&format!("{field}.table"), &raw.table)?,
    })
}

fn check_prefixes(field: &str, ipv4_prefix: u8, ipv6_prefix: u8) -> Result<()> {
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
    Ok(())
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
        RawKeySource::Custom { name } => KeySourceConfig::Custom { name },
        RawKeySource::Path => KeySourceConfig::Path,
        RawKeySource::PathAndQuery => KeySourceConfig::PathAndQuery,
        RawKeySource::Host => KeySourceConfig::Host,
        RawKeySource::ClientIp {
            ipv4_prefix,
            ipv6_prefix,
        } => {
            check_prefixes(field, ipv4_prefix, ipv6_prefix)?;
            KeySourceConfig::ClientIp {
                ipv4_prefix,
                ipv6_prefix,
            }
        }
    })
}
