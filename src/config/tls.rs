//! TLS as configured: a listener's certificates (PEM files, or names for a self-signed one),
//! minimum version, ALPN and strict SNI; a pool's TLS to its backends. Paths are kept as
//! written: the tls module reads and checks the files at start-up (and for `-t`), naming the
//! field of a file it cannot use.

use super::kinds::{AlpnProtocol, MinVersion};

/// `sticky.listeners[i].tls`: at least one certificate (files, or `self_signed` names).
#[derive(Debug, Clone)]
pub struct ListenerTlsConfig {
    /// Certificate files, in configured order (the first is the default).
    pub certificates: Vec<CertificateConfig>,
    /// Names for a certificate made in memory at start-up (demos, tests); empty: none.
    pub self_signed: Vec<String>,
    /// The lowest TLS version accepted.
    pub min_version: MinVersion,
    /// Offered by ALPN, HTTP/2 first; never empty.
    pub alpn: Vec<AlpnProtocol>,
    /// Refuse a handshake whose SNI names no certificate (HAProxy `strict-sni`).
    pub strict_sni: bool,
}

/// One certificate chain and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertificateConfig {
    /// PEM: the certificate, then its intermediates.
    pub cert_file: String,
    /// PEM: the private key.
    pub key_file: String,
    /// SNI names it serves (checked DNS names or `*.` wildcards); empty: the certificate's own.
    pub server_names: Vec<String>,
}

/// `sticky.pools[i].tls`: TLS from the proxy to the pool's backends.
#[derive(Debug, Clone)]
pub struct UpstreamTlsConfig {
    /// Sent as SNI and checked in the backend's certificate; empty only with `verify: false`.
    pub sni: String,
    /// A PEM file of CAs to trust instead of the system's.
    pub ca_file: Option<String>,
    /// Verify the backend's certificate chain.
    pub verify: bool,
    /// Verify that the certificate names `sni`.
    pub verify_hostname: bool,
}
