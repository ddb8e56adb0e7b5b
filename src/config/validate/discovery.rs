//! Validation of a pool's `discovery`: a DNS name that can be asked, a port, an interval of a
//! second to an hour, a weight, and nameservers as socket addresses.

use super::super::raw::RawDiscovery;
use super::super::{ConfigError, DiscoveryConfig};
use super::{Result, MAX_WEIGHT};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The longest accepted `discovery.interval_seconds`.
pub const MAX_INTERVAL_SECONDS: u64 = 3600;

/// `field`: the pool's `discovery`.
pub(super) fn validate(field: &str, raw: RawDiscovery) -> Result<DiscoveryConfig> {
    if let Err(why) = check_dns_name(&raw.name) {
        return Err(ConfigError::new(
            format!("{field}.name"),
            format!("not a DNS name ({why}): {:?}", raw.name),
        ));
    }
    if raw.port == 0 {
        return Err(ConfigError::new(
            format!("{field}.port"),
            "must be between 1 and 65535: 0",
        ));
    }
    if raw.interval_seconds == 0 || raw.interval_seconds > MAX_INTERVAL_SECONDS {
        return Err(ConfigError::new(
            format!("{field}.interval_seconds"),
            format!(
                "must be between 1 and {MAX_INTERVAL_SECONDS} (an hour): {}",
                raw.interval_seconds
            ),
        ));
    }
    if raw.weight == 0 || raw.weight > MAX_WEIGHT {
        return Err(ConfigError::new(
            format!("{field}.weight"),
            format!("must be between 1 and {MAX_WEIGHT}: {}", raw.weight),
        ));
    }
    let nameservers = match raw.nameservers {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(ConfigError::new(
                format!("{field}.nameservers"),
                "must not be empty (leave it out to use the system's, /etc/resolv.conf)",
            ))
        }
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, s)| parse_nameserver(&format!("{field}.nameservers[{i}]"), s))
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    Ok(DiscoveryConfig {
        kind: raw.kind,
        name: raw.name,
        port: raw.port,
        interval: Duration::from_secs(raw.interval_seconds),
        weight: raw.weight,
        nameservers,
    })
}

/// `ip:port`, `[v6]:port`, or a bare IP address (port 53).
fn parse_nameserver(field: &str, value: &str) -> Result<SocketAddr> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        if addr.port() != 0 {
            return Ok(addr);
        }
    } else if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(ConfigError::new(
        field,
        format!("not a nameserver address (ip:port, or ip for port 53): {value:?}"),
    ))
}

/// A host name as DNS carries it: at most 253 characters, dot-separated labels of 1 to 63
/// letters, digits, `-` or `_` (SRV-style names), not starting or ending with `-`; one final
/// `.` makes it absolute. An IP address is no name (give it as a static backend).
fn check_dns_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err("an IP address: list it under `backends` instead");
    }
    let relative = name.strip_suffix('.').unwrap_or(name);
    if relative.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in relative.split('.') {
        if label.is_empty() {
            return Err("an empty label");
        }
        if label.len() > 63 {
            return Err("a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("only letters, digits, '-' and '_' between the dots");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starting or ending with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{load_str, DiscoveryKind};
    use std::time::Duration;

    fn pool_with(discovery: &str, backends: &str) -> String {
        format!(
            "sticky:\n  listeners: [{{ addr: 127.0.0.1:6188 }}]\n  pools:\n    - name: web\n      \
             discovery: {discovery}\n{backends}"
        )
    }

    fn error(discovery: &str) -> String {
        load_str(&pool_with(discovery, ""))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_pool_with_discovery_alone_is_valid_with_the_defaults() {
        let config = load_str(&pool_with(
            "{ type: dns, name: app.internal, port: 8080 }",
            "",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let pool = &config.pools[0];
        assert!(pool.backends.is_empty());
        let d = pool.discovery.as_ref().unwrap();
        assert_eq!(d.kind, DiscoveryKind::Dns);
        assert_eq!(d.name, "app.internal");
        assert_eq!(d.port, 8080);
        assert_eq!(d.interval, Duration::from_secs(5));
        assert_eq!(d.weight, 1);
        assert_eq!(d.nameservers, None);
    }

    #[test]
    fn static_backends_and_discovery_may_be_mixed_and_every_key_is_read() {
        let text = pool_with(
            "{ type: dns, name: app.internal., port: 80, interval_seconds: 30, weight: 7, \
             nameservers: [\"127.0.0.1:5353\", \"::1\", \"[::1]:54\"] }",
            "      backends: [{ name: s1, addr: \"127.0.0.1:9001\" }]\n",
        );
        let config = load_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let pool = &config.pools[0];
        assert_eq!(pool.backends.len(), 1);
        let d = pool.discovery.as_ref().unwrap();
        assert_eq!(d.interval, Duration::from_secs(30));
        assert_eq!(d.weight, 7);
        let servers: Vec<String> = d
            .nameservers
            .as_ref()
            .unwrap()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(servers, ["127.0.0.1:5353", "[::1]:53", "[::1]:54"]);
    }

    #[test]
    fn a_pool_without_backends_nor_discovery_is_still_refused() {
        let text = "sticky:\n  listeners: [{ addr: 127.0.0.1:6188 }]\n  pools: [{ name: web }]\n";
        let e = load_str(text).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("sticky.pools[0].backends"), "{e}");
    }

    #[test]
    fn each_bad_value_is_refused_naming_its_field_and_value() {
        let base = "type: dns, port: 8080";
        let cases = [
            (format!("{{ {base}, name: \"\" }}"), ".name: not a DNS name (empty)"),
            (format!("{{ {base}, name: \"a..b\" }}"), ".name: not a DNS name (an empty label): \"a..b\""),
            (format!("{{ {base}, name: \"app internal\" }}"), "\"app internal\""),
            (format!("{{ {base}, name: \"-app.internal\" }}"), "'-'"),
            (format!("{{ {base}, name: \"10.0.0.5\" }}"), "an IP address"),
            (format!("{{ {base}, name: {} }}", "a".repeat(64)), "63"),
            ("{ type: dns, name: app, port: 0 }".into(), ".port: must be between 1 and 65535: 0"),
            ("{ type: dns, name: app, port: 70000 }".into(), ".port"),
            (format!("{{ {base}, name: app, interval_seconds: 0 }}"), ".interval_seconds: must be between 1 and 3600 (an hour): 0"),
            (format!("{{ {base}, name: app, interval_seconds: 3601 }}"), ".interval_seconds: must be between 1 and 3600 (an hour): 3601"),
            (format!("{{ {base}, name: app, weight: 0 }}"), ".weight: must be between 1 and 256: 0"),
            (format!("{{ {base}, name: app, weight: 257 }}"), ".weight: must be between 1 and 256: 257"),
            (format!("{{ {base}, name: app, nameservers: [] }}"), ".nameservers: must not be empty"),
            (format!("{{ {base}, name: app, nameservers: [\"dns.local:53\"] }}"), ".nameservers[0]: not a nameserver address (ip:port, or ip for port 53): \"dns.local:53\""),
            (format!("{{ {base}, name: app, nameservers: [\"127.0.0.1:53\", \"127.0.0.1:0\"] }}"), ".nameservers[1]: not a nameserver address"),
            ("{ type: srv, name: app, port: 1 }".into(), ".type"),
            ("{ type: dns, name: app }".into(), "port"),
            (format!("{{ {base}, name: app, ttl: 3 }}"), "ttl"),
        ];
        for (discovery, expected) in cases {
            let e = error(&discovery);
            assert!(e.contains("sticky.pools[0].discovery"), "{discovery}: {e}");
            assert!(
                e.contains(expected),
                "{discovery}: expected {expected:?} in {e}"
            );
        }
    }
}
