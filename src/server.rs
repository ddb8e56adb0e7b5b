//! Start-up: from a validated configuration and the registered extensions to a Pingora
//! [`Server`] — the pools and their health-check services, the affinity registry and its
//! shared stores, one proxy service per listener (its TLS loaded, its routes), the admin
//! listener. The one place where the run-time objects are built and wired together; nothing
//! listens until the server runs. Every failure is a [`StartError`] naming the field at fault.

use crate::admin::AdminApp;
use crate::affinity::registry::Registry;
use crate::config::{Config, ConfigError, DefaultRoute, ListenerConfig, RouteClass};
use crate::discovery::DiscoveredBackends;
use crate::extension::Extensions;
use crate::filter::{Filter, FilterChain};
use crate::lifecycle::{Leaving, LifecycleWatcher};
use crate::membership::Membership;
use crate::metrics::{Metrics, PoolMetrics};
use crate::pool::{HealthService, Pool};
use crate::proxy::downstream::ClientSide;
use crate::proxy::routes::{Matcher, Route, Router};
use crate::proxy::{ProxySettings, StickyProxy};
use crate::sockets::{ListenSockets, WithListenSockets};
use crate::state_file::{StateFile, WriteCounters};
use crate::tls::{ListenerTls, TlsError, UpstreamTls};
use pingora_core::listeners::{L4BufferSettings, ListenerConfig as Endpoint};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use pingora_proxy::HttpProxy;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Why the proxy cannot start; its message names the field (and file) at fault.
#[derive(Debug)]
pub enum StartError {
    /// The configuration file: unreadable, not YAML, or a value that is not allowed.
    Config(ConfigError),
    /// A certificate, key or CA file the configuration names cannot be used.
    Tls(TlsError),
    /// The command line, or the configuration file cannot be read.
    Usage(String),
    /// Pingora's own settings in the configuration file.
    Pingora(String),
    /// A listening socket: an address that cannot be bound, a passed socket nobody uses.
    Listen(String),
    /// Any of the above, in this configuration file.
    In(String, Box<StartError>),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::Tls(e) => e.fmt(f),
            StartError::Usage(e) => f.write_str(e),
            StartError::Pingora(e) => write!(f, "Pingora settings: {e}"),
            StartError::Listen(e) => f.write_str(e),
            StartError::In(path, e) => write!(f, "{path}: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl StartError {
    /// Say why on stderr (`sticky-proxy: <file>: <field>: <what is wrong>`) and give the exit
    /// status for it: 2, the status of a refused configuration.
    pub fn report(&self) -> std::process::ExitCode {
        eprintln!("sticky-proxy: {self}");
        std::process::ExitCode::from(2)
    }
}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::Config(e)
    }
}

impl From<TlsError> for StartError {
    fn from(e: TlsError) -> Self {
        StartError::Tls(e)
    }
}

/// What [`build_server`] built: the server, the flag that
/// `crate::lifecycle::SignalsWithGrace` sets when a SIGTERM starts the grace, and the state
/// file (`sticky.state_file`), to restore once the server is bootstrapped.
pub struct Built {
    pub server: Server,
    pub leaving: Leaving,
    pub state_file: Option<Arc<StateFile>>,
    /// Adds and removes backends of the running pools (the state file's restore uses it).
    pub membership: Arc<Membership>,
}

/// Build the Pingora server for a validated configuration. `extensions` must be the ones the
/// configuration was checked against ([`crate::extension::check`]); `listen_sockets` are the
/// sockets prepared before Pingora starts ([`crate::sockets::prepare`]), used by the listeners
/// with their addresses instead of binding.
pub fn build_server(
    opt: Option<Opt>,
    server_conf: ServerConf,
    config: &Config,
    extensions: &Extensions,
    listen_sockets: ListenSockets,
) -> Result<Built, StartError> {
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    let leaving = Leaving::default();
    server.add_service(background_service(
        "lifecycle",
        LifecycleWatcher::new(server.watch_execution_phase(), leaving.clone()),
    ));
    let runtime = Runtime::build(config, extensions)?;
    for service in runtime.health_services {
        server.add_boxed_service(service);
    }
    // Shared session stores connect from a background service: never during `-t`.
    let wiring = &runtime.wiring;
    for (pool, affinities) in wiring.pools.iter().zip(wiring.registry.pools()) {
        for (table, store) in affinities.stores() {
            server.add_service(background_service(
                &format!("session store {}/{table}", pool.name),
                crate::affinity::store::StoreService(store),
            ));
        }
    }
    for warning in &config.warnings {
        log::warn!("config: {warning}");
    }
    let state_file = config.state_file.as_ref().map(|path| {
        let (written, failed) = runtime.metrics.state_file_writes();
        let counters = WriteCounters { written, failed };
        StateFile::new(path, config, wiring.pools.clone(), counters)
    });
    let membership = Membership::new(
        wiring.pools.clone(),
        wiring.registry.clone(),
        runtime.metrics.clone(),
        wiring.metrics.clone(),
    );
    if let Some(state_file) = &state_file {
        server.add_service(background_service("state file", state_file.writer()));
        membership.keep_in(state_file.clone());
    }
    // DNS discovery: each pool with `discovery` gets its resolver, whose answers become the
    // pool's discovered backends through `membership`.
    let failures = crate::discovery::failures_metric();
    runtime.metrics.register(Box::new(failures.clone()));
    let sink: Arc<dyn DiscoveredBackends> = Arc::new(DiscoveredIntoPool(membership.clone()));
    for pool in &config.pools {
        let counter = failures.with_label_values(&[pool.name.as_str()]);
        if let Some(service) = crate::discovery::service(pool, sink.clone(), counter) {
            server.add_boxed_service(service);
        }
    }
    let settings = Arc::new(ProxySettings {
        hide_headers: config.hide_headers.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        access_log_format: config.access_log_format,
        leaving: leaving.clone(),
        upgrade_body_delay: crate::proxy::upgrade::test_body_delay_from_env(),
    });
    for (i, listener) in config.listeners.iter().enumerate() {
        let router = wiring.router_for(config, listener);
        let proxy = StickyProxy::new(router, settings.clone(), listener);
        let service = listener_service(&server, i, listener, proxy)?;
        server.add_service(WithListenSockets::new(service, listen_sockets.clone()));
    }
    if let Some(admin) = &config.admin {
        let app = AdminApp::new(
            config,
            admin,
            wiring.pools.clone(),
            wiring.registry.clone(),
            runtime.metrics.clone(),
            leaving.clone(),
            membership.clone(),
        );
        server.add_service(background_service(
            "admin request rates",
            app.rate_sampler(),
        ));
        let mut service = Service::new(format!("admin {}", admin.addr), app);
        service.add_tcp(&admin.addr.to_string());
        server.add_service(WithListenSockets::new(service, listen_sockets));
    }
    Ok(Built {
        server,
        leaving,
        state_file,
        membership,
    })
}

/// DNS discovery's answers, applied to the pools (`Membership::replace_discovered`).
struct DiscoveredIntoPool(Arc<Membership>);

impl DiscoveredBackends for DiscoveredIntoPool {
    fn replace(&self, pool: &str, addrs: &[std::net::SocketAddr], weight: u32) {
        self.0.replace_discovered(pool, addrs, weight);
    }
}

/// The listening service of listener `i`: `proxy` behind Pingora's HTTP server (h2c, HTTP/2
/// idle timeout, CONNECT let through to the proxy's own 405), each connection wrapped in
/// [`ClientSide`], on TCP or TLS (its certificates loaded here).
fn listener_service(
    server: &Server,
    i: usize,
    listener: &ListenerConfig,
    proxy: StickyProxy,
) -> Result<Service<ClientSide<HttpProxy<StickyProxy>>>, TlsError> {
    let field = format!("sticky.listeners[{i}].tls");
    let tls = listener
        .tls
        .as_ref()
        .map(|t| ListenerTls::load(&field, t))
        .transpose()?;
    let mut proxy = pingora_proxy::http_proxy(&server.configuration, proxy);
    let mut options = pingora_core::apps::HttpServerOptions::default();
    options.h2c = listener.h2c;
    // HTTP/2 connections are not wrapped by `ClientSide`'s timeouts: Pingora's own.
    options.h2_idle_timeout = Some(listener.timeouts.keepalive);
    // CONNECT is refused in `request_filter` with the proxy's own 405 (Pingora's own, before
    // any hook, says `Server: Pingora`, which HTTP/2 framing gives no way to remove).
    options.allow_connect_method_proxying = true;
    proxy.server_options = Some(options);
    let app = ClientSide::new(proxy, listener.timeouts, listener.h2c);
    let mut service = Service::new(format!("proxy {}", listener.addr), app);
    let endpoint = Endpoint::tcp(listener.addr.to_string()).l4_buffer(client_buffers());
    match tls {
        None => service.add_listener(endpoint),
        Some(tls) => {
            let settings = tls
                .settings()
                .map_err(|e| TlsError::new(field, e.to_string()))?;
            service.add_listener(endpoint.tls(settings))
        }
    }
    Ok(service)
}

/// Pingora's buffers in front of each client socket. Pingora's default read buffer is 64 KiB
/// per connection, allocated (and zeroed) at accept and kept for the connection's whole life:
/// about 64 of the ~100 KiB an idle kept-alive connection cost (benches/README.md, "Memory per
/// idle connection"). Without it Pingora's HTTP/1 parser reads a request head straight into its
/// own 4 KiB buffer (one `recv` per request, as before, for a head that fits), bodies go into
/// the body buffer and rustls reads into its own record buffer. The 1,460-byte write buffer is
/// kept: without it a response head and a small body leave in two `send` calls instead of one.
fn client_buffers() -> L4BufferSettings {
    L4BufferSettings {
        read: Some(0),
        write: None,
    }
}

/// The run-time state a configuration describes, short of the Pingora server: the pools (their
/// TLS to the backends loaded), their health-check services (built, not running), the affinity
/// registry, the metrics, and what each listener's routes are made of.
pub struct Runtime {
    pub health_services: Vec<HealthService>,
    pub metrics: Arc<Metrics>,
    pub wiring: Wiring,
}

impl Runtime {
    /// Build it; `extensions` must be the ones the configuration was checked against.
    pub fn build(config: &Config, extensions: &Extensions) -> Result<Runtime, TlsError> {
        let mut pools = Vec::with_capacity(config.pools.len());
        let mut health_services = Vec::new();
        for (i, pool_config) in config.pools.iter().enumerate() {
            let tls = pool_config
                .tls
                .as_ref()
                .map(|t| UpstreamTls::load(&format!("sticky.pools[{i}].tls"), t))
                .transpose()?;
            let (pool, service) = Pool::new(pool_config, tls.as_ref());
            health_services.extend(service);
            pools.push(pool);
        }
        let registry = Arc::new(Registry::build(config, &pools, extensions));
        let names = config.listeners.iter().flat_map(|l| &l.filters);
        let names = names.chain(config.routes.iter().flat_map(|r| &r.filters));
        let filters = names
            .filter_map(|n| Some((n.clone(), extensions.filter(n)?)))
            .collect();
        let metrics = Arc::new(Metrics::new());
        let pool_metrics = pools
            .iter()
            .map(|p| Arc::new(metrics.for_pool(p)))
            .collect();
        Ok(Runtime {
            health_services,
            metrics,
            wiring: Wiring {
                pools,
                registry,
                metrics: pool_metrics,
                filters,
            },
        })
    }
}

/// What a listener's routes are made of: the pools, their affinities and metric handles, the
/// Rust filters the configuration names.
pub struct Wiring {
    pub pools: Vec<Arc<Pool>>,
    pub registry: Arc<Registry>,
    pub metrics: Vec<Arc<PoolMetrics>>,
    filters: HashMap<String, Arc<dyn Filter>>,
}

impl Wiring {
    /// A listener's routes: the configured ones (then the default pool, if any), or a single
    /// catch-all route to the listener's own pool.
    pub fn router_for(&self, config: &Config, listener: &ListenerConfig) -> Router {
        let route = |name: String, matcher: Matcher, pool: usize, class: RouteClass| {
            self.route(config, name, matcher, pool, class)
        };
        let with_filters = |route: Route, own: &[String]| Route {
            filters: self.filters(listener.filters.iter().chain(own)),
            ..route
        };
        if config.routes.is_empty() {
            let only = route(
                "-".into(),
                Matcher::default(),
                listener.pool,
                RouteClass::PoolDefault,
            );
            return Router::new(vec![with_filters(only, &[])], 404);
        }
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let route = route(format!("routes[{i}]"), Matcher::of(r), r.pool, r.class);
                with_filters(route, &r.filters)
            })
            .collect();
        let unmatched_status = match config.default_route {
            DefaultRoute::Status(status) => status,
            DefaultRoute::Pool { pool, class } => {
                let default = route("default".into(), Matcher::default(), pool, class);
                routes.push(with_filters(default, &[]));
                404
            }
        };
        Router::new(routes, unmatched_status)
    }

    /// A route to pool `pool` (an index into `config.pools`) with `class`'s affinity, no filters.
    pub(crate) fn route(
        &self,
        config: &Config,
        name: String,
        matcher: Matcher,
        pool: usize,
        class: RouteClass,
    ) -> Route {
        Route::new(
            name,
            matcher,
            self.pools[pool].clone(),
            self.registry.pool(pool).affinity_for(class),
            self.metrics[pool].clone(),
            &config.hide_headers,
        )
    }

    /// The chain of the filters `names`, in order, each once (a route's filter that its
    /// listener already runs runs at the listener's place).
    fn filters<'a>(&self, names: impl Iterator<Item = &'a String>) -> FilterChain {
        let mut chain: Vec<(Arc<str>, Arc<dyn Filter>)> = Vec::new();
        for name in names {
            if chain.iter().all(|(n, _)| **n != **name) {
                if let Some(filter) = self.filters.get(name) {
                    chain.push((name.as_str().into(), filter.clone()));
                }
            }
        }
        FilterChain::new(chain)
    }
}
