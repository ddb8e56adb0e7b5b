//! Validation of a learned-session store (`…learn.store`): `local`, or a Redis shared by proxy
//! instances. Reads the password (environment variable or file) but never connects: `-t` must
//! work without a running Redis.

use super::super::raw::{self, RawStore, RawStoreKind};
use super::super::TableConfig;
use super::super::{ConfigError, RedisStoreConfig};
use super::Result;
use std::time::Duration;

/// The longest accepted key prefix, in bytes.
const MAX_PREFIX_LEN: usize = 128;

pub(super) fn validate_store(
    field: &str,
    raw: RawStore,
    table: &TableConfig,
) -> Result<Option<RedisStoreConfig>> {
    match raw.kind {
        RawStoreKind::Local => {
            let given = [
                ("address", raw.address.is_some()),
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
            ];
            match given.iter().find(|(_, given)| *given) {
                Some((name, _)) => Err(ConfigError::new(
                    format!("{field}.{name}"),
                    "not used by type \"local\" (did you mean type: redis?)",
                )),
                None => Ok(None),
            }
        }
        RawStoreKind::Redis => validate_redis(field, raw, table).map(Some),
    }
}

fn validate_redis(field: &str, raw: RawStore, table: &TableConfig) -> Result<RedisStoreConfig> {
    let err = |name: &str, message: String| ConfigError::new(format!("{field}.{name}"), message);
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
    let address = raw
        .address
        .as_deref()
        .ok_or_else(|| err("address", "required with type \"redis\"".to_string()))?;
    let (host, port) = parse_host_port(address)
        .ok_or_else(|| err("address", format!("not host:port: {address:?}")))?;
    let password = load_password(field, &raw)?;
    if raw.username.is_some() && password.is_none() {
        return Err(err(
            "username",
            format!(
                "{:?} needs a password (password_env or password_file)",
                raw.username.as_deref().unwrap_or_default()
            ),
        ));
    }
    let key_prefix = raw.key_prefix.unwrap_or_else(raw::default_key_prefix);
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
        host,
        port,
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

/// `host:port`, `[v6]:port`; the port 1–65535.
fn parse_host_port(address: &str) -> Option<(String, u16)> {
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
    valid.then_some((host, port))
}

fn load_password(field: &str, raw: &RawStore) -> Result<Option<String>> {
    let password = match (&raw.password_env, &raw.password_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                format!("{field}.password_env"),
                "give one of password_env, password_file, not both",
            ))
        }
        (None, None) => return Ok(None),
        (Some(var), None) => {
            let f = format!("{field}.password_env");
            let value = std::env::var(var).map_err(|_| {
                ConfigError::new(&f, format!("environment variable {var:?} is not set"))
            })?;
            (f, value)
        }
        (None, Some(path)) => {
            let f = format!("{field}.password_file");
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(&f, format!("cannot read {path:?}: {e}")))?;
            (f, text.trim_end_matches(['\r', '\n']).to_string())
        }
    };
    let (f, value) = password;
    if value.is_empty() {
        // The value itself is never echoed: it is a secret.
        return Err(ConfigError::new(f, "the password is empty"));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learn(store: &str, table: &str) -> std::result::Result<Option<RedisStoreConfig>, String> {
        let yaml = format!(
            "sticky:\n  listeners: [{{ addr: \"127.0.0.1:1\" }}]\n  pools:\n    - name: web\n      \
             backends: [{{ name: a, addr: \"127.0.0.1:2\" }}]\n      \
             affinity: {{ learn: {{ presets: [j2ee], table: {table}, store: {store} }} }}\n"
        );
        crate::config::load_str(&yaml)
            .map(|c| {
                c.pools[0]
                    .affinity
                    .as_ref()
                    .unwrap()
                    .learn
                    .clone()
                    .unwrap()
                    .store
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_redis_store_gets_its_defaults_and_local_takes_no_redis_keys() {
        let c = learn("{ type: redis, address: \"127.0.0.1:6379\" }", "{}")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.database),
            ("127.0.0.1", 6379, 0)
        );
        assert_eq!(c.key_prefix, "sticky:");
        assert_eq!(c.lookup_timeout, Duration::from_millis(20));
        assert_eq!(c.connect_timeout, Duration::from_millis(1000));
        assert_eq!(
            c.refresh_interval,
            Duration::from_secs(60),
            "1800 s / 4, at most 60"
        );
        assert_eq!(c.write_queue, 10_000);
        let short = learn(
            "{ type: redis, address: \"h:1\" }",
            "{ idle_timeout_seconds: 20 }",
        );
        assert_eq!(
            short.unwrap().unwrap().refresh_interval,
            Duration::from_secs(5)
        );
        assert!(learn("{}", "{}").unwrap().is_none());
        assert!(learn("{ type: local }", "{}").unwrap().is_none());
        let err = learn("{ type: local, key_prefix: x }", "{}").unwrap_err();
        assert!(
            err.contains("learn.store.key_prefix: not used by type \"local\""),
            "{err}"
        );
        let err = learn("{ type: redis }", "{}").unwrap_err();
        assert!(err.contains("learn.store.address: required"), "{err}");
        let err = learn("{ type: redis, address: \"h:1\", username: u }", "{}").unwrap_err();
        assert!(err.contains("learn.store.username"), "{err}");
    }

    #[test]
    fn addresses_are_host_and_port() {
        let p = |s: &str| parse_host_port(s);
        assert_eq!(p("127.0.0.1:6379"), Some(("127.0.0.1".into(), 6379)));
        assert_eq!(
            p("redis.internal:6380"),
            Some(("redis.internal".into(), 6380))
        );
        assert_eq!(p("[::1]:6379"), Some(("::1".into(), 6379)));
        for bad in [
            "localhost",
            ":6379",
            "host:0",
            "host:99999",
            "::1:6379",
            "a b:1",
            "[x]:1",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
