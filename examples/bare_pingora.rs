//! The floor the load benchmark compares sticky-proxy with: the least a Pingora 0.9 proxy does
//! for the same work — round robin over the backends (`pingora-load-balancing`), the three
//! `X-Forwarded-*` headers HAProxy, NGINX and sticky-proxy add in `benches/load/` (written the
//! way sticky-proxy writes them), sticky-proxy's default upstream timeouts, no downstream
//! modules, the same allocator as the `sticky-proxy` binary; nothing else (no affinity, routes,
//! header stripping, metrics or log line). What sticky-proxy with `affinity: { enabled: false }`
//! costs above this is ours to cut; what this costs above HAProxy is Pingora's.
//!
//! `cargo run --release --example bare_pingora -- [--tls ADDR CERT KEY] LISTEN THREADS BACKEND...`,
//! e.g. `bare_pingora 127.0.0.1:6231 1 127.0.0.1:9101 127.0.0.1:9102 127.0.0.1:9103`.
//! `--tls` adds an HTTPS listener (rustls, ALPN `h2` then `http/1.1`, Pingora's TLS defaults)
//! for the edge workloads of `benches/load/edge.sh`. Pingora's listener defaults otherwise
//! (its 64 KiB read buffer per connection included): the floor as Pingora ships.
//! Not a product: no config file, no health checks, exits 2 on bad arguments.

use async_trait::async_trait;
use pingora_core::modules::http::HttpModules;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_http::RequestHeader;
use pingora_load_balancing::{selection::RoundRobin, LoadBalancer};
use pingora_proxy::{ProxyHttp, Session};
use std::sync::Arc;
use std::time::Duration;
use sticky_proxy::headers::ip_header_value;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    /// As sticky-proxy: not Pingora's default (disabled) compression module.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let backend = self.0.select(b"", 256).ok_or_else(|| {
            pingora_core::Error::explain(pingora_core::ErrorType::ConnectNoRoute, "no backend")
        })?;
        let mut peer = HttpPeer::new(backend.addr, false, String::new());
        // sticky-proxy's defaults (`sticky.pools[].timeouts`): each costs timer work per request.
        peer.options.connection_timeout = Some(Duration::from_secs(3));
        peer.options.read_timeout = Some(Duration::from_secs(60));
        peer.options.write_timeout = Some(Duration::from_secs(60));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        if let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            upstream_request.append_header("x-forwarded-for", ip_header_value(ip))?;
        }
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        upstream_request.append_header("x-forwarded-proto", if tls { "https" } else { "http" })?;
        if let Some(host) = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .cloned()
        {
            upstream_request.append_header("x-forwarded-host", host)?;
        }
        Ok(())
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let tls = if args.first().map(String::as_str) == Some("--tls") && args.len() >= 4 {
        let tls: Vec<String> = args.drain(..4).skip(1).collect();
        Some(tls)
    } else {
        None
    };
    let (Some(listen), Some(Ok(threads))) = (args.first(), args.get(1).map(|t| t.parse())) else {
        eprintln!("usage: bare_pingora [--tls ADDR CERT KEY] LISTEN THREADS BACKEND...");
        std::process::exit(2);
    };
    let backends = match LoadBalancer::<RoundRobin>::try_from_iter(&args[2..]) {
        Ok(lb) if !args[2..].is_empty() => lb,
        _ => {
            eprintln!("bare_pingora: give one or more backend addresses (host:port)");
            std::process::exit(2);
        }
    };
    let conf = ServerConf {
        threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy =
        pingora_proxy::http_proxy_service(&server.configuration, Bare(Arc::new(backends)));
    proxy.add_tcp(listen);
    if let Some(tls) = tls {
        let mut settings =
            match pingora_core::listeners::tls::TlsSettings::intermediate(&tls[1], &tls[2]) {
                Ok(settings) => settings,
                Err(e) => {
                    eprintln!("bare_pingora: {e}");
                    std::process::exit(2);
                }
            };
        settings.enable_h2();
        proxy.add_tls_with_settings(&tls[0], None, settings);
    }
    server.add_service(proxy);
    server.run_forever();
}
