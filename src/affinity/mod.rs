//! Session affinity: what a request asks for, and what the proxy decides.
//!
//! [`CookieAffinity`] is one pool's cookie-insertion policy, built once at start-up: the value
//! table and the ready-made `Set-Cookie` header values for each backend (with lifetimes: the
//! templates dated values are written into). [`CookieAffinity::read`] reads a request's `Cookie`
//! headers and says which backend (if any) the client is pinned to, and whether the response
//! sends the cookie again; [`Outcome`] names what happened to the request, for the response and
//! the log.

// The extension points (documented API): `key` (key sources) and `custom` (backend namers).
// The hidden modules are the engine's inside, `pub` only because the repository's own targets
// reach them: client_ip (fuzz/header_stripping, key_extraction), cookie and lifetime
// (tests/cookie_lifetimes, properties, allocations, benches/hot_path, fuzz/cookie_codec),
// decision and persistence (tests/allocations, benches/hot_path), learned (tests/properties,
// fuzz/key_extraction), sessions (tests/common/redis_store, benches/hot_path,
// fuzz/key_extraction, examples/table_memory), store (tests/redis_cluster). The others are
// crate-private.
#[doc(hidden)]
pub mod client_ip;
#[doc(hidden)]
pub mod cookie;
pub mod custom;
#[doc(hidden)]
pub mod decision;
pub(crate) mod hash;
pub mod key;
#[doc(hidden)]
pub mod learned;
#[doc(hidden)]
pub mod lifetime;
pub(crate) mod lookup;
#[doc(hidden)]
pub mod persistence;
pub(crate) mod registry;
#[doc(hidden)]
pub mod sessions;
#[doc(hidden)]
pub mod store;

use crate::config::CookieConfig;
use arc_swap::ArcSwap;
use http::HeaderValue;
use lifetime::{DatedIssue, Dates, Expiry, Judgement};

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

/// What a request's affinity cookies say ([`CookieAffinity::read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CookieRead {
    /// No affinity cookie at all.
    #[default]
    Absent,
    /// Cookies, none valid: unknown, forged, malformed, or with dates no instance writes.
    Invalid,
    /// Cookies, none valid, and at least one verified but past a lifetime: a new session.
    Expired(Expiry),
    /// A valid cookie naming backend `index`; `reissue`: the response sends it again.
    Backend {
        /// The backend's index in its pool.
        index: usize,
        /// `Some`: the response sends the cookie again, and why.
        reissue: Option<Reissue>,
    },
}

/// Why a valid cookie is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reissue {
    /// A dated cookie due for its refresh: the same first-issue date, refreshed now.
    Refresh {
        /// The value's first-issue date (Unix seconds), kept in the refreshed value.
        issued: u32,
    },
    /// A value in the pool's other format: a date-less one where lifetimes apply (dated from
    /// now on), a dated one where they no longer do (date-less from now on).
    Convert,
}

impl Reissue {
    /// The first-issue date the new cookie keeps (`None`: now).
    pub fn issued(self) -> Option<u32> {
        match self {
            Reissue::Refresh { issued } => Some(issued),
            Reissue::Convert => None,
        }
    }
}

impl CookieRead {
    /// The pin it amounts to: an expired cookie is as good as an invalid one (a new session).
    pub fn pin(self) -> Pin {
        match self {
            CookieRead::Absent => Pin::Absent,
            CookieRead::Invalid | CookieRead::Expired(_) => Pin::Invalid,
            CookieRead::Backend { index, .. } => Pin::Backend(index),
        }
    }

    /// Of two cookies that name no backend, the one to report: expired over invalid.
    fn worse(self, other: CookieRead) -> CookieRead {
        match (self, other) {
            (CookieRead::Expired(_), _) => self,
            (_, CookieRead::Absent) => self,
            _ => other,
        }
    }
}

/// One pool's cookie-insertion affinity, prepared at start-up; its per-backend part is built
/// again when the pool's backends change at run time ([`CookieAffinity::backends_changed`]).
#[derive(Debug)]
pub struct CookieAffinity {
    /// The cookie's settings, as configured.
    pub config: CookieConfig,
    /// The pool's name (part of `keyed` values).
    pool: String,
    /// The proxy's own cookie names (main, then twin).
    names: Vec<Box<[u8]>>,
    /// Everything that depends on the pool's backends.
    backends: ArcSwap<CookieBackends>,
}

/// The part of a [`CookieAffinity`] made for one list of backend names.
#[derive(Debug)]
struct CookieBackends {
    table: cookie::CookieTable,
    /// Per backend index: the `Set-Cookie` values for plain-HTTP requests, then for TLS ones.
    set_cookie: Vec<[SetCookie; 2]>,
    /// With lifetimes: their rules and the dated `Set-Cookie` templates.
    dated: Option<DatedIssue>,
}

impl CookieBackends {
    fn new(config: &CookieConfig, pool: &str, backends: &[&str]) -> Self {
        let table = cookie::CookieTable::new(&config.format, pool, backends.iter().copied());
        let set_cookie = backends
            .iter()
            .map(|b| {
                let value = cookie::value_text(&config.format, pool, b);
                [false, true].map(|tls| {
                    let line = |name: &str, twin: bool| {
                        header_value(cookie::set_cookie_line(config, name, &value, twin, tls))
                    };
                    (
                        line(&config.name, false),
                        config.twin_name.as_ref().map(|twin| line(twin, true)),
                    )
                })
            })
            .collect();
        let dated = match (&config.lifetimes, table.dated()) {
            (Some(lifetimes), Some(ids)) => Some(DatedIssue::new(config, lifetimes, ids)),
            _ => None,
        };
        CookieBackends {
            table,
            set_cookie,
            dated,
        }
    }
}

impl CookieAffinity {
    /// Build for the backends of pool `pool` (names by backend index).
    pub fn new(config: &CookieConfig, pool: &str, backends: &[&str]) -> Self {
        let names = std::iter::once(config.name.as_bytes())
            .chain(config.twin_name.as_deref().map(str::as_bytes))
            .map(Box::from)
            .collect();
        CookieAffinity {
            backends: ArcSwap::from_pointee(CookieBackends::new(config, pool, backends)),
            config: config.clone(),
            pool: pool.to_string(),
            names,
        }
    }

    /// The pool's backends changed at run time: `backends` are their names by index (removed
    /// ones included, so that their cookies still name them).
    pub fn backends_changed(&self, backends: &[&str]) {
        let built = CookieBackends::new(&self.config, &self.pool, backends);
        self.backends.store(std::sync::Arc::new(built));
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
        self.read(cookie_headers).pin()
    }

    /// What the request's affinity cookies say, by the Unix clock: the first value (main or
    /// twin cookie) that names a backend wins; if none does, an expired one is reported over an
    /// invalid one. The clock is read only for a dated value under lifetimes.
    pub fn read<'a>(&self, cookie_headers: impl Iterator<Item = &'a [u8]>) -> CookieRead {
        self.read_with_clock(cookie_headers, lifetime::unix_now)
    }

    /// [`CookieAffinity::read`] with the clock given (Unix seconds).
    pub fn read_with_clock<'a>(
        &self,
        cookie_headers: impl Iterator<Item = &'a [u8]>,
        clock: impl Fn() -> u32,
    ) -> CookieRead {
        let mut now = None;
        let mut read = CookieRead::Absent;
        for header in cookie_headers {
            for name in self.cookie_names() {
                for value in cookie::cookie_values(header, name) {
                    match self.read_value(value, || *now.get_or_insert_with(&clock)) {
                        found @ CookieRead::Backend { .. } => return found,
                        other => read = read.worse(other),
                    }
                }
            }
        }
        read
    }

    /// One value: date-less values by the table; dated ones by their tag, id and dates.
    fn read_value(&self, value: &[u8], mut now: impl FnMut() -> u32) -> CookieRead {
        let backends = self.backends.load();
        let backend = |index, reissue| CookieRead::Backend { index, reissue };
        let dated_value = || backends.table.dated().and_then(|ids| ids.lookup(value));
        let Some(dated) = &backends.dated else {
            return match backends.table.lookup(value) {
                Some(index) => backend(index, None),
                // Lifetimes switched off since it was issued: it still pins, and is replaced.
                None => match dated_value() {
                    Some((index, _)) => backend(index, Some(Reissue::Convert)),
                    None => CookieRead::Invalid,
                },
            };
        };
        if let Some((index, dates)) = dated_value() {
            return match dated.lifetimes.judge(dates, now()) {
                Judgement::Current => backend(index, None),
                Judgement::Refresh => backend(
                    index,
                    Some(Reissue::Refresh {
                        issued: dates.issued,
                    }),
                ),
                Judgement::Expired(expiry) => CookieRead::Expired(expiry),
                Judgement::Impossible => CookieRead::Invalid,
            };
        }
        // A date-less value from before the lifetimes: it pins, and gets dates.
        match backends
            .table
            .lookup(value)
            .filter(|_| dated.accept_undated)
        {
            Some(index) => backend(index, Some(Reissue::Convert)),
            None => CookieRead::Invalid,
        }
    }

    /// The prebuilt `Set-Cookie` values (main, twin) for a backend index, for a request that
    /// came over TLS (`Secure` unless configured off) or not.
    pub fn set_cookie_for(&self, backend: usize, tls: bool) -> Option<SetCookie> {
        self.backends
            .load()
            .set_cookie
            .get(backend)
            .map(|lines| lines[usize::from(tls)].clone())
    }

    /// The `Set-Cookie` values (main, twin) that give `backend` to the client: without
    /// lifetimes the prebuilt ones; with them a dated value, refreshed now and first issued at
    /// `issued` (`None`: now), written into the prebuilt line (one allocation per line).
    pub fn issue(&self, backend: usize, tls: bool, issued: Option<u32>) -> Option<SetCookie> {
        let backends = self.backends.load();
        let (Some(dated), Some(ids)) = (&backends.dated, backends.table.dated()) else {
            return self.set_cookie_for(backend, tls);
        };
        let now = lifetime::unix_now();
        let dates = Dates {
            // (A first issue within the clock tolerance in the future is taken as now.)
            issued: issued.map_or(now, |issued| issued.min(now)),
            refreshed: now,
        };
        dated.lines(ids, backend, tls, dates)
    }
}

fn header_value(line: String) -> HeaderValue {
    // Names and attributes were validated as visible ASCII and values are hex, so the line is
    // always a valid header value; the fallback only keeps this free of a panic path.
    HeaderValue::from_str(&line).unwrap_or_else(|_| HeaderValue::from_static(""))
}
