//! TLS test aids: certificates generated at test time (never a key in the repo), HTTPS clients
//! that trust exactly the certificates given, and an HTTPS demo backend.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// A self-signed certificate and its key, as PEM text and as files in a test's directory.
pub struct TestCert {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCert {
    /// Generate a certificate for `names` and write `<stem>.crt` / `<stem>.key` into `dir`.
    pub fn generate(dir: &Path, stem: &str, names: &[&str]) -> TestCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let generated = rcgen::generate_simple_self_signed(names).unwrap();
        let cert_pem = generated.cert.pem();
        let cert_der = generated.cert.der().to_vec();
        let cert_file = dir.join(format!("{stem}.crt"));
        let key_file = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_file, &cert_pem).unwrap();
        std::fs::write(&key_file, generated.key_pair.serialize_pem()).unwrap();
        TestCert {
            cert_pem,
            cert_der,
            cert_file,
            key_file,
        }
    }

    /// `{ cert_file: .., key_file: .. }` for a listener's certificate list.
    pub fn yaml(&self) -> String {
        format!(
            "{{ cert_file: \"{}\", key_file: \"{}\" }}",
            self.cert_file.display(),
            self.key_file.display()
        )
    }
}

/// An HTTPS client (rustls) that trusts only `roots`, resolves each `(name, addr)` to `addr`,
/// keeps no cookies and follows no redirects.
pub fn https_client_builder(
    roots: &[&TestCert],
    resolve: &[(&str, SocketAddr)],
) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10));
    for root in roots {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(root.cert_pem.as_bytes()).unwrap(),
        );
    }
    for (name, addr) in resolve {
        builder = builder.resolve(name, *addr);
    }
    builder
}

pub fn https_client(roots: &[&TestCert], resolve: &[(&str, SocketAddr)]) -> reqwest::Client {
    https_client_builder(roots, resolve).build().unwrap()
}

/// A demo backend that speaks HTTPS with `cert`; answers like [`super::TestBackend`].
pub struct TlsBackend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsBackend {
    pub async fn start(name: &str, cert: &TestCert) -> TlsBackend {
        pingora_rustls::install_default_crypto_provider();
        let (chain, key) = pingora_rustls::load_certs_and_key_files(
            cert.cert_file.to_str().unwrap(),
            cert.key_file.to_str().unwrap(),
        )
        .unwrap()
        .unwrap();
        let config = pingora_rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = pingora_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name: Arc<str> = name.into();
        let task = tokio::spawn(async move {
            let counter = Arc::new(AtomicU64::new(0));
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, name, counter) = (acceptor.clone(), name.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let (name, counter) = (name.clone(), counter.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                sticky_proxy::demo::handle(&name, &counter, req).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        TlsBackend { addr, task }
    }
}

/// The DER certificate the server presented on `response`'s connection (client built with
/// `tls_info(true)`).
pub fn peer_certificate(response: &reqwest::Response) -> Option<Vec<u8>> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()?
        .peer_certificate()
        .map(|der| der.to_vec())
}

/// A TLS handshake to `addr` for `name` by a client that offers only TLS 1.2 cipher suites
/// and protocol version (trusting `root`); `Ok` if the handshake completed.
pub async fn tls12_only_handshake(
    addr: SocketAddr,
    name: &str,
    root: &TestCert,
) -> Result<(), String> {
    use pingora_rustls::{ClientConfig, CryptoProvider, RootCertStore, ServerName, TlsConnector};
    pingora_rustls::install_default_crypto_provider();
    let mut provider = CryptoProvider::get_default().unwrap().as_ref().clone();
    provider
        .cipher_suites
        .retain(|s| s.version() == &pingora_rustls::version::TLS12);
    let mut roots = RootCertStore::empty();
    roots.add(root.cert_der.clone().into()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&pingora_rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        TlsConnector::from(Arc::new(config)).connect(server_name, stream),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// A TLS connection (HTTP/1.1, no ALPN) to `addr` for `name`, trusting `root`.
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    root: &TestCert,
) -> pingora_rustls::ClientTlsStream<tokio::net::TcpStream> {
    tls_connect_with(&tls_connector(root), addr, name).await
}

/// A TLS client (HTTP/1.1, no ALPN) trusting `root`; one for many connections resumes sessions.
pub fn tls_connector(root: &TestCert) -> pingora_rustls::TlsConnector {
    use pingora_rustls::{ClientConfig, RootCertStore, TlsConnector};
    pingora_rustls::install_default_crypto_provider();
    let mut roots = RootCertStore::empty();
    roots.add(root.cert_der.clone().into()).unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `addr` for `name` with `connector`.
pub async fn tls_connect_with(
    connector: &pingora_rustls::TlsConnector,
    addr: SocketAddr,
    name: &str,
) -> pingora_rustls::ClientTlsStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(
            pingora_rustls::ServerName::try_from(name.to_string()).unwrap(),
            stream,
        )
        .await
        .unwrap()
}
