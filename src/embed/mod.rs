//! The affinity engine as a library for any Pingora proxy: [`StickyAffinity`], built from the
//! same `sticky:` section the proxy reads (or its types, built in code), with one call per
//! Pingora hook. Your `ProxyHttp` keeps its own routing, listeners, TLS and filters; it picks a
//! [`Target`] (a pool, with its own affinity, or one of the section's routes) and lets the
//! engine choose the backend, clean the upstream request and finish the response.
//!
//! | your hook | call | what it does |
//! |---|---|---|
//! | `new_ctx` | [`StickyCtx::new`] | the request's affinity state, in your `CTX` |
//! | `upstream_peer` | [`StickyAffinity::upstream_peer`] | reads the session records once (cookie, learned id, client-IP table, named node), decides (recorded backend if usable, else the hash key's, else the balancer's pick, skipping backends that failed), returns the [`HttpPeer`] |
//! | `fail_to_connect` | [`StickyAffinity::fail_to_connect`] | remembers the failed backend and makes the error retryable: Pingora calls `upstream_peer` again, which picks another |
//! | `upstream_request_filter` | [`StickyAffinity::upstream_request_filter`] | removes the proxy's affinity cookies (`indirect`) and a client-sent opt-out header |
//! | `response_filter` | [`StickyAffinity::response_filter`] | the opt-out header honoured and removed, `hide_headers`, session ids learned, `Set-Cookie` for a new or moved session |
//! | `fail_to_proxy` | [`StickyAffinity::fail_to_proxy`] | the class's failure policy (`sorry`, `redirect`, `strict`, `close`), else a short plain error |
//! | `logging` | [`StickyAffinity::logging`] | releases the in-flight count, counts the request; [`StickyAffinity::decision`] says what affinity did |
//!
//! Health checks and shared session stores run as Pingora services: add
//! [`StickyAffinity::take_services`] to your server. `examples/embed_in_pingora.rs` is a
//! complete program.
//!
//! ```
//! use sticky_proxy::StickyAffinity;
//!
//! let affinity = StickyAffinity::from_yaml(
//!     r#"
//! sticky:
//!   pools:
//!     - name: web
//!       backends: [{ name: iis1, addr: "127.0.0.1:9001" }, { name: iis2, addr: "127.0.0.1:9002" }]
//!       affinity: { cookie: { secret: "at-least-16-bytes-of-secret" } }
//! "#,
//! )
//! .unwrap();
//! assert!(affinity.pool("web").is_some());
//! assert!(affinity.pool("api").is_none());
//! ```

use crate::config::{self, Config, RouteClass};
use crate::extension::Extensions;
use crate::filter::AffinityDecision;
use crate::proxy::ctx::RequestCtx;
use crate::proxy::routes::{Matcher, Route, Router};
use crate::proxy::{admission, answer, choose, log, request, response, ProxySettings};
use crate::server::{Runtime, StartError};
use pingora_core::services::ServiceWithDependents;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, Session};

/// The affinity engine of one `sticky:` section: its pools (backends, health, balancing),
/// their affinities (cookies, hashing, learned sessions, tables) and metrics, ready to be
/// called from your own `ProxyHttp`. Shared by every request (`&self`); build it once.
///
/// Your proxy keeps a [`StickyCtx`] per request and calls the engine from its hooks (the
/// other hooks are yours; `examples/embed_in_pingora.rs` is this, runnable):
///
/// ```no_run
/// use async_trait::async_trait;
/// use pingora_core::server::Server;
/// use pingora_core::upstreams::peer::HttpPeer;
/// use pingora_core::{Error, ErrorType, Result};
/// use pingora_http::{RequestHeader, ResponseHeader};
/// use pingora_proxy::{FailToProxy, ProxyHttp, Session};
/// use sticky_proxy::{StickyAffinity, StickyCtx};
///
/// struct MyProxy {
///     sticky: StickyAffinity,
/// }
///
/// #[async_trait]
/// impl ProxyHttp for MyProxy {
///     type CTX = StickyCtx;
///     fn new_ctx(&self) -> StickyCtx {
///         StickyCtx::new()
///     }
///     async fn upstream_peer(&self, session: &mut Session, ctx: &mut StickyCtx) -> Result<Box<HttpPeer>> {
///         let Some(target) = self.sticky.pool("web") else {
///             return Error::e_explain(ErrorType::HTTPStatus(404), "no such pool");
///         };
///         self.sticky.upstream_peer(target, session, ctx).await
///     }
///     fn fail_to_connect(&self, _: &mut Session, _: &HttpPeer, ctx: &mut StickyCtx, e: Box<Error>) -> Box<Error> {
///         self.sticky.fail_to_connect(ctx, e)
///     }
///     async fn upstream_request_filter(&self, _: &mut Session, upstream: &mut RequestHeader, ctx: &mut StickyCtx) -> Result<()> {
///         self.sticky.upstream_request_filter(upstream, ctx);
///         Ok(())
///     }
///     async fn response_filter(&self, _: &mut Session, response: &mut ResponseHeader, ctx: &mut StickyCtx) -> Result<()> {
///         self.sticky.response_filter(response, ctx)
///     }
///     async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut StickyCtx) -> FailToProxy {
///         self.sticky.fail_to_proxy(session, e, ctx).await
///     }
///     async fn logging(&self, _: &mut Session, _: Option<&Error>, ctx: &mut StickyCtx) {
///         self.sticky.logging(ctx);
///     }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let yaml = std::fs::read_to_string("proxy.yaml")?; // Pingora's file, with a `sticky:` section
///     let mut sticky = StickyAffinity::from_yaml(&yaml)?;
///     let mut server = Server::new(None)?;
///     server.bootstrap();
///     let services = sticky.take_services(); // health checks, shared stores
///     let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, MyProxy { sticky });
///     proxy.add_tcp("127.0.0.1:6188");
///     server.add_services(services);
///     server.add_service(proxy);
///     server.run_forever();
/// }
/// ```
pub struct StickyAffinity {
    config: Config,
    router: Router,
    /// `router.routes[..pools_at]` are the section's routes (and default route); then one
    /// route per pool, with the pool's own affinity.
    pools_at: usize,
    settings: ProxySettings,
    runtime: Runtime,
}

/// Where a request goes: a pool with its own affinity ([`StickyAffinity::pool`]), or one of
/// the section's routes ([`StickyAffinity::route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target(usize);

/// One request's affinity state, kept in your `CTX` from `new_ctx` to `logging`.
#[derive(Default)]
pub struct StickyCtx {
    ctx: RequestCtx,
}

impl StickyCtx {
    /// A new request's state (its start, for the pool's total timeout, is now).
    pub fn new() -> Self {
        StickyCtx::default()
    }
}

impl StickyAffinity {
    /// Build from a YAML document with a `sticky:` section (the proxy's own file format;
    /// `listeners` may be left out). Errors name the field, as the proxy's do.
    pub fn from_yaml(yaml: &str) -> Result<Self, StartError> {
        Self::from_yaml_with(yaml, &Extensions::default())
    }

    /// [`StickyAffinity::from_yaml`] with Rust key sources and backend namers the section names.
    pub fn from_yaml_with(yaml: &str, extensions: &Extensions) -> Result<Self, StartError> {
        Self::from_config(config::load_str_embedded(yaml)?, extensions)
    }

    /// Build from the section's types, built in code ([`config::raw`]) and validated as a file
    /// would be.
    ///
    /// ```
    /// use sticky_proxy::config::raw::{RawBackend, RawCookie, RawPool, RawSticky};
    /// use sticky_proxy::StickyAffinity;
    ///
    /// let mut pool = RawPool::default();
    /// pool.name = "web".into();
    /// pool.backends = vec![RawBackend::new("iis1", "127.0.0.1:9001")];
    /// pool.affinity.cookie = Some(RawCookie {
    ///     secret: Some("at-least-16-bytes-of-secret".into()),
    ///     ..RawCookie::default()
    /// });
    /// let section = RawSticky { pools: vec![pool], ..RawSticky::default() };
    /// let affinity = StickyAffinity::from_raw(section).unwrap();
    /// assert!(affinity.pool("web").is_some());
    ///
    /// let mut short = RawCookie::default();
    /// short.secret = Some("short".into());
    /// let mut pool = RawPool::default();
    /// pool.name = "web".into();
    /// pool.backends = vec![RawBackend::new("iis1", "127.0.0.1:9001")];
    /// pool.affinity.cookie = Some(short);
    /// let error = StickyAffinity::from_raw(RawSticky { pools: vec![pool], ..RawSticky::default() });
    /// assert!(error.err().unwrap().to_string().starts_with("sticky.pools[0].affinity.cookie.secret"));
    /// ```
    pub fn from_raw(section: config::raw::RawSticky) -> Result<Self, StartError> {
        Self::from_config(config::from_raw_embedded(section)?, &Extensions::default())
    }

    /// Build from a validated configuration; the Rust extensions it names must be in
    /// `extensions` (checked here). Certificate files of pools with TLS are read here.
    pub fn from_config(config: Config, extensions: &Extensions) -> Result<Self, StartError> {
        crate::extension::check(&config, extensions)?;
        let runtime = Runtime::build(&config, extensions)?;
        let wiring = &runtime.wiring;
        let mut routes = Vec::with_capacity(config.routes.len() + 1 + config.pools.len());
        for (i, r) in config.routes.iter().enumerate() {
            let name = format!("routes[{i}]");
            routes.push(wiring.route(&config, name, Matcher::of(r), r.pool, r.class));
        }
        if let config::DefaultRoute::Pool { pool, class } = config.default_route {
            routes.push(wiring.route(&config, "default".into(), Matcher::default(), pool, class));
        }
        let pools_at = routes.len();
        for pool in 0..config.pools.len() {
            let own = RouteClass::PoolDefault;
            routes.push(wiring.route(&config, "-".into(), Matcher::default(), pool, own));
        }
        let settings = ProxySettings {
            hide_headers: config.hide_headers.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            ..ProxySettings::default()
        };
        Ok(StickyAffinity {
            router: Router::new(routes, 404),
            pools_at,
            settings,
            runtime,
            config,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The pool called `name`, with its own `affinity` section.
    pub fn pool(&self, name: &str) -> Option<Target> {
        let index = self.config.pools.iter().position(|p| p.name == name)?;
        Some(Target(self.pools_at + index))
    }

    /// The first of the section's `routes` that matches the request (else its `default_route`
    /// pool, if it names one): for programs that let the section route.
    pub fn route(&self, request: &RequestHeader) -> Option<Target> {
        let routes = &self.router.routes[..self.pools_at];
        routes
            .iter()
            .position(|r| r.matcher.matches(request))
            .map(Target)
    }

    /// The background services the engine needs: one health check per pool that has one,
    /// one connection per shared session store. Add them to your server
    /// (`server.add_boxed_service`) before it runs; a second call returns none.
    pub fn take_services(&mut self) -> Vec<Box<dyn ServiceWithDependents>> {
        let mut services = std::mem::take(&mut self.runtime.health_services);
        let wiring = &self.runtime.wiring;
        for (pool, affinities) in wiring.pools.iter().zip(wiring.registry.pools()) {
            for (table, store) in affinities.stores() {
                services.push(Box::new(
                    pingora_core::services::background::background_service(
                        &format!("session store {}/{table}", pool.name),
                        crate::affinity::store::StoreService(store),
                    ),
                ));
            }
        }
        services
    }

    /// Choose the backend for `session`'s request to `target` (call it from `upstream_peer`,
    /// which Pingora calls again after a failed connect): the peer to connect to, or the
    /// error that answers the request — give it to [`StickyAffinity::fail_to_proxy`].
    pub async fn upstream_peer(
        &self,
        target: Target,
        session: &Session,
        ctx: &mut StickyCtx,
    ) -> Result<Box<HttpPeer>> {
        let ctx = &mut ctx.ctx;
        let Some(route) = self.router.routes.get(target.0) else {
            return Error::e_explain(ErrorType::InternalError, "a target of another engine");
        };
        if ctx.route.is_none() {
            ctx.route = Some(target.0);
            let trusted = &self.settings.trusted_proxies;
            ctx.client = admission::client_of_session(session, trusted);
        }
        let req = session.req_header();
        let upgrade = crate::proxy::is_websocket_opening(session);
        let trusted = &self.settings.trusted_proxies;
        let mut peer = choose::peer(route, req, (upgrade, false), trusted, ctx).await?;
        // The pools' peers skip Pingora's own hop-by-hop sanitising because sticky-proxy's
        // `upstream_request_filter` strips the client's hop itself; an embedding proxy's does
        // not, so its peers keep Pingora's standard policy.
        peer.options.http_upstream_request_policy = Default::default();
        Ok(peer)
    }

    /// A connect failed (call it from `fail_to_connect`): the backend is remembered and the
    /// error made retryable, so that the next `upstream_peer` picks another backend.
    pub fn fail_to_connect(&self, ctx: &mut StickyCtx, e: Box<Error>) -> Box<Error> {
        choose::connect_failed(&mut ctx.ctx, e)
    }

    /// Clean the request the backend gets (call it from `upstream_request_filter`): the proxy's
    /// own affinity cookies removed where `indirect` (the default), and a client-sent opt-out
    /// header. Forwarding headers are yours to set.
    pub fn upstream_request_filter(&self, upstream: &mut RequestHeader, ctx: &StickyCtx) {
        if !self.router.indirect_cookie_names.is_empty() {
            request::strip_affinity_cookies(upstream, &self.router.indirect_cookie_names);
        }
        if let Some(route) = self.ctx_route(ctx) {
            upstream.remove_header(&route.pool.opt_out_header);
        }
    }

    /// Finish a backend's response head (call it from `response_filter`): the opt-out header
    /// honoured and removed, `hide_headers` removed, the backend's own `Set-Cookie` for the
    /// proxy's cookie names removed, session ids learned or forgotten, the client IP recorded,
    /// and `Set-Cookie` (with `Cache-Control: private`) for a new or moved session. On 1xx
    /// heads, only the internal headers are removed.
    pub fn response_filter(
        &self,
        response: &mut ResponseHeader,
        ctx: &mut StickyCtx,
    ) -> Result<()> {
        let Some(route) = self.ctx_route(ctx) else {
            return Ok(());
        };
        if response.status.is_informational() && response.status != 101 {
            response::strip_internal(&route.pool, &self.settings, response);
            return Ok(());
        }
        let names = &self.router.cookie_names;
        response::on_final(route, names, &self.settings, response, &mut ctx.ctx)
    }

    /// Answer a request that failed (call it from `fail_to_proxy`): the class's failure
    /// policy when the session's backend could not serve, else a short plain status that names
    /// nothing internal (502, 503, 504, …).
    pub async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut StickyCtx,
    ) -> FailToProxy {
        let route = self.ctx_route(ctx);
        let code = answer::on_failure(session, route, e, &mut ctx.ctx).await;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// The request is over (call it from `logging`): it no longer counts as in flight on its
    /// backend, and is counted in the metrics ([`StickyAffinity::metrics`]).
    pub fn logging(&self, ctx: &mut StickyCtx) {
        log::count(self.ctx_route(ctx), &mut ctx.ctx);
    }

    /// What affinity decided for the request (`None` before `upstream_peer`).
    pub fn decision<'a>(&'a self, ctx: &'a StickyCtx) -> Option<AffinityDecision<'a>> {
        let c = &ctx.ctx;
        let route = self.ctx_route(ctx)?;
        Some(log::affinity_decision(
            route,
            c.slots.as_ref(),
            c.attempt.backend,
            &c.verdict,
        ))
    }

    /// Every metric in the Prometheus text format, with its content type: requests by pool,
    /// backend and outcome, backend states and health, session tables (the proxy's admin
    /// `/metrics`, for your own endpoint).
    pub fn metrics(&self) -> (String, Vec<u8>) {
        let wiring = &self.runtime.wiring;
        self.runtime.metrics.render(&wiring.pools, &wiring.registry)
    }

    fn ctx_route(&self, ctx: &StickyCtx) -> Option<&Route> {
        self.router.routes.get(ctx.ctx.route?)
    }
}

impl std::fmt::Debug for StickyAffinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pools: Vec<&str> = self.config.pools.iter().map(|p| p.name.as_str()).collect();
        f.debug_struct("StickyAffinity")
            .field("pools", &pools)
            .field("routes", &self.pools_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<StickyAffinity>();
    }
}
