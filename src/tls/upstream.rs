//! TLS from the proxy to a pool's backends: SNI, the CAs to trust, verification.

use super::{load, Result};
use crate::config::UpstreamTlsConfig;
use pingora_core::protocols::ALPN;
use pingora_core::utils::tls::WrappedX509;
use std::fmt;
use std::sync::Arc;

/// TLS from the proxy to a pool's backends.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The name sent as SNI and checked against the backend's certificate.
    pub sni: String,
    /// Trust these CAs instead of the system's; `None`: the system's (or Pingora's `ca_file`).
    pub ca: Option<Arc<[WrappedX509]>>,
    pub verify: bool,
    pub verify_hostname: bool,
}

impl UpstreamTls {
    /// Read the CA file the configuration names (`field`: the pool's `tls` path, for errors).
    pub fn load(field: &str, config: &UpstreamTlsConfig) -> Result<UpstreamTls> {
        let ca = config
            .ca_file
            .as_deref()
            .map(|path| load::ca_file(&format!("{field}.ca_file"), path))
            .transpose()?;
        Ok(UpstreamTls {
            sni: config.sni.clone(),
            ca,
            verify: config.verify,
            verify_hostname: config.verify_hostname,
        })
    }
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("sni", &self.sni)
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("verify", &self.verify)
            .field("verify_hostname", &self.verify_hostname)
            .finish()
    }
}

/// Set a backend peer (or a health check's template) up for TLS to the backend.
pub fn apply_upstream(tls: &UpstreamTls, peer: &mut pingora_core::upstreams::peer::HttpPeer) {
    peer.scheme = pingora_core::upstreams::peer::Scheme::HTTPS;
    peer.sni = tls.sni.clone();
    peer.options.verify_cert = tls.verify;
    peer.options.verify_hostname = tls.verify_hostname;
    peer.options.ca = tls.ca.clone();
    peer.options.alpn = ALPN::H1;
}
