//! The `sticky-proxy` binary: wiring only. Everything lives in [`sticky_proxy::main_with`]
//! (Pingora's command line → config validation → server → run); this binary registers no
//! extensions. See `examples/tenant_affinity.rs` for a binary that does.

fn main() {
    sticky_proxy::main_with(sticky_proxy::extension::Extensions::default());
}
