//! The `sticky-proxy` binary: wiring only, and the one place that turns a start-up error into
//! the exit status. Everything else lives in [`sticky_proxy::run`] (Pingora's command line →
//! config validation → server → run); this binary registers no extensions. See
//! `examples/tenant_affinity.rs` for a binary that does.

use std::process::ExitCode;

/// mimalloc instead of the system allocator: the allocator was a fifth of the proxy's user-space
/// instructions per request in the profile (benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match sticky_proxy::run(sticky_proxy::extension::Extensions::default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
