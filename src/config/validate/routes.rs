//! Validation of `sticky.routes` and `sticky.default_route`: host patterns, path prefixes,
//! methods, header conditions, and the pools and classes they name. Routes that can never
//! match (an earlier route matches everything they match) are accepted with a warning.

use super::super::raw::{RawDefaultRoute, RawRoute};
use super::super::{
    ClassConfig, ConfigError, DefaultRoute, HostMatch, PoolConfig, RouteClass, RouteConfig,
};
use super::{filter_names, parse_header_name, Result};

pub(super) fn validate_routes(
    raw: &[RawRoute],
    default_route: Option<&RawDefaultRoute>,
    pools: &[PoolConfig],
    classes: &[ClassConfig],
) -> Result<(Vec<RouteConfig>, DefaultRoute, Vec<String>)> {
    let mut routes = Vec::with_capacity(raw.len());
    for (i, route) in raw.iter().enumerate() {
        routes.push(validate_route(
            &format!("sticky.routes[{i}]"),
            route,
            pools,
            classes,
        )?);
    }
    let default_route = match default_route {
        None => DefaultRoute::Status(404),
        Some(d) => match (&d.pool, d.status) {
            (Some(_), Some(status)) => {
                return Err(ConfigError::new(
                    "sticky.default_route.status",
                    format!("{status}: give a pool or a status, not both"),
                ))
            }
            (None, Some(status)) if (200..=599).contains(&status) => DefaultRoute::Status(status),
            (None, Some(status)) => {
                return Err(ConfigError::new(
                    "sticky.default_route.status",
                    format!("not a final HTTP status: {status}"),
                ))
            }
            (Some(pool), None) => {
                let pool_index = find_pool("sticky.default_route", pool, pools)?;
                let class = find_class("sticky.default_route", d.class.as_deref(), pool, classes)?;
                DefaultRoute::Pool {
                    pool: pool_index,
                    class,
                }
            }
            (None, None) => DefaultRoute::Status(404),
        },
    };
    let mut warnings = Vec::new();
    // Routes whose affinity cookies collide: same name, path and domain, but different sessions
    // (another pool, or another class) — a client moving between them restarts its session.
    let cookie_of = |r: &RouteConfig| {
        let affinity = match r.class {
            RouteClass::PoolDefault => pools[r.pool].affinity.as_ref(),
            RouteClass::Class(c) => classes[c].affinity.as_ref(),
            RouteClass::None => None,
        };
        affinity
            .and_then(|a| a.cookie.as_ref())
            .map(|c| (c.name.clone(), c.path.clone(), c.domain.clone()))
    };
    for (j, later) in routes.iter().enumerate() {
        let Some(cookie) = cookie_of(later) else {
            continue;
        };
        if let Some(i) = (0..j).find(|i| {
            let earlier = &routes[*i];
            cookie_of(earlier).as_ref() == Some(&cookie)
                && (earlier.pool != later.pool || earlier.class != later.class)
        }) {
            warnings.push(format!(
                "sticky.routes[{j}] and sticky.routes[{i}] both use the cookie {:?} (path {:?}) for different sessions: a client moving between them starts over; give one its own cookie name or path",
                cookie.0, cookie.1
            ));
        }
    }
    for (j, later) in routes.iter().enumerate() {
        if let Some(i) = (0..j).find(|i| covers(&routes[*i], later)) {
            warnings.push(format!(
                "sticky.routes[{j}] is unreachable: sticky.routes[{i}] before it matches every request it matches"
            ));
        }
    }
    Ok((routes, default_route, warnings))
}

fn find_pool(field: &str, name: &str, pools: &[PoolConfig]) -> Result<usize> {
    pools.iter().position(|p| p.name == name).ok_or_else(|| {
        ConfigError::new(
            format!("{field}.pool"),
            format!("no pool named {name:?} in sticky.pools"),
        )
    })
}

fn find_class(
    field: &str,
    name: Option<&str>,
    pool: &str,
    classes: &[ClassConfig],
) -> Result<RouteClass> {
    match name {
        None => Ok(RouteClass::PoolDefault),
        Some("none") => Ok(RouteClass::None),
        Some(name) => classes
            .iter()
            .position(|c| c.name == name)
            .map(RouteClass::Class)
            .ok_or_else(|| {
                ConfigError::new(
                    format!("{field}.class"),
                    format!("no class named {name:?} in sticky.classes (route to pool {pool:?})"),
                )
            }),
    }
}

fn validate_route(
    field: &str,
    raw: &RawRoute,
    pools: &[PoolConfig],
    classes: &[ClassConfig],
) -> Result<RouteConfig> {
    let pool = find_pool(field, &raw.pool, pools).map_err(|e| {
        ConfigError::new(
            e.field,
            format!(
                "{} (route class {:?})",
                e.message,
                raw.class.as_deref().unwrap_or("-")
            ),
        )
    })?;
    let class = find_class(field, raw.class.as_deref(), &raw.pool, classes)?;
    let m = &raw.matcher;
    let host = m
        .host
        .as_deref()
        .map(|host| {
            let lower = host.to_ascii_lowercase();
            // Ports are not part of a match (the request's port is ignored), so no ':' outside
            // a bracketed IPv6 literal.
            let valid = |h: &str| {
                let bracketed = h.starts_with('[') && h.ends_with(']');
                !h.is_empty()
                    && h.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || b"-.".contains(&b)
                            || (bracketed && b"[]:".contains(&b))
                    })
            };
            match lower.strip_prefix("*.") {
                Some(suffix) if valid(suffix) => Ok(HostMatch::Suffix(format!(".{suffix}"))),
                None if valid(&lower) => Ok(HostMatch::Exact(lower)),
                _ => Err(ConfigError::new(
                    format!("{field}.match.host"),
                    format!("not a host or *.suffix pattern: {host:?}"),
                )),
            }
        })
        .transpose()?;
    if let Some(prefix) = &m.path_prefix {
        if !prefix.starts_with('/') {
            return Err(ConfigError::new(
                format!("{field}.match.path_prefix"),
                format!("must start with '/': {prefix:?}"),
            ));
        }
    }
    let mut methods = Vec::with_capacity(m.methods.len());
    for (k, method) in m.methods.iter().enumerate() {
        methods.push(
            http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                ConfigError::new(
                    format!("{field}.match.methods[{k}]"),
                    format!("not an HTTP method: {method:?}"),
                )
            })?,
        );
    }
    let header = m
        .header
        .as_ref()
        .map(|h| {
            let name = parse_header_name(&format!("{field}.match.header.name"), &h.name)?;
            let value = h
                .value
                .as_deref()
                .map(|v| {
                    http::HeaderValue::from_str(v).map_err(|_| {
                        ConfigError::new(
                            format!("{field}.match.header.value"),
                            format!("not a header value: {v:?}"),
                        )
                    })
                })
                .transpose()?;
            Ok((name, value))
        })
        .transpose()?;
    Ok(RouteConfig {
        host,
        path_prefix: m.path_prefix.clone(),
        ignore_case: m.ignore_case,
        methods,
        header,
        pool,
        class,
        filters: filter_names(&format!("{field}.filters"), &raw.filters)?,
    })
}

/// `text` starts with `prefix`, ignoring ASCII case.
pub fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Does every request that `later` matches also match `earlier`?
fn covers(earlier: &RouteConfig, later: &RouteConfig) -> bool {
    let host = match (&earlier.host, &later.host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(HostMatch::Exact(a)), Some(HostMatch::Exact(b))) => a == b,
        (Some(HostMatch::Suffix(a)), Some(HostMatch::Exact(b))) => b.ends_with(a.as_str()),
        (Some(HostMatch::Suffix(a)), Some(HostMatch::Suffix(b))) => b.ends_with(a.as_str()),
        (Some(HostMatch::Exact(_)), Some(HostMatch::Suffix(_))) => false,
    };
    let path = match (&earlier.path_prefix, &later.path_prefix) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) if earlier.ignore_case => starts_with_ignore_case(b, a),
        // A case-sensitive prefix never covers a case-insensitive one.
        (Some(_), Some(_)) if later.ignore_case => false,
        (Some(a), Some(b)) => b.starts_with(a.as_str()),
    };
    let methods = earlier.methods.is_empty()
        || (!later.methods.is_empty() && later.methods.iter().all(|m| earlier.methods.contains(m)));
    let header = match (&earlier.header, &later.header) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some((a, av)), Some((b, bv))) => a == b && (av.is_none() || av == bv),
    };
    host && path && methods && header
}
