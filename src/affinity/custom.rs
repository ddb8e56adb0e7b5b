//! The affinity layer's extension points, for code outside it to fill: a [`BackendNamer`]
//! names a request's backend directly (Stingray's "named node"; the other point, computing a
//! hash key, is [`super::key::KeySource`]), and [`ExtensionLookup`] is how the layer finds the
//! implementations a configuration names (`crate::extension::Extensions` is the registry).

use super::key::{KeySource, RequestView};
use std::borrow::Cow;
use std::sync::Arc;

/// Names the backend a request must go to (by its configured `name`), or `None` to let the
/// class's other mechanisms decide. A name that no backend has follows the failure policy.
/// Register it with
/// [`Extensions::with_backend_namer`](crate::extension::Extensions::with_backend_namer) and
/// name it in a class's (or pool's) `affinity: { named_node: { source: <name> } }`. A named
/// node wins over every other record, even a valid cookie: a namer that reads what the client
/// sends lets clients choose their backend — use it only where that is intended.
///
/// ```
/// use std::borrow::Cow;
/// use sticky_proxy::affinity::key::RequestView;
/// use sticky_proxy::extension::BackendNamer;
///
/// /// A support engineer's `X-Backend: iis2` sends the request to `iis2`.
/// #[derive(Debug)]
/// struct XBackend;
///
/// impl BackendNamer for XBackend {
///     fn backend<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, str>> {
///         request.headers.get("x-backend")?.to_str().ok().map(Cow::Borrowed)
///     }
/// }
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-backend", "iis2".parse().unwrap());
/// let uri = http::Uri::from_static("/");
/// let view = RequestView { uri: &uri, headers: &headers, client_ip: None };
/// assert_eq!(XBackend.backend(&view).as_deref(), Some("iis2"));
/// ```
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
