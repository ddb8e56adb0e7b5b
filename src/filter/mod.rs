//! Filters: Rust code in sticky-proxy's request path, registered by name and enabled from the
//! YAML per listener or per route (`filters: [auth, stamp]`), without forking the proxy.
//!
//! A [`Filter`] has three hooks, each with a default that does nothing:
//!
//! | hook | when | may |
//! |---|---|---|
//! | [`Filter::request`] | once the request has a route, before any backend is chosen | read and change the request's headers; answer it ([`Flow::Answer`]: 401, 403, 429 …) or let it go on |
//! | [`Filter::response`] | a backend's final response head, after affinity applied (cookie, opt-out) | read and change the response's headers; read the [`AffinityDecision`] |
//! | [`Filter::log`] | the request is over, whoever answered | read the request, the status, the [`AffinityDecision`] |
//!
//! A request's filters are its listener's then its route's, in the listed order, for every hook.
//! The first request hook that answers ends the chain: later filters' request hooks and the
//! backend are skipped (every filter's log hook still runs). Response hooks see only backends'
//! responses, not the proxy's own answers. A filter that returns an error or panics answers
//! the client `500` with a plain body (nothing of the error is shown) and is logged with its name;
//! other requests are not affected.
//!
//! ```
//! use sticky_proxy::filter::{Answer, Filter, FilterError, FilterRequest, Flow};
//!
//! /// Refuses requests without an `X-Api-Key` header.
//! struct RequireKey;
//!
//! #[async_trait::async_trait]
//! impl Filter for RequireKey {
//!     async fn request(&self, request: &mut FilterRequest<'_>) -> Result<Flow, FilterError> {
//!         if request.header.headers.contains_key("x-api-key") {
//!             Ok(Flow::Continue)
//!         } else {
//!             Ok(Flow::Answer(Answer::new(401, "401 Unauthorized\n")))
//!         }
//!     }
//! }
//!
//! let extensions = sticky_proxy::extension::Extensions::default().with_filter("key", RequireKey);
//! assert_eq!(extensions.filter_names(), ["key"]);
//! ```

pub(crate) mod chain;

use crate::affinity::Outcome;
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};
use std::fmt;
use std::net::IpAddr;

pub(crate) use chain::{FilterChain, FilterState};

/// Rust code in the request path, registered by name with
/// [`Extensions::with_filter`](crate::extension::Extensions::with_filter). Every hook has a
/// default that does nothing, so a filter implements only the ones it needs. Hooks must not
/// block the thread (use async I/O, or read files at start-up).
#[async_trait]
pub trait Filter: Send + Sync + 'static {
    /// Runs once the request has a route, before a backend is chosen (Pingora's
    /// `request_filter`). Changes to `request.header` reach the backend (and the affinity
    /// lookup: a header added here can be a hash key). Leave `Content-Length` and
    /// `Transfer-Encoding` as they are: the client's body has not been read yet and is read by
    /// them. Default: [`Flow::Continue`].
    async fn request(&self, request: &mut FilterRequest<'_>) -> Result<Flow, FilterError> {
        let _ = request;
        Ok(Flow::Continue)
    }

    /// Runs on a backend's final response head, after the affinity cookie and opt-out were
    /// applied (Pingora's `response_filter`); not on 1xx heads or the proxy's own answers.
    /// Default: nothing.
    async fn response(&self, response: &mut FilterResponse<'_>) -> Result<(), FilterError> {
        let _ = response;
        Ok(())
    }

    /// Runs when the request is over, whoever answered it (Pingora's `logging`). A panic here
    /// is logged and otherwise ignored (the answer has gone out). Default: nothing.
    fn log(&self, exchange: &Exchange<'_>) {
        let _ = exchange;
    }
}

/// What a filter's request hook decided.
#[derive(Debug)]
pub enum Flow {
    /// Go on: the next filter, then the backend.
    Continue,
    /// Answer the request now; no backend sees it.
    Answer(Answer),
}

/// Headers of the proxy's own answers that a filter's [`Answer`] cannot set.
const PROXY_OWNED: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "cache-control",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
];

/// A filter's own answer to a request: a status, a body, headers. Never cached
/// (`Cache-Control: no-store`), the connection not reused; `text/plain; charset=utf-8` unless a
/// `Content-Type` header is given.
///
/// ```
/// use sticky_proxy::filter::Answer;
///
/// let answer = Answer::new(429, "429 Too Many Requests\n").header("retry-after", "10");
/// assert_eq!(answer.status(), 429);
/// ```
#[derive(Debug, Clone)]
pub struct Answer {
    status: u16,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Answer {
    /// An answer with `status` (a final status, 200 to 599; another one makes the filter fail)
    /// and `body`.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Answer {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// Add a header. A name or value that is not valid in HTTP is left out, with a warning; so
    /// is a header the proxy writes itself for its own answers (the framing, `Content-Length`,
    /// `Transfer-Encoding`, the hop-by-hop fields, and `Cache-Control`: an answer from the
    /// proxy is never cached), so that an answer's head always agrees with its body.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(_)) if PROXY_OWNED.contains(&name.as_str()) => {
                log::warn!("a filter's answer: header {name:?} left out (the proxy writes it)")
            }
            (Ok(name), Ok(value)) => self.headers.push((name, value)),
            _ => log::warn!("a filter's answer: header {name:?} left out (not valid HTTP)"),
        }
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The headers added with [`Answer::header`].
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
}

/// Why a filter failed. The client gets a plain `500` (this text is only logged). Anything that
/// converts into a boxed error converts into it, so `?` works on I/O errors and
/// `Err("why".into())` on strings.
pub struct FilterError(Box<dyn std::error::Error + Send + Sync>);

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for FilterError {
    fn from(e: E) -> Self {
        FilterError(e.into())
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who sent a request.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The client's IP: the TCP peer's, or the one a trusted proxy in front forwarded.
    pub ip: Option<IpAddr>,
    /// The request came over TLS (ours, or a trusted proxy's).
    pub tls: bool,
}

/// The request as the request hook sees it.
#[non_exhaustive]
pub struct FilterRequest<'a> {
    /// The request head (method, URI, headers); changes reach the backend.
    pub header: &'a mut RequestHeader,
    /// Who sent it.
    pub client: ClientInfo,
    /// Where it goes: pool, route, class (no backend yet).
    pub route: RouteNames<'a>,
    /// Per-request values of any type, shared by the request's filters from hook to hook
    /// (a tenant found in the request hook, read in the log hook).
    pub data: &'a mut http::Extensions,
}

/// The response as the response hook sees it.
#[non_exhaustive]
pub struct FilterResponse<'a> {
    /// The response head from the backend, as the client will get it; changes reach the client.
    pub header: &'a mut ResponseHeader,
    /// The client's request (as the request hooks left it).
    pub request: &'a RequestHeader,
    /// What affinity decided for the request, read-only.
    pub affinity: AffinityDecision<'a>,
    /// The values the request's filters stored.
    pub data: &'a mut http::Extensions,
}

/// A finished request as the log hook sees it.
#[non_exhaustive]
pub struct Exchange<'a> {
    /// The client's request.
    pub request: &'a RequestHeader,
    /// The status the client got (0: none, the connection was closed).
    pub status: u16,
    /// What affinity decided for the request.
    pub affinity: AffinityDecision<'a>,
    /// The filter that answered the request (or failed), if one did.
    pub answered_by: Option<&'a str>,
    /// The values the request's filters stored.
    pub data: &'a http::Extensions,
}

/// The names of where a request goes, as the configuration gives them (and as the decision line
/// logs them).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RouteNames<'a> {
    /// The pool.
    pub pool: &'a str,
    /// The route: `routes[i]`, `default`, or `-` (a listener's own pool).
    pub route: &'a str,
    /// The persistence class: its name, `pool` (the pool's own affinity) or `-` (none).
    pub class: &'a str,
}

/// What affinity decided for a request: a read-only value for filters' response and log hooks,
/// and for programs that embed the engine
/// ([`StickyAffinity::decision`](crate::embed::StickyAffinity::decision)). Backend names are the
/// configured ones; they are for logs and metrics, not for the client.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AffinityDecision<'a> {
    /// What happened to the request's session (`new`, `sticky`, `rebalanced`, …).
    pub outcome: Outcome,
    /// The backend that was chosen (the last attempt's), if one was.
    pub backend: Option<&'a str>,
    /// The backend of the first decision (Stingray's favoured node).
    pub favoured: Option<&'a str>,
    /// The backend the request's session records named, usable or not.
    pub required: Option<&'a str>,
    /// The response carries (or will carry) a new affinity cookie for `backend`.
    pub issue_cookie: bool,
    /// The session's backend could not serve and the class's failure policy answered.
    pub refused: bool,
    /// Where the request went.
    pub route: RouteNames<'a>,
}
