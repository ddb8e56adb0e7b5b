//! Reading what the configuration names: certificate chains and keys (PEM), self-signed
//! certificates made in memory, CA files. Every error names the field and the file.

use super::{Certificate, Result, TlsError};
use crate::config::CertificateConfig;
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use pingora_rustls::sign::CertifiedKey;
use pingora_rustls::{CertificateDer, CryptoProvider, PrivateKeyDer};
use std::sync::Arc;

/// Pingora's process-wide rustls provider (ring), installed on first use.
fn provider() -> Option<&'static Arc<CryptoProvider>> {
    pingora_rustls::install_default_crypto_provider();
    CryptoProvider::get_default()
}

/// Load one certificate chain and its private key (PEM), check that they belong together, and
/// find the names it serves (configured, else the certificate's DNS names).
pub(super) fn certificate(field: &str, files: &CertificateConfig) -> Result<Certificate> {
    for (key, path) in [
        ("cert_file", &files.cert_file),
        ("key_file", &files.key_file),
    ] {
        if let Err(e) = std::fs::File::open(path) {
            return Err(TlsError::new(
                format!("{field}.{key}"),
                format!("cannot read {path:?}: {e}"),
            ));
        }
    }
    let loaded = pingora_rustls::load_certs_and_key_files(&files.cert_file, &files.key_file);
    let (chain, key) = match loaded {
        Ok(Some(pair)) => pair,
        Ok(None) => {
            return Err(TlsError::new(
                field.to_string(),
                format!(
                    "no PEM certificate in {:?} or no PEM private key in {:?}",
                    files.cert_file, files.key_file
                ),
            ))
        }
        Err(e) => {
            return Err(TlsError::new(
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
        TlsError::new(
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
pub(super) fn self_signed(field: &str, names: &[String]) -> Result<Certificate> {
    let generated = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::new(field.to_string(), format!("{names:?}: {e}")))?;
    let chain = vec![generated.cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(generated.key_pair.serialize_der().into());
    let key = certified_key(chain, key)
        .map_err(|e| TlsError::new(field.to_string(), format!("{names:?}: {e}")))?;
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

/// Load the CA certificates (PEM) a pool trusts for its backends.
pub(super) fn ca_file(field: &str, path: &str) -> Result<Arc<[WrappedX509]>> {
    let text = std::fs::read(path)
        .map_err(|e| TlsError::new(field.to_string(), format!("cannot read {path:?}: {e}")))?;
    let certs: Vec<WrappedX509> = pem_certificates(&text)
        .into_iter()
        .map(|der| WrappedX509::new(der, parse_x509))
        .collect();
    if certs.is_empty() {
        return Err(TlsError::new(
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
