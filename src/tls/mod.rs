//! TLS: the listeners' certificates (loaded and checked at start-up, chosen per connection by
//! SNI), the minimum protocol version and ALPN, and the pools' TLS to backends (SNI, CA file,
//! verification).
//!
//! Everything here is rustls through Pingora's `rustls` feature: no system TLS library. The
//! files the configuration names are read at start-up, before the server runs (also for `-t`),
//! so a missing, unreadable or mismatched certificate stops the start with its field and file
//! named ([`TlsError`]), and the server never starts without its certificates.

mod load;
mod upstream;

pub use upstream::{apply_upstream, UpstreamTls};

use crate::config::{AlpnProtocol, ListenerTlsConfig, MinVersion};
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::protocols::ALPN;
use pingora_rustls::sign::CertifiedKey;
use pingora_rustls::{ClientHello, ResolvesServerCert};
use std::fmt;
use std::sync::Arc;

/// A TLS setting that cannot be used: the field's path in the YAML and what is wrong (a file
/// that cannot be read, holds no PEM, or a key that does not fit its certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The field's path in the YAML, e.g. `sticky.listeners[0].tls.certificates[0].key_file`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl TlsError {
    /// The error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        TlsError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for TlsError {}

type Result<T> = std::result::Result<T, TlsError>;

/// One certificate (with its chain) and the server names it answers for.
#[derive(Clone)]
pub struct Certificate {
    /// Lower-case DNS names; `*.example.com` matches one label.
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
}

/// A TLS listener's settings, with its certificates loaded.
#[derive(Clone)]
pub struct ListenerTls {
    /// In configured order; the first is the default (no SNI, or an unknown name).
    pub certificates: Vec<Certificate>,
    pub min_version: MinVersion,
    pub alpn: ALPN,
    /// Refuse the handshake when SNI names no certificate (HAProxy `strict-sni`), rather than
    /// answer with the default certificate.
    pub strict_sni: bool,
}

impl fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&Vec<String>> = self.certificates.iter().map(|c| &c.names).collect();
        f.debug_struct("ListenerTls")
            .field("certificates", &names)
            .field("min_version", &self.min_version)
            .field("alpn", &self.alpn)
            .field("strict_sni", &self.strict_sni)
            .finish()
    }
}

/// Whether `name` (lower case) is served by `pattern`: equal, or `*.rest` with one label before
/// `rest`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return match name.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest == suffix,
            None => false,
        };
    }
    pattern == name
}

impl ListenerTls {
    /// Load a listener's certificates (`field`: the listener's `tls` path, for errors) as its
    /// configuration names them: the files in order, then the self-signed one.
    pub fn load(field: &str, config: &ListenerTlsConfig) -> Result<Arc<ListenerTls>> {
        let mut certificates = Vec::with_capacity(config.certificates.len() + 1);
        for (j, cert) in config.certificates.iter().enumerate() {
            certificates.push(load::certificate(
                &format!("{field}.certificates[{j}]"),
                cert,
            )?);
        }
        if !config.self_signed.is_empty() {
            certificates.push(load::self_signed(
                &format!("{field}.self_signed"),
                &config.self_signed,
            )?);
        }
        let alpn = alpn_for(&config.alpn)
            .ok_or_else(|| TlsError::new(format!("{field}.alpn"), "no protocol offered"))?;
        Ok(Arc::new(ListenerTls {
            certificates,
            min_version: config.min_version,
            alpn,
            strict_sni: config.strict_sni,
        }))
    }

    /// The certificate for a client's SNI name: one that names it exactly, else one whose
    /// wildcard covers it (NGINX's and HAProxy's order, whatever the list order), else the
    /// default (the first certificate). With `strict_sni`, a name no certificate has, or no SNI
    /// at all, gets none (HAProxy `strict-sni`).
    pub fn certificate_for(&self, sni: Option<&str>) -> Option<&Certificate> {
        let Some(sni) = sni else {
            return if self.strict_sni {
                None
            } else {
                self.certificates.first()
            };
        };
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        let exact = || {
            self.certificates
                .iter()
                .find(|c| c.names.iter().any(|p| !p.starts_with("*.") && *p == sni))
        };
        let wildcard = || {
            self.certificates
                .iter()
                .find(|c| c.names.iter().any(|p| name_matches(p, &sni)))
        };
        match exact().or_else(wildcard) {
            Some(c) => Some(c),
            None if self.strict_sni => None,
            None => self.certificates.first(),
        }
    }

    /// Pingora's listener settings: our resolver (SNI, minimum version) and ALPN.
    pub fn settings(self: &Arc<Self>) -> pingora_core::Result<TlsSettings> {
        let mut settings = TlsSettings::intermediate("", "")?;
        settings.set_cert_resolver(Arc::new(Resolver(self.clone())));
        settings.set_alpn(self.alpn.clone());
        Ok(settings)
    }
}

/// Whether a ClientHello offers a TLS 1.3 cipher suite (TLS_AES_*, TLS_CHACHA20_*:
/// 0x1301–0x1305). A client that offers one and a server that supports 1.3 always agree on
/// 1.3, so refusing hellos without one enforces `min_version: TLSv1.3`.
pub fn offers_tls13(cipher_suites: impl IntoIterator<Item = u16>) -> bool {
    cipher_suites
        .into_iter()
        .any(|s| (0x1301..=0x1305).contains(&s))
}

/// Whether Pingora's name for a connection's TLS version (`TLSv1_3`) is TLS 1.3.
pub fn is_tls13(version: &str) -> bool {
    matches!(version, "TLSv1_3" | "TLSv1.3")
}

/// Chooses the certificate during the handshake; `None` aborts it with an alert.
struct Resolver(Arc<ListenerTls>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.0.min_version == MinVersion::Tls13
            && !offers_tls13(hello.cipher_suites().iter().map(|s| u16::from(*s)))
        {
            return None;
        }
        self.0
            .certificate_for(hello.server_name())
            .map(|c| c.key.clone())
    }
}

/// The ALPN setting for a list of protocols. Pingora offers HTTP/2 before HTTP/1.1 when both are
/// listed; a list that puts `http/1.1` first is refused by the config check rather than
/// silently reordered.
pub fn alpn_for(protocols: &[AlpnProtocol]) -> Option<ALPN> {
    let h2 = protocols.contains(&AlpnProtocol::H2);
    let h1 = protocols.contains(&AlpnProtocol::Http11);
    match (h2, h1) {
        (true, true) => Some(ALPN::H2H1),
        (true, false) => Some(ALPN::H2),
        (false, true) => Some(ALPN::H1),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests;
