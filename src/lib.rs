//! sticky-proxy: an edge reverse proxy on Pingora whose specialty is session affinity.
//!
//! # Architecture
//! One YAML file configures Pingora (its own keys) and us (the `sticky:` section, see
//! [`config`]). [`build_server`] turns the validated [`config::Config`] into a Pingora
//! [`Server`]: one proxy service per listener, each serving one [`pool::Pool`], plus one
//! background health-check service per pool that has a health check.
//!
//! # Hook map (one request)
//! ```text
//! client → upstream_peer          affinity cookie → pinned backend if usable, else a new pick
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
pub mod demo;
pub mod headers;
pub mod lifecycle;
pub mod metrics;
pub mod pool;
pub mod proxy;

use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use std::sync::Arc;

/// Build the Pingora server for a validated configuration: pools (with their health-check
/// services) and one proxy service per listener. Nothing listens until the server runs.
pub fn build_server(opt: Option<Opt>, server_conf: ServerConf, config: &config::Config) -> Server {
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
    });
    let metrics = Arc::new(metrics::Metrics::new());
    let mut pools = Vec::with_capacity(config.pools.len());
    for pool_config in &config.pools {
        let (pool, health_service) = pool::Pool::new(pool_config);
        if let Some(service) = health_service {
            server.add_boxed_service(service);
        }
        pools.push(pool);
    }
    let pool_metrics: Vec<Arc<metrics::PoolMetrics>> = pools
        .iter()
        .map(|p| Arc::new(metrics.for_pool(p)))
        .collect();
    for listener in &config.listeners {
        let pool = pools[listener.pool].clone();
        let handles = pool_metrics[listener.pool].clone();
        let name = format!("proxy {} → pool {}", listener.addr, pool.name);
        let mut service = pingora_proxy::http_proxy_service_with_name(
            &server.configuration,
            proxy::StickyProxy::new(pool, settings.clone(), handles),
            &name,
        );
        service.add_tcp(&listener.addr.to_string());
        server.add_service(service);
    }
    if let Some(admin) = &config.admin {
        let app = admin::AdminApp::new(
            pools.clone(),
            metrics.clone(),
            admin.token.clone(),
            admin.allow_remote,
            leaving.clone(),
        );
        let mut service =
            pingora_core::services::listening::Service::new(format!("admin {}", admin.addr), app);
        service.add_tcp(&admin.addr.to_string());
        server.add_service(service);
    }
    server
}
