//! Your own Pingora proxy, with sticky-proxy's affinity engine as a library: the routing is
//! this program's (`/api/…` to the `api` pool, everything else to `web`); the backends, their
//! health and the affinity (cookie, learned sessions, hashing, failure policy) come from the
//! `sticky:` section of the Pingora configuration file, read by `StickyAffinity`.
//!
//! Run it with a Pingora configuration file that has a `sticky:` section with pools `web` and
//! `api` (`listeners` may be left out): `cargo run --example embed_in_pingora -- -c proxy.yaml`.
//! It listens on `EMBED_LISTEN` (default `127.0.0.1:6188`), or on the socket a service manager
//! passes for that address (systemd socket activation).

use async_trait::async_trait;
use pingora_core::server::configuration::Opt;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use sticky_proxy::{StickyAffinity, StickyCtx};

/// The user's proxy: its own routing, sticky-proxy's affinity.
struct MyProxy {
    sticky: StickyAffinity,
}

#[async_trait]
impl ProxyHttp for MyProxy {
    type CTX = StickyCtx;

    fn new_ctx(&self) -> StickyCtx {
        StickyCtx::new()
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut StickyCtx,
    ) -> Result<Box<HttpPeer>> {
        let api = session.req_header().uri.path().starts_with("/api/");
        let Some(target) = self.sticky.pool(if api { "api" } else { "web" }) else {
            return Error::e_explain(ErrorType::HTTPStatus(404), "no such pool");
        };
        self.sticky.upstream_peer(target, session, ctx).await
    }

    fn fail_to_connect(
        &self,
        _: &mut Session,
        _: &HttpPeer,
        ctx: &mut StickyCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.sticky.fail_to_connect(ctx, e)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut StickyCtx,
    ) -> Result<()> {
        self.sticky.upstream_request_filter(upstream, ctx);
        upstream.insert_header("x-forwarded-proto", "http")
    }

    async fn response_filter(
        &self,
        _: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut StickyCtx,
    ) -> Result<()> {
        self.sticky.response_filter(response, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut StickyCtx,
    ) -> FailToProxy {
        self.sticky.fail_to_proxy(session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut StickyCtx) {
        if let Some(decision) = self.sticky.decision(ctx) {
            let path = session.req_header().uri.path();
            let (outcome, backend) = (decision.outcome.as_str(), decision.backend.unwrap_or("-"));
            log::info!(
                "{path} pool={} outcome={outcome} backend={backend}",
                decision.route.pool
            );
        }
        self.sticky.logging(ctx);
    }
}

/// As the stock binary (`src/main.rs`): mimalloc, a fifth of the user-space instructions less
/// than the system allocator (benches/README.md). A program of your own should keep these lines.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let opt = Opt::parse_args();
    let path = opt.conf.clone().unwrap_or_default();
    let sticky = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {path:?}: {e}"))
        .and_then(|yaml| StickyAffinity::from_yaml(&yaml).map_err(|e| format!("{path}: {e}")));
    let (mut sticky, sockets) = match (sticky, sticky_proxy::sockets::activated()) {
        (Ok(sticky), Ok(sockets)) => (sticky, sockets),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("embed_in_pingora: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let Ok(mut server) = Server::new(Some(opt)) else {
        eprintln!("embed_in_pingora: {path}: not a Pingora configuration file");
        return std::process::ExitCode::from(2);
    };
    server.bootstrap();
    for service in sticky.take_services() {
        server.add_boxed_service(service);
    }
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, MyProxy { sticky });
    let listen = std::env::var("EMBED_LISTEN").unwrap_or_else(|_| "127.0.0.1:6188".into());
    proxy.add_tcp(&listen);
    server.add_service(sticky_proxy::sockets::WithListenSockets::new(
        proxy, sockets,
    ));
    server.run_forever()
}
