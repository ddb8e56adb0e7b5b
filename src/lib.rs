//! sticky-proxy: an edge reverse proxy on Pingora whose specialty is session affinity — run as
//! it is (`sticky-proxy -c proxy.yaml`), configured through the YAML's `sticky:` section
//! ([`config`]), or extended in Rust.
//!
//! # Extending in Rust
//! - **Inside sticky-proxy**: register [key sources](affinity::key::KeySource) (a hash key
//!   computed in code), [backend namers](extension::BackendNamer) (a named node) and
//!   [filters](filter::Filter) (request, response and log hooks that may answer early) on
//!   [`extension::Extensions`], name them in the YAML, and call [`run`] from your `main`.
//! - **Inside your own Pingora proxy**: [`StickyAffinity`] is the affinity engine (cookies,
//!   learned sessions, client-IP tables, bounded-load hashing, failure policies, health checks)
//!   with one call per Pingora hook ([`embed`]).
//!
//! docs/extending.md in the repository walks through both, with the hook order.
//!
//! # Hook map (one request)
//! ```text
//! client → request_filter         TLS? redirect to HTTPS? which route? the route's filters
//!        → upstream_peer          affinity cookie → pinned backend if usable, else a new pick
//!        → fail_to_connect        remember the failed backend, retry → upstream_peer re-picks
//!        → upstream_request_filter strip our cookie and client-sent internal headers; X-Forwarded-*
//! backend→ response_filter        opt-out header; hide internal headers; append Set-Cookie; filters
//!        → logging                release in-flight count; one decision line; filters
//! ```
//!
//! # Stability
//! The documented items are the API. A few modules are public only so that the repository's
//! tests, benchmarks and fuzz targets can reach the engine's internals (`proxy`, `pool`,
//! `server` and most of `affinity`); they are hidden from these docs and may change at any
//! time. The rest of the engine is crate-private.

#![warn(missing_docs)]

pub(crate) mod access_log;
pub(crate) mod admin;
pub mod affinity;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
// Hidden, and `pub` only for tests/dns_discovery.rs, which drives a pool's discovery against a
// DNS server in the test process.
#[doc(hidden)]
pub mod discovery;
pub mod embed;
pub mod extension;
pub mod filter;
pub mod headers;
pub(crate) mod lifecycle;
pub(crate) mod membership;
pub(crate) mod metrics;
// Hidden, and `pub` only for the repository's own targets: `pool` for tests/allocations.rs and
// benches/hot_path.rs, `proxy` and `server` for the fuzz targets (header_stripping,
// config_loader), which drive the hooks and the runtime without sockets.
#[doc(hidden)]
pub mod pool;
#[doc(hidden)]
pub mod proxy;
#[doc(hidden)]
pub mod server;
pub mod sockets;
pub(crate) mod state_file;
pub(crate) mod tls;

pub use embed::{StickyAffinity, StickyCtx, Target};
pub(crate) use server::build_server;
pub use server::StartError;
pub use tls::TlsError;

use pingora_core::server::configuration::{Opt, ServerConf};
use std::sync::Arc;

/// The whole `sticky-proxy` program: Pingora's command line, our configuration (validated,
/// with its extension names and files checked, before Pingora's bootstrap, so `-t` covers it),
/// the server, run until it stops. A Rust user with extensions calls this from their own
/// `main`, and turns an error into the exit status as `src/main.rs` does ([`StartError::report`]).
pub fn run(extensions: extension::Extensions) -> Result<(), StartError> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut opt = Opt::parse_args();
    let Some(path) = opt.conf.take() else {
        return Err(StartError::Usage(
            "a configuration file is required: -c <file.yaml>".into(),
        ));
    };
    let in_file = |e: StartError| StartError::In(path.clone(), Box::new(e));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| StartError::Usage(format!("cannot read {path:?}: {e}")))?;
    let config = extension::load_str_with(&text, &extensions).map_err(|e| in_file(e.into()))?;
    // Parsed here rather than with `ServerConf::from_yaml`, whose error repeats the whole file
    // and hides the cause.
    let server_conf = serde_yaml::from_str::<ServerConf>(&text)
        .map_err(|e| e.to_string())
        .and_then(|conf| conf.validate().map_err(|e| e.to_string()))
        .map_err(|e| {
            let first = e.lines().next().unwrap_or_default().to_string();
            in_file(StartError::Pingora(first))
        })?;
    let test_only = opt.test;
    let sockets = if test_only {
        Vec::new()
    } else {
        // A graceful upgrade (-u) takes the sockets over from the running process instead.
        sockets::prepare(&config, !opt.upgrade).map_err(|e| in_file(StartError::Listen(e)))?
    };
    let built = build_server(
        Some(opt),
        server_conf,
        &config,
        &extensions,
        Arc::new(sockets),
    )
    .map_err(in_file)?;
    let (mut server, leaving) = (built.server, built.leaving);
    if test_only {
        for warning in &config.warnings {
            println!("sticky-proxy: {path}: warning: {warning}");
        }
        println!("sticky-proxy: {path}: configuration OK");
    }
    // `-t` exits in here; a graceful upgrade (`-u`) returns once the old process handed the
    // listening sockets over, so the state file holds what that process set until then.
    server.bootstrap();
    if let Some(state_file) = &built.state_file {
        let restored = state_file.restore();
        built.membership.restore(&restored.changes);
    }
    server.run(pingora_core::server::RunArgs {
        shutdown_signal: Box::new(lifecycle::SignalsWithGrace {
            grace: config.grace,
            leaving,
        }),
    });
    Ok(())
}
