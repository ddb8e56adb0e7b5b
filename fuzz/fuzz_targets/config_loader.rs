//! The config loader (`sticky_proxy::config::load_str`, `extension::load_str_with`) on arbitrary YAML text,
//! then the start-up code that turns an accepted config into run-time state (`Pool::new`, the
//! cookie tables and `Set-Cookie` lines, `Route` / `Router`).
//!
//! Invariants:
//! 1. Never a panic: any text is a config or a `ConfigError`.
//! 2. An error names a field (`sticky…`, or `yaml` when the text is not YAML at all) and is one
//!    line (it is printed as `sticky-proxy: <file>: <error>`).
//! 3. Registering extensions never turns an accepted config into an error.
//! 4. An accepted config builds without a panic, and every cookie it configures works: each
//!    backend's value resolves to that backend (no two backends share a value), and each
//!    prebuilt `Set-Cookie` line is a valid header value that parses back to the configured
//!    name, the backend's value and the configured path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::borrow::Cow;
use sticky_proxy::affinity::cookie::{value_text, CookieTable};
use sticky_proxy::affinity::key::{KeySource, RequestView};
use sticky_proxy::config::{load_str, ConfigError};
use sticky_proxy::extension::load_str_with;
use sticky_proxy::extension::Extensions;

#[derive(Debug)]
struct Tenant;

impl KeySource for Tenant {
    fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
        Some(Cow::Borrowed(request.headers.get("x-tenant")?.as_bytes()))
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let plain = load_str(&text);
    let extensions = Extensions::default().with_key_source("tenant", Tenant);
    let extended = load_str_with(&text, &extensions);
    for result in [&plain, &extended] {
        if let Err(e) = result {
            check_error(e);
        }
    }
    if plain.is_ok() {
        assert!(
            extended.is_ok(),
            "extensions broke an accepted config: {:?}",
            extended.err()
        );
    }
    if let Ok(config) = extended {
        check_config(&config, &extensions);
    }
});

fn check_error(e: &ConfigError) {
    assert!(
        e.field.starts_with("sticky") || e.field == "yaml",
        "an error that names no field: {e}"
    );
    let line = e.to_string();
    assert!(
        !line.contains('\n') && !line.contains('\r'),
        "a multi-line error: {line:?}"
    );
}

fn check_config(config: &sticky_proxy::config::Config, extensions: &Extensions) {
    for pool_config in &config.pools {
        if let Some(cookie) = pool_config
            .affinity
            .as_ref()
            .and_then(|a| a.cookie.as_ref())
        {
            let names: Vec<&str> = pool_config
                .backends
                .iter()
                .map(|b| b.name.as_str())
                .collect();
            let table = CookieTable::new(&cookie.format, &pool_config.name, names.iter().copied());
            for (i, name) in names.iter().enumerate() {
                let value = value_text(&cookie.format, &pool_config.name, name);
                assert_eq!(
                    table.lookup(value.as_bytes()),
                    Some(i),
                    "backend {name:?}'s cookie names another backend"
                );
                for (cookie_name, twin) in std::iter::once((&cookie.name, false))
                    .chain(cookie.twin_name.iter().map(|t| (t, true)))
                {
                    for tls in [false, true] {
                        let line = sticky_proxy::affinity::cookie::set_cookie_line(
                            cookie,
                            cookie_name,
                            &value,
                            twin,
                            tls,
                        );
                        assert!(
                            http::HeaderValue::from_str(&line).is_ok(),
                            "not a header value: {line:?}"
                        );
                        let parsed = cookie::Cookie::parse(line.as_str())
                            .unwrap_or_else(|e| panic!("{line:?} does not parse: {e}"));
                        assert_eq!(parsed.name(), cookie_name.as_str());
                        assert_eq!(parsed.value(), value.as_str());
                        assert_eq!(parsed.path(), Some(cookie.path.as_str()), "{line:?}");
                        if let Some(domain) = &cookie.domain {
                            let domain = domain.trim_start_matches('.');
                            assert_eq!(parsed.domain(), Some(domain), "{line:?}");
                        }
                    }
                }
            }
        }
    }
    // What `build_server` does with the config, short of a Pingora server: pools (health
    // services built, not run), their affinities, metrics, every listener's routes. A TLS file
    // the config names may not exist: that is a start-up error, never a panic.
    if let Ok(runtime) = sticky_proxy::server::Runtime::build(&config, extensions) {
        for listener in &config.listeners {
            let _ = runtime.wiring.router_for(&config, listener);
        }
    }
}
