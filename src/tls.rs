//! TLS: the listeners' certificates (loaded and checked at start-up, chosen per connection by
//! SNI), the minimum protocol version and ALPN, and the pools' TLS to backends (SNI, CA file,
//! verification).
//!
//! Everything here is rustls through Pingora's `rustls` feature: no system TLS library. Files
//! are read while the configuration is validated, so `-t` reports a missing, unreadable or
//! mismatched certificate by file name, and the server never starts without its certificates.

use crate::config::{AlpnProtocol, ConfigError, MinVersion};
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::protocols::ALPN;
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use pingora_rustls::sign::CertifiedKey;
use pingora_rustls::{
    CertificateDer, ClientHello, CryptoProvider, PrivateKeyDer, ResolvesServerCert,
};
use std::fmt;
use std::sync::Arc;

type Result<T> = std::result::Result<T, ConfigError>;

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

/// The raw certificate entry, as written in the YAML.
pub struct CertificateFiles<'a> {
    pub cert_file: &'a str,
    pub key_file: &'a str,
    pub server_names: &'a [String],
}

/// Pingora's process-wide rustls provider (ring), installed on first use.
fn provider() -> Option<&'static Arc<CryptoProvider>> {
    pingora_rustls::install_default_crypto_provider();
    CryptoProvider::get_default()
}

/// Load one certificate chain and its private key (PEM), check that they belong together, and
/// find the names it serves (configured, else the certificate's DNS names).
pub fn load_certificate(field: &str, files: &CertificateFiles) -> Result<Certificate> {
    for (key, path) in [("cert_file", files.cert_file), ("key_file", files.key_file)] {
        if let Err(e) = std::fs::File::open(path) {
            return Err(ConfigError::new(
                format!("{field}.{key}"),
                format!("cannot read {path:?}: {e}"),
            ));
        }
    }
    let loaded = pingora_rustls::load_certs_and_key_files(files.cert_file, files.key_file);
    let (chain, key) = match loaded {
        Ok(Some(pair)) => pair,
        Ok(None) => {
            return Err(ConfigError::new(
                field.to_string(),
                format!(
                    "no PEM certificate in {:?} or no PEM private key in {:?}",
                    files.cert_file, files.key_file
                ),
            ))
        }
        Err(e) => {
            return Err(ConfigError::new(
                field.to_string(),
                format!(
                    "cannot parse {:?} / {:?} as PEM: {e}",
                    files.cert_file, files.key_file
                ),
            ))
        }
    };
    let names = if files.server_names.is_empty() {
        dns_names(&chain[0])
    } else {
        files
            .server_names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect()
    };
    let key = certified_key(chain, key.clone_key()).map_err(|e| {
        ConfigError::new(
            format!("{field}.key_file"),
            format!(
                "{:?} does not fit the certificate in {:?}: {e}",
                files.key_file, files.cert_file
            ),
        )
    })?;
    Ok(Certificate { names, key })
}

/// A self-signed certificate for `names`, made in memory at start-up (for demos and tests; no
/// key on disk). Browsers and clients will not trust it without being told to.
pub fn self_signed(field: &str, names: &[String]) -> Result<Certificate> {
    let generated = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| ConfigError::new(field.to_string(), format!("{names:?}: {e}")))?;
    let chain = vec![generated.cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(generated.key_pair.serialize_der().into());
    let key = certified_key(chain, key)
        .map_err(|e| ConfigError::new(field.to_string(), format!("{names:?}: {e}")))?;
    Ok(Certificate {
        names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        key,
    })
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> std::result::Result<Arc<CertifiedKey>, String> {
    let provider = provider().ok_or("no TLS crypto provider")?;
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The DNS names (subject alternative names, else the common name) of a DER certificate.
fn dns_names(cert: &CertificateDer) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = match parsed.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names = parsed
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    names
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
/// listed; a list that puts `http/1.1` first is refused by the config check
/// ([`alpn_prefers_http11`]) rather than silently reordered.
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

/// Whether a list names `http/1.1` before `h2` (a preference Pingora cannot express).
pub fn alpn_prefers_http11(protocols: &[AlpnProtocol]) -> bool {
    let h1 = protocols.iter().position(|p| *p == AlpnProtocol::Http11);
    let h2 = protocols.iter().position(|p| *p == AlpnProtocol::H2);
    matches!((h1, h2), (Some(a), Some(b)) if a < b)
}

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

/// Load the CA certificates (PEM) a pool trusts for its backends.
pub fn load_ca_file(field: &str, path: &str) -> Result<Arc<[WrappedX509]>> {
    let text = std::fs::read(path)
        .map_err(|e| ConfigError::new(field.to_string(), format!("cannot read {path:?}: {e}")))?;
    let certs: Vec<WrappedX509> = pem_certificates(&text)
        .into_iter()
        .map(|der| WrappedX509::new(der, parse_x509))
        .collect();
    if certs.is_empty() {
        return Err(ConfigError::new(
            field.to_string(),
            format!("no PEM certificate in {path:?}"),
        ));
    }
    Ok(certs.into())
}

/// The DER bodies of the `CERTIFICATE` blocks of a PEM text.
fn pem_certificates(text: &[u8]) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(text)
        .filter_map(|block| block.ok())
        .filter(|block| block.label == "CERTIFICATE")
        .map(|block| block.contents)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(strict_sni: bool) -> ListenerTls {
        let a = self_signed("a", &["a.example".into(), "*.wild.example".into()]).unwrap();
        let b = self_signed("b", &["b.example".into()]).unwrap();
        ListenerTls {
            certificates: vec![a, b],
            min_version: MinVersion::Tls12,
            alpn: ALPN::H2H1,
            strict_sni,
        }
    }

    #[test]
    fn sni_picks_the_certificate_that_names_the_host() {
        let tls = listener(false);
        let b = tls.certificate_for(Some("B.Example.")).unwrap();
        assert_eq!(b.names, ["b.example"]);
        let wild = tls.certificate_for(Some("x.wild.example")).unwrap();
        assert_eq!(wild.names[0], "a.example");
    }

    #[test]
    fn unknown_or_missing_sni_gets_the_default_unless_strict() {
        let tls = listener(false);
        assert_eq!(
            tls.certificate_for(Some("nope.example")).unwrap().names[0],
            "a.example"
        );
        assert_eq!(tls.certificate_for(None).unwrap().names[0], "a.example");
        let strict = listener(true);
        assert!(strict.certificate_for(Some("nope.example")).is_none());
        assert!(strict.certificate_for(None).is_none());
        assert!(strict.certificate_for(Some("b.example")).is_some());
    }

    #[test]
    fn an_exact_name_beats_a_wildcard_listed_before_it() {
        let wild = self_signed("w", &["*.example.com".into()]).unwrap();
        let api = self_signed("a", &["api.example.com".into()]).unwrap();
        let tls = ListenerTls {
            certificates: vec![wild, api],
            min_version: MinVersion::Tls12,
            alpn: ALPN::H2H1,
            strict_sni: false,
        };
        assert_eq!(
            tls.certificate_for(Some("api.example.com")).unwrap().names,
            ["api.example.com"]
        );
        assert_eq!(
            tls.certificate_for(Some("www.example.com")).unwrap().names,
            ["*.example.com"]
        );
    }

    #[test]
    fn wildcards_match_exactly_one_label() {
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", ".example.com"));
        assert!(name_matches("example.com", "example.com"));
    }

    #[test]
    fn tls13_is_recognised_by_its_cipher_suites() {
        assert!(offers_tls13([0xc02f, 0x1301]));
        assert!(!offers_tls13([0xc02f, 0xc030, 0x009e]));
        assert!(is_tls13("TLSv1_3") && !is_tls13("TLSv1_2"));
    }

    #[test]
    fn alpn_lists_map_to_pingora_settings() {
        use AlpnProtocol::*;
        assert_eq!(alpn_for(&[H2, Http11]), Some(ALPN::H2H1));
        assert_eq!(alpn_for(&[Http11]), Some(ALPN::H1));
        assert_eq!(alpn_for(&[H2]), Some(ALPN::H2));
        assert_eq!(alpn_for(&[]), None);
    }

    #[test]
    fn certificate_files_are_checked_and_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["svc.test".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["other.test".into()]).unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        let wrong_key = dir.path().join("w.pem");
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
        std::fs::write(&wrong_key, other.key_pair.serialize_pem()).unwrap();
        let load = |c: &std::path::Path, k: &std::path::Path| {
            load_certificate(
                "f",
                &CertificateFiles {
                    cert_file: c.to_str().unwrap(),
                    key_file: k.to_str().unwrap(),
                    server_names: &[],
                },
            )
        };
        assert_eq!(load(&cert, &key).unwrap().names, ["svc.test"]);

        let missing = dir.path().join("missing.pem");
        let err = load(&missing, &key).err().unwrap().to_string();
        assert!(
            err.starts_with("f.cert_file:") && err.contains("missing.pem"),
            "{err}"
        );

        let err = load(&cert, &wrong_key).err().unwrap().to_string();
        assert!(
            err.starts_with("f.key_file:") && err.contains("does not fit"),
            "{err}"
        );
    }

    #[test]
    fn ca_files_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, generated.cert.pem()).unwrap();
        assert_eq!(load_ca_file("ca", ca.to_str().unwrap()).unwrap().len(), 1);
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here").unwrap();
        let err = load_ca_file("p.ca_file", empty.to_str().unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("p.ca_file:"), "{err}");
    }
}
