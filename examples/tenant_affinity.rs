//! A sticky-proxy binary with two Rust extensions, referred to by name from the YAML:
//!
//! - a key source `tenant`: the tenant is the part of the `X-Tenant` header before the first
//!   dot (`acme.eu-west` → `acme`), so every host of one tenant lands on the same backend —
//!   `hash: { sources: [{ type: custom, name: tenant }] }`;
//! - a backend namer `x-backend`: the `X-Backend` header names the backend outright (a
//!   "named node"), e.g. for a support engineer reproducing a bug on one server —
//!   `named_node: { source: x-backend }`. A name no backend has follows the class's failure
//!   policy.
//!
//! Run it like the stock binary: `cargo run --example tenant_affinity -- -c proxy.yaml`.

use std::borrow::Cow;
use sticky_proxy::affinity::key::{KeySource, RequestView};
use sticky_proxy::extension::{BackendNamer, Extensions};

/// The tenant part of `X-Tenant`.
#[derive(Debug)]
struct Tenant;

impl KeySource for Tenant {
    fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
        let value = request.headers.get("x-tenant")?.as_bytes();
        let tenant = value.split(|b| *b == b'.').next()?;
        (!tenant.is_empty()).then_some(Cow::Borrowed(tenant))
    }
}

/// The backend named by `X-Backend`.
#[derive(Debug)]
struct XBackend;

impl BackendNamer for XBackend {
    fn backend<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, str>> {
        let name = request.headers.get("x-backend")?.to_str().ok()?;
        Some(Cow::Borrowed(name))
    }
}

/// As the stock binary (`src/main.rs`): mimalloc, a fifth of the user-space instructions less
/// than the system allocator (benches/README.md). A program of your own should keep these lines.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let extensions = Extensions::default()
        .with_key_source("tenant", Tenant)
        .with_backend_namer("x-backend", XBackend);
    match sticky_proxy::run(extensions) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
