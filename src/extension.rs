//! The Rust extension point: compute the affinity key, or name the backend, in Rust.
//!
//! Register implementations under names, then refer to the names from the YAML:
//! a [`KeySource`] as a hash source `- { type: custom, name: <name> }` (Stingray's "universal"
//! persistence), a [`BackendNamer`] as a class's `named_node: { source: <name> }` (Stingray's
//! "named node"). The built-in sources implement the same [`KeySource`] trait.
//!
//! ```no_run
//! use std::borrow::Cow;
//! use sticky_proxy::affinity::key::{KeySource, RequestView};
//! use sticky_proxy::extension::Extensions;
//!
//! /// The tenant is the part of the `X-Tenant` header before the first dot.
//! #[derive(Debug)]
//! struct Tenant;
//!
//! impl KeySource for Tenant {
//!     fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
//!         let value = request.headers.get("x-tenant")?.as_bytes();
//!         let tenant = value.split(|b| *b == b'.').next()?;
//!         (!tenant.is_empty()).then_some(Cow::Borrowed(tenant))
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     match sticky_proxy::run(Extensions::default().with_key_source("tenant", Tenant)) {
//!         Ok(()) => std::process::ExitCode::SUCCESS,
//!         Err(e) => e.report(), // "sticky-proxy: <file>: <field>: …" on stderr, status 2
//!     }
//! }
//! ```

use crate::affinity::custom::ExtensionLookup;
use crate::affinity::key::KeySource;
use crate::config::{AffinityConfig, Config, ConfigError, KeySourceConfig};
use crate::filter::Filter;
use std::collections::HashMap;
use std::sync::Arc;

pub use crate::affinity::custom::BackendNamer;

/// The registered extensions, by name: key sources, backend namers and filters. Build it
/// with the `with_*` calls, then hand it to [`crate::run`] (the stock binary's `main` with
/// your extensions) or to [`StickyAffinity::from_yaml_with`](crate::StickyAffinity::from_yaml_with).
/// A configuration that names an extension nobody registered is refused, the error naming
/// the field.
///
/// ```
/// use std::borrow::Cow;
/// use sticky_proxy::affinity::key::{KeySource, RequestView};
/// use sticky_proxy::extension::{load_str_with, BackendNamer, Extensions};
/// use sticky_proxy::filter::Filter;
///
/// #[derive(Debug)]
/// struct Tenant;
/// impl KeySource for Tenant {
///     fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
///         request.headers.get("x-tenant").map(|v| Cow::Borrowed(v.as_bytes()))
///     }
/// }
///
/// #[derive(Debug)]
/// struct XBackend;
/// impl BackendNamer for XBackend {
///     fn backend<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, str>> {
///         request.headers.get("x-backend")?.to_str().ok().map(Cow::Borrowed)
///     }
/// }
///
/// struct Noop; // every hook's default: nothing
/// impl Filter for Noop {}
///
/// let extensions = Extensions::default()
///     .with_key_source("tenant", Tenant)
///     .with_backend_namer("x-backend", XBackend)
///     .with_filter("noop", Noop);
/// assert_eq!(extensions.filter_names(), ["noop"]);
///
/// let yaml = r#"
/// sticky:
///   listeners: [{ addr: "127.0.0.1:6188", filters: [noop, auth] }]
///   pools:
///     - name: web
///       backends: [{ name: iis1, addr: "127.0.0.1:9001" }]
///       affinity: { hash: { sources: [{ type: custom, name: tenant }] } }
/// "#;
/// let error = load_str_with(yaml, &extensions).unwrap_err().to_string();
/// assert!(error.starts_with("sticky.listeners[0].filters[1]: no filter registered as \"auth\""));
/// assert!(load_str_with(&yaml.replace(", auth", ""), &extensions).is_ok());
/// ```
#[derive(Clone, Default)]
pub struct Extensions {
    key_sources: HashMap<String, Arc<dyn KeySource>>,
    namers: HashMap<String, Arc<dyn BackendNamer>>,
    filters: HashMap<String, Arc<dyn Filter>>,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("key_sources", &self.key_source_names())
            .field("namers", &self.backend_namer_names())
            .field("filters", &self.filter_names())
            .finish()
    }
}

impl Extensions {
    /// Register a key source as `{ type: custom, name: <name> }`.
    pub fn with_key_source(mut self, name: &str, source: impl KeySource + 'static) -> Self {
        self.key_sources.insert(name.to_string(), Arc::new(source));
        self
    }

    /// Register a backend namer as `named_node: { source: <name> }`.
    pub fn with_backend_namer(mut self, name: &str, namer: impl BackendNamer + 'static) -> Self {
        self.namers.insert(name.to_string(), Arc::new(namer));
        self
    }

    /// Register a filter as `filters: [<name>]` of a listener or a route
    /// ([`crate::filter`]: the hooks, their order, what a failing filter does).
    pub fn with_filter(mut self, name: &str, filter: impl Filter) -> Self {
        self.filters.insert(name.to_string(), Arc::new(filter));
        self
    }

    /// The registered key sources' names, sorted (for error messages).
    pub fn key_source_names(&self) -> Vec<&str> {
        sorted(self.key_sources.keys())
    }

    /// The registered backend namers' names, sorted.
    pub fn backend_namer_names(&self) -> Vec<&str> {
        sorted(self.namers.keys())
    }

    /// The registered filters' names, sorted.
    pub fn filter_names(&self) -> Vec<&str> {
        sorted(self.filters.keys())
    }

    /// The filter registered as `name`.
    pub fn filter(&self, name: &str) -> Option<Arc<dyn Filter>> {
        self.filters.get(name).cloned()
    }
}

fn sorted<'a>(names: impl Iterator<Item = &'a String>) -> Vec<&'a str> {
    let mut names: Vec<&str> = names.map(String::as_str).collect();
    names.sort_unstable();
    names
}

impl ExtensionLookup for Extensions {
    fn key_source(&self, name: &str) -> Option<Arc<dyn KeySource>> {
        self.key_sources.get(name).cloned()
    }

    fn backend_namer(&self, name: &str) -> Option<Arc<dyn BackendNamer>> {
        self.namers.get(name).cloned()
    }
}

/// [`crate::config::load_str`], then [`check`] the extension names it uses against
/// `extensions`: the configuration a program with these extensions can run.
pub fn load_str_with(yaml: &str, extensions: &Extensions) -> Result<Config, ConfigError> {
    let config = crate::config::load_str(yaml)?;
    check(&config, extensions)?;
    Ok(config)
}

/// Every custom key source, backend namer and filter the configuration names (pools' own
/// affinity and every class, used by a route or not; every listener's and route's `filters`)
/// must be registered; the error names the field.
pub fn check(config: &Config, extensions: &Extensions) -> Result<(), ConfigError> {
    let listeners = config.listeners.iter().enumerate();
    let listeners = listeners.map(|(i, l)| (format!("sticky.listeners[{i}]"), &l.filters));
    let routes = config.routes.iter().enumerate();
    let routes = routes.map(|(i, r)| (format!("sticky.routes[{i}]"), &r.filters));
    for (field, names) in listeners.chain(routes) {
        if let Some((j, name)) = names
            .iter()
            .enumerate()
            .find(|(_, n)| !extensions.filters.contains_key(n.as_str()))
        {
            return Err(ConfigError::new(
                format!("{field}.filters[{j}]"),
                format!(
                    "no filter registered as {name:?} (registered: {:?})",
                    extensions.filter_names()
                ),
            ));
        }
    }
    let pools = config.pools.iter().enumerate().filter_map(|(i, p)| {
        let affinity = p.affinity.as_ref()?;
        Some((format!("sticky.pools[{i}].affinity"), affinity))
    });
    let classes = config.classes.iter().filter_map(|c| {
        let affinity = c.affinity.as_ref()?;
        Some((format!("sticky.classes.{}", c.name), affinity))
    });
    for (field, affinity) in pools.chain(classes) {
        check_affinity(&field, affinity, extensions)?;
    }
    Ok(())
}

fn check_affinity(
    field: &str,
    affinity: &AffinityConfig,
    extensions: &Extensions,
) -> Result<(), ConfigError> {
    if let Some(source) = &affinity.named_node {
        if extensions.backend_namer(source).is_none() {
            return Err(ConfigError::new(
                format!("{field}.named_node.source"),
                format!(
                    "no backend namer registered as {source:?} (registered: {:?})",
                    extensions.backend_namer_names()
                ),
            ));
        }
    }
    let sources = affinity.hash.iter().flat_map(|h| h.sources.iter());
    for (i, source) in sources.enumerate() {
        if let KeySourceConfig::Custom { name } = source {
            if extensions.key_source(name).is_none() {
                return Err(ConfigError::new(
                    format!("{field}.hash.sources[{i}].name"),
                    format!(
                        "no key source registered as {name:?} (registered: {:?})",
                        extensions.key_source_names()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Filter;

    struct Nothing;
    impl Filter for Nothing {}

    #[test]
    fn every_filter_a_listener_or_route_names_must_be_registered() {
        let yaml = "sticky:\n  listeners: [{ addr: \"127.0.0.1:6188\", filters: [a] }]\n  pools:\n    - name: web\n      backends: [{ name: iis1, addr: \"127.0.0.1:9001\" }]\n  routes: [{ pool: web, filters: [a, b] }]\n";
        let config = crate::config::load_str(yaml).unwrap();
        let none = Extensions::default();
        assert_eq!(
            check(&config, &none).unwrap_err().to_string(),
            "sticky.listeners[0].filters[0]: no filter registered as \"a\" (registered: [])"
        );
        let only_a = Extensions::default().with_filter("a", Nothing);
        assert_eq!(
            check(&config, &only_a).unwrap_err().to_string(),
            "sticky.routes[0].filters[1]: no filter registered as \"b\" (registered: [\"a\"])"
        );
        let both = only_a.with_filter("b", Nothing);
        assert!(check(&config, &both).is_ok());
        assert_eq!(both.filter_names(), ["a", "b"]);
    }
}
