//! Session affinity: what a request asks for, and what the proxy decides.
//!
//! [`CookieAffinity`] is one pool's cookie-insertion policy, built once at start-up: the value
//! table and the ready-made `Set-Cookie` header values for each backend. [`CookieAffinity::pinned`]
//! reads a request's `Cookie` headers and says which backend (if any) the client is pinned to;
//! [`Outcome`] names what happened to the request, for the response and the log.

// The extension points (documented API): `key` (key sources) and `custom` (backend namers).
// The rest is the engine's inside, public for the repository's tests, benchmarks and fuzz
// targets only.
#[doc(hidden)]
pub mod client_ip;
#[doc(hidden)]
pub mod cookie;
pub mod custom;
#[doc(hidden)]
pub mod decision;
#[doc(hidden)]
pub mod hash;
pub mod key;
#[doc(hidden)]
pub mod learned;
#[doc(hidden)]
pub mod lookup;
#[doc(hidden)]
pub mod persistence;
#[doc(hidden)]
pub mod registry;
#[doc(hidden)]
pub mod sessions;
#[doc(hidden)]
pub mod store;

use crate::config::CookieConfig;
use http::HeaderValue;

/// What the affinity lookup found in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pin {
    /// No affinity cookie at all.
    #[default]
    Absent,
    /// A cookie that names no backend of this pool (unknown, forged, malformed, stale).
    Invalid,
    /// A valid record naming this backend index.
    Backend(usize),
    /// A backend was required by name, and no backend has that name.
    Missing,
}

/// What happened to a request's affinity, reported in the response and the log
/// (the values of the `outcome` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    /// No decision yet, or no affinity applied (affinity off, or no key and no cookie).
    #[default]
    None,
    /// A new session: balanced, and a cookie issued.
    New,
    /// Sent to the backend its cookie names, or its hash key's home backend.
    Sticky,
    /// Its backend (cookie or hash home) could not serve; moved to another (with a new cookie
    /// when cookies are on).
    Rebalanced,
    /// The backend opted this response out of affinity; no cookie issued.
    OptedOut,
    /// No backend could serve the request.
    Failed,
}

impl Outcome {
    /// The outcome as the decision line and the `outcome` metric label write it (`new`,
    /// `sticky`, `rebalanced`, `opted_out`, `failed`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::None => "none",
            Outcome::New => "new",
            Outcome::Sticky => "sticky",
            Outcome::Rebalanced => "rebalanced",
            Outcome::OptedOut => "opted_out",
            Outcome::Failed => "failed",
        }
    }
}

/// A prebuilt `Set-Cookie` value, and the twin's if configured.
pub type SetCookie = (HeaderValue, Option<HeaderValue>);

/// One pool's cookie-insertion affinity, prepared at start-up.
#[derive(Debug)]
pub struct CookieAffinity {
    /// The cookie's settings, as configured.
    pub config: CookieConfig,
    table: cookie::CookieTable,
    /// Per backend index: the `Set-Cookie` values for plain-HTTP requests, then for TLS ones.
    set_cookie: Vec<[SetCookie; 2]>,
    /// The proxy's own cookie names (main, then twin).
    names: Vec<Box<[u8]>>,
}

impl CookieAffinity {
    /// Build for the backends of pool `pool` (names in configured order).
    pub fn new(config: &CookieConfig, pool: &str, backends: &[&str]) -> Self {
        let config = config.clone();
        let cookie_config = &config;
        let table = cookie::CookieTable::new(&cookie_config.format, pool, backends.iter().copied());
        let set_cookie = backends
            .iter()
            .map(|b| {
                let value = cookie::value_text(&cookie_config.format, pool, b);
                [false, true].map(|tls| {
                    let line = |name: &str, twin: bool| {
                        header_value(cookie::set_cookie_line(
                            cookie_config,
                            name,
                            &value,
                            twin,
                            tls,
                        ))
                    };
                    (
                        line(&cookie_config.name, false),
                        cookie_config
                            .twin_name
                            .as_ref()
                            .map(|twin| line(twin, true)),
                    )
                })
            })
            .collect();
        let names = std::iter::once(config.name.as_bytes())
            .chain(config.twin_name.as_deref().map(str::as_bytes))
            .map(Box::from)
            .collect();
        CookieAffinity {
            config,
            table,
            set_cookie,
            names,
        }
    }

    /// The names of the proxy's own cookies (main, then twin).
    pub fn cookie_names(&self) -> &[Box<[u8]>] {
        &self.names
    }

    /// Find the backend that the request's affinity cookies name.
    ///
    /// `cookie_headers` are all `Cookie` header values of the request (HTTP/2 clients may send
    /// several). The first value, main or twin cookie, that names a backend wins; if cookies are
    /// present but none is valid the result is [`Pin::Invalid`].
    pub fn pinned<'a>(&self, cookie_headers: impl Iterator<Item = &'a [u8]>) -> Pin {
        let mut pin = Pin::Absent;
        for header in cookie_headers {
            for name in self.cookie_names() {
                for value in cookie::cookie_values(header, name) {
                    match self.table.lookup(value) {
                        Some(index) => return Pin::Backend(index),
                        None => pin = Pin::Invalid,
                    }
                }
            }
        }
        pin
    }

    /// The prebuilt `Set-Cookie` values (main, twin) for a backend index, for a request that
    /// came over TLS (`Secure` unless configured off) or not.
    pub fn set_cookie_for(&self, backend: usize, tls: bool) -> Option<&SetCookie> {
        self.set_cookie
            .get(backend)
            .map(|lines| &lines[usize::from(tls)])
    }
}

fn header_value(line: String) -> HeaderValue {
    // Names and attributes were validated as visible ASCII and values are hex, so the line is
    // always a valid header value; the fallback only keeps this free of a panic path.
    HeaderValue::from_str(&line).unwrap_or_else(|_| HeaderValue::from_static(""))
}
