//! The `sticky-proxy` binary: wiring only. Everything lives in [`sticky_proxy::main_with`]
//! (Pingora's command line → config validation → server → run); this binary registers no
//! extensions. See `examples/tenant_affinity.rs` for a binary that does.

/// mimalloc instead of the system allocator: the allocator was a fifth of the proxy's user-space
/// instructions per request in the profile (benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    sticky_proxy::main_with(sticky_proxy::extension::Extensions::default());
}
