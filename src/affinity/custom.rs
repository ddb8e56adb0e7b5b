//! The affinity layer's extension points, for code outside it to fill: a [`BackendNamer`]
//! names a request's backend directly (Stingray's "named node"; the other point, computing a
//! hash key, is [`super::key::KeySource`]), and [`ExtensionLookup`] is how the layer finds the
//! implementations a configuration names (`crate::extension::Extensions` is the registry).

use super::key::{KeySource, RequestView};
use std::borrow::Cow;
use std::sync::Arc;

/// Names the backend a request must go to (by its configured `name`), or `None` to let the
/// class's other mechanisms decide. A name that no backend has follows the failure policy.
pub trait BackendNamer: Send + Sync + std::fmt::Debug {
    /// The configured `name` of the backend the request must go to, or `None`.
    fn backend<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, str>>;
}

/// The registered extensions, by the names the configuration uses.
pub trait ExtensionLookup {
    /// The key source registered as `name` (`{ type: custom, name }`).
    fn key_source(&self, name: &str) -> Option<Arc<dyn KeySource>>;
    /// The backend namer registered as `name` (`named_node: { source }`).
    fn backend_namer(&self, name: &str) -> Option<Arc<dyn BackendNamer>>;
}
