//! Checks `sticky.listeners` (address, pool, TLS, h2c, redirect to HTTPS) and a pool's `tls`
//! towards its backends. Certificate and CA files are read at start-up by the tls module (also
//! for `-t`); here only what the YAML says is checked.

use super::{filter_names, parse_addr, positive_ms, Result};
use crate::config::raw::{RawListener, RawListenerTimeouts, RawListenerTls, RawUpstreamTls};
use crate::config::{
    AlpnProtocol, CertificateConfig, ClientTimeouts, ConfigError, ListenerConfig,
    ListenerTlsConfig, PoolConfig, RedirectToHttps, UpstreamTlsConfig,
};

pub(super) fn validate_listeners(
    raw: Vec<RawListener>,
    pools: &[PoolConfig],
    have_routes: bool,
) -> Result<Vec<ListenerConfig>> {
    if raw.is_empty() {
        return Err(ConfigError::new(
            "sticky.listeners",
            "at least one listener is required",
        ));
    }
    let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(raw.len());
    for (i, listener) in raw.into_iter().enumerate() {
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
            Some(name) if have_routes => {
                return Err(ConfigError::new(
                    format!("{field}.pool"),
                    format!("{name:?}: with sticky.routes, routes choose the pool; remove it"),
                ))
            }
            Some(name) => pools.iter().position(|p| &p.name == name).ok_or_else(|| {
                ConfigError::new(
                    format!("{field}.pool"),
                    format!("no pool named {name:?} in sticky.pools"),
                )
            })?,
            None if pools.len() == 1 || have_routes => 0,
            None => {
                return Err(ConfigError::new(
                    format!("{field}.pool"),
                    "required when there is more than one pool (or use sticky.routes)",
                ))
            }
        };
        let tls = listener
            .tls
            .map(|t| validate_listener_tls(&format!("{field}.tls"), t))
            .transpose()?;
        if tls.is_some() && listener.h2c {
            return Err(ConfigError::new(
                format!("{field}.h2c"),
                "true: h2c is cleartext HTTP/2; a TLS listener offers h2 through tls.alpn",
            ));
        }
        let redirect_to_https = match listener.redirect_to_https {
            None => None,
            Some(_) if tls.is_some() => {
                return Err(ConfigError::new(
                    format!("{field}.redirect_to_https"),
                    "set on a TLS listener, which is HTTPS already",
                ))
            }
            Some(r) => {
                if ![301, 302, 307, 308].contains(&r.status) {
                    return Err(ConfigError::new(
                        format!("{field}.redirect_to_https.status"),
                        format!("{}: use 301, 302, 307 or 308", r.status),
                    ));
                }
                if r.port == 0 {
                    return Err(ConfigError::new(
                        format!("{field}.redirect_to_https.port"),
                        "0 is not a port",
                    ));
                }
                Some(RedirectToHttps {
                    port: r.port,
                    status: r.status,
                })
            }
        };
        listeners.push(ListenerConfig {
            addr,
            pool,
            tls,
            h2c: listener.h2c,
            redirect_to_https,
            defer_accept: listener.defer_accept,
            timeouts: validate_client_timeouts(&format!("{field}.timeouts"), &listener.timeouts)?,
            filters: filter_names(&format!("{field}.filters"), &listener.filters)?,
        });
    }
    Ok(listeners)
}

/// The most a first request may wait for its first byte: Pingora closes a connection whose
/// first request has not begun after 60 s, whatever the proxy's own timeout says.
const FIRST_REQUEST_MAX_MS: u64 = 60_000;

fn validate_client_timeouts(field: &str, raw: &RawListenerTimeouts) -> Result<ClientTimeouts> {
    let http_request = positive_ms(&format!("{field}.http_request_ms"), raw.http_request_ms)?;
    if raw.http_request_ms > FIRST_REQUEST_MAX_MS {
        return Err(ConfigError::new(
            format!("{field}.http_request_ms"),
            format!(
                "{}: at most {FIRST_REQUEST_MAX_MS} (Pingora closes a connection whose first request has not begun after 60 s)",
                raw.http_request_ms
            ),
        ));
    }
    Ok(ClientTimeouts {
        http_request,
        keepalive: positive_ms(&format!("{field}.keepalive_ms"), raw.keepalive_ms)?,
        client_send: positive_ms(&format!("{field}.client_send_ms"), raw.client_send_ms)?,
    })
}

fn validate_listener_tls(field: &str, raw: RawListenerTls) -> Result<ListenerTlsConfig> {
    let mut certificates = Vec::with_capacity(raw.certificates.len());
    for (j, cert) in raw.certificates.into_iter().enumerate() {
        let cert_field = format!("{field}.certificates[{j}]");
        for (k, name) in cert.server_names.iter().enumerate() {
            check_server_name(&format!("{cert_field}.server_names[{k}]"), name)?;
        }
        certificates.push(CertificateConfig {
            cert_file: cert.cert_file,
            key_file: cert.key_file,
            server_names: cert.server_names,
        });
    }
    for (k, name) in raw.self_signed.iter().enumerate() {
        if name.parse::<std::net::IpAddr>().is_err() {
            check_server_name(&format!("{field}.self_signed[{k}]"), name)?;
        }
    }
    if certificates.is_empty() && raw.self_signed.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.certificates"),
            "at least one certificate (cert_file + key_file), or self_signed names, is required",
        ));
    }
    if alpn_prefers_http11(&raw.alpn) {
        return Err(ConfigError::new(
            format!("{field}.alpn"),
            "[http/1.1, h2]: HTTP/2 is always preferred when both are offered; write [h2, http/1.1] (or drop h2)",
        ));
    }
    if raw.alpn.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.alpn"),
            "empty: offer h2, http/1.1 or both",
        ));
    }
    Ok(ListenerTlsConfig {
        certificates,
        self_signed: raw.self_signed,
        min_version: raw.min_version,
        alpn: raw.alpn,
        strict_sni: raw.strict_sni,
    })
}

/// `[http/1.1, h2]`: HTTP/1.1 listed before HTTP/2, an order the listener cannot honour (it
/// always prefers HTTP/2 when the client offers both).
fn alpn_prefers_http11(protocols: &[AlpnProtocol]) -> bool {
    let h1 = protocols.iter().position(|p| *p == AlpnProtocol::Http11);
    let h2 = protocols.iter().position(|p| *p == AlpnProtocol::H2);
    matches!((h1, h2), (Some(a), Some(b)) if a < b)
}

/// A DNS name or `*.`-wildcard as written in `server_names` / `self_signed`.
fn check_server_name(field: &str, name: &str) -> Result<()> {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field.to_string(),
            format!("not a DNS name: {name:?}"),
        ))
    }
}

pub(super) fn validate_upstream_tls(field: &str, raw: RawUpstreamTls) -> Result<UpstreamTlsConfig> {
    let sni = raw.sni.unwrap_or_default();
    if sni.is_empty() && raw.verify {
        return Err(ConfigError::new(
            format!("{field}.sni"),
            "required to verify the backends' certificates (or set verify: false)",
        ));
    }
    if !sni.is_empty() {
        check_server_name(&format!("{field}.sni"), &sni)?;
        if sni.starts_with("*.") {
            return Err(ConfigError::new(
                format!("{field}.sni"),
                format!("{sni:?}: a wildcard cannot be sent as SNI; name the backends' host"),
            ));
        }
    }
    Ok(UpstreamTlsConfig {
        sni,
        ca_file: raw.ca_file,
        verify: raw.verify,
        verify_hostname: raw.verify_hostname,
    })
}
