//! sticky-proxy: an edge reverse proxy on Pingora whose specialty is session affinity.
//!
//! # Architecture
//! One YAML file configures Pingora (its own keys) and us (the `sticky:` section, see
//! [`config`]). [`build_server`] turns the validated [`config::Config`] into a Pingora
//! [`Server`]: one proxy service per listener, each serving one [`pool::Pool`], plus one
//! background health-check service per pool that has a health check, and one background
//! service per Redis session store ([`affinity::store`]: connection, heartbeat, writer).
//!
//! # Hook map (one request)
//! ```text
//! client → request_filter         TLS? redirect to HTTPS? which route?
//!        → upstream_peer          affinity cookie → pinned backend if usable, else a new pick
//!        → fail_to_connect        remember the failed backend, retry → upstream_peer re-picks
//!        → upstream_request_filter strip our cookie and client-sent internal headers; X-Forwarded-*
//! backend→ response_filter        opt-out header; hide internal headers; append Set-Cookie
//!        → logging                release in-flight count; one decision line
//! ```
//! The hooks live in [`proxy`]; the decisions they call are pure functions in [`affinity`],
//! [`pool`] and [`headers`], unit-tested without sockets.

pub mod access_log;
pub mod admin;
pub mod affinity;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod extension;
pub mod headers;
pub mod lifecycle;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod sockets;
pub mod tls;

use pingora_core::listeners::{L4BufferSettings, ListenerConfig as Endpoint};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use std::sync::Arc;

/// Build the Pingora server for a validated configuration: pools (with their health-check
/// services and persistence classes), one proxy service per listener, the admin listener.
/// Nothing listens until the server runs. `extensions` must be the ones the config was
/// validated with; `listen_sockets` are the sockets prepared before Pingora starts (passed by a
/// service manager, or bound at start: [`sockets`]), used by the listeners with their addresses
/// instead of binding. Returns the server and the flag that
/// [`lifecycle::SignalsWithGrace`] sets when a SIGTERM starts the grace.
pub fn build_server(
    opt: Option<Opt>,
    server_conf: ServerConf,
    config: &config::Config,
    extensions: &extension::Extensions,
    listen_sockets: sockets::ListenSockets,
) -> (Server, lifecycle::Leaving) {
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    let leaving = lifecycle::Leaving::default();
    server.add_service(pingora_core::services::background::background_service(
        "lifecycle",
        lifecycle::LifecycleWatcher::new(server.watch_execution_phase(), leaving.clone()),
    ));
    let settings = Arc::new(proxy::ProxySettings {
        hide_headers: config.hide_headers.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        access_log_format: config.access_log_format,
        leaving: leaving.clone(),
        upgrade_body_delay: proxy::upgrade::test_body_delay_from_env(),
    });
    let metrics = Arc::new(metrics::Metrics::new());
    let mut pools = Vec::with_capacity(config.pools.len());
    for (index, pool_config) in config.pools.iter().enumerate() {
        // The classes that routes (or the default route) apply to this pool.
        let mut used: Vec<usize> = config
            .routes
            .iter()
            .filter(|r| r.pool == index)
            .map(|r| r.class)
            .chain(match config.default_route {
                config::DefaultRoute::Pool { pool, class } if pool == index => Some(class),
                _ => None,
            })
            .filter_map(|c| match c {
                config::RouteClass::Class(c) => Some(c),
                _ => None,
            })
            .collect();
        used.sort_unstable();
        used.dedup();
        let classes: Vec<(usize, &config::ClassConfig)> =
            used.iter().map(|c| (*c, &config.classes[*c])).collect();
        let (pool, health_service) = pool::Pool::new(pool_config, &classes, extensions);
        if let Some(service) = health_service {
            server.add_boxed_service(service);
        }
        // Shared session stores connect from a background service: never during `-t`.
        for (table, store) in pool.stores() {
            server.add_service(pingora_core::services::background::background_service(
                &format!("session store {}/{table}", pool.name),
                affinity::store::StoreService(store),
            ));
        }
        pools.push(pool);
    }
    let pool_metrics: Vec<Arc<metrics::PoolMetrics>> = pools
        .iter()
        .map(|p| Arc::new(metrics.for_pool(p)))
        .collect();
    for warning in &config.warnings {
        log::warn!("config: {warning}");
    }
    for listener in &config.listeners {
        let router = router_for(config, listener, &pools, &pool_metrics);
        let name = format!("proxy {}", listener.addr);
        let mut service = pingora_proxy::http_proxy_service_with_name(
            &server.configuration,
            proxy::StickyProxy::new(router, settings.clone(), listener),
            &name,
        );
        if listener.h2c {
            let mut options = pingora_core::apps::HttpServerOptions::default();
            options.h2c = true;
            if let Some(app) = service.app_logic_mut() {
                app.server_options = Some(options);
            }
        }
        let addr = listener.addr.to_string();
        let endpoint = Endpoint::tcp(&addr).l4_buffer(client_buffers());
        match &listener.tls {
            None => service.add_listener(endpoint),
            Some(tls) => match tls.settings() {
                Ok(tls_settings) => service.add_listener(endpoint.tls(tls_settings)),
                Err(e) => {
                    // Certificates were loaded during validation; this cannot fail with rustls.
                    eprintln!("sticky-proxy: TLS listener {addr}: {e}");
                    std::process::exit(2);
                }
            },
        }
        server.add_service(sockets::WithListenSockets::new(
            service,
            listen_sockets.clone(),
        ));
    }
    if let Some(admin) = &config.admin {
        let app = admin::AdminApp::new(
            config,
            admin,
            pools.clone(),
            metrics.clone(),
            leaving.clone(),
        );
        server.add_service(pingora_core::services::background::background_service(
            "admin request rates",
            app.rate_sampler(),
        ));
        let mut service =
            pingora_core::services::listening::Service::new(format!("admin {}", admin.addr), app);
        service.add_tcp(&admin.addr.to_string());
        server.add_service(sockets::WithListenSockets::new(service, listen_sockets));
    }
    (server, leaving)
}

/// Pingora's buffers in front of each client socket. Pingora's default read buffer is 64 KiB
/// per connection, allocated at accept and kept for the connection's whole life: 64 of the
/// ~100 KiB an idle kept-alive connection cost (benches/README.md, "Memory per idle
/// connection"). Without it Pingora's HTTP/1 parser reads a request head straight into its own
/// 4 KiB buffer (the same one `recv` per request for a request that fits in it), bodies go
/// into the body buffer, and rustls reads into its own record buffer. The write buffer
/// (1,460 bytes, so that a response head and a small body leave in one `send`) is kept.
fn client_buffers() -> L4BufferSettings {
    L4BufferSettings {
        read: Some(0),
        write: None,
    }
}

/// A listener's routes: the configured ones (then the default pool, if any), or a single
/// catch-all route to the listener's own pool.
fn router_for(
    config: &config::Config,
    listener: &config::ListenerConfig,
    pools: &[Arc<pool::Pool>],
    metrics: &[Arc<metrics::PoolMetrics>],
) -> proxy::routes::Router {
    use proxy::routes::{Matcher, Route, Router};
    let route = |name: String, matcher: Matcher, pool: usize, class: config::RouteClass| {
        Route::new(
            name,
            matcher,
            pools[pool].clone(),
            pools[pool].affinity_for(class),
            metrics[pool].clone(),
            &config.hide_headers,
        )
    };
    if config.routes.is_empty() {
        let only = route(
            "-".into(),
            Matcher::default(),
            listener.pool,
            config::RouteClass::PoolDefault,
        );
        return Router::new(vec![only], 404);
    }
    let mut routes: Vec<Route> = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(format!("routes[{i}]"), Matcher::of(r), r.pool, r.class))
        .collect();
    let unmatched_status = match config.default_route {
        config::DefaultRoute::Status(status) => status,
        config::DefaultRoute::Pool { pool, class } => {
            routes.push(route("default".into(), Matcher::default(), pool, class));
            404
        }
    };
    Router::new(routes, unmatched_status)
}

/// The listening sockets for Pingora ([`sockets`]): those a service manager passed, and (when
/// `bind` is set) the proxy listeners' own, bound here, each with its `defer_accept`, and the
/// admin listener's.
fn listening_sockets(
    config: &config::Config,
    bind: bool,
) -> Result<Vec<(String, std::os::fd::RawFd)>, String> {
    let addresses: Vec<std::net::SocketAddr> = config
        .listeners
        .iter()
        .map(|l| l.addr)
        .chain(config.admin.as_ref().map(|a| a.addr))
        .collect();
    let mut sockets = sockets::assign(&sockets::passed_sockets()?, &addresses)?;
    for (addr, fd) in &sockets {
        log::info!("listener {addr}: using the socket passed as descriptor {fd}");
    }
    // A process stopping with the same config may hold an address for its grace.
    let patience = config.grace + std::time::Duration::from_secs(10);
    // The socket for `addr`: the passed one, else (with `bind`) one bound here, named `field`
    // in the error.
    let mut socket_for = |addr: std::net::SocketAddr, field: String| {
        let key = addr.to_string();
        if let Some((_, fd)) = sockets.iter().find(|(a, _)| *a == key) {
            return Ok(Some(*fd));
        }
        if !bind {
            return Ok(None);
        }
        let fd = sockets::bind(addr, patience).map_err(|e| format!("{field}: {e}"))?;
        sockets.push((key, fd));
        Ok::<_, String>(Some(fd))
    };
    for (i, listener) in config.listeners.iter().enumerate() {
        let field = format!("sticky.listeners[{i}].addr");
        if let Some(fd) = socket_for(listener.addr, field)? {
            sockets::set_defer_accept(fd, listener.defer_accept)
                .map_err(|e| format!("sticky.listeners[{i}].defer_accept: {e}"))?;
        }
    }
    // The admin listener too, so that an address it cannot have is a start error (Pingora's
    // own bind panics in the service's task and the proxy ran on without its admin API).
    if let Some(admin) = &config.admin {
        socket_for(admin.addr, "sticky.admin.addr".to_string())?;
    }
    Ok(sockets)
}

/// The whole `sticky-proxy` program: Pingora's command line, our configuration (validated
/// before Pingora's bootstrap, so `-t` covers it), the server, run forever. A Rust user with
/// extensions calls this from their own `main`.
pub fn main_with(extensions: extension::Extensions) -> ! {
    use std::process::exit;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut opt = Opt::parse_args();
    let Some(path) = opt.conf.take() else {
        eprintln!("sticky-proxy: a configuration file is required: -c <file.yaml>");
        exit(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("sticky-proxy: cannot read {path:?}: {e}");
            exit(2);
        }
    };
    let config = match config::load_str_with(&text, &extensions) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sticky-proxy: {path}: {e}");
            exit(2);
        }
    };
    // Parsed here rather than with `ServerConf::from_yaml`, whose error repeats the whole file
    // and hides the cause.
    let server_conf = match serde_yaml::from_str::<ServerConf>(&text)
        .map_err(|e| e.to_string())
        .and_then(|conf| conf.validate().map_err(|e| e.to_string()))
    {
        Ok(conf) => conf,
        Err(e) => {
            let first = e.lines().next().unwrap_or_default();
            eprintln!("sticky-proxy: {path}: Pingora settings: {first}");
            exit(2);
        }
    };
    let test_only = opt.test;
    let sockets = if test_only {
        Vec::new()
    } else {
        // A graceful upgrade (-u) takes the sockets over from the running process instead.
        match listening_sockets(&config, !opt.upgrade) {
            Ok(sockets) => sockets,
            Err(e) => {
                eprintln!("sticky-proxy: {path}: {e}");
                exit(2);
            }
        }
    };
    let (mut server, leaving) = build_server(
        Some(opt),
        server_conf,
        &config,
        &extensions,
        Arc::new(sockets),
    );
    if test_only {
        for warning in &config.warnings {
            println!("sticky-proxy: {path}: warning: {warning}");
        }
        println!("sticky-proxy: {path}: configuration OK");
    }
    server.bootstrap();
    server.run(pingora_core::server::RunArgs {
        shutdown_signal: Box::new(lifecycle::SignalsWithGrace {
            grace: config.grace,
            leaving,
        }),
    });
    exit(0)
}
