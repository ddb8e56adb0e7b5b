//! Per-request state ([`RequestCtx`]) and the request side of affinity: reading, once per
//! request, which backend the request's session is recorded on (inserted cookie, learned session
//! id, client-IP table).

use crate::affinity::key::RequestView;
use crate::affinity::persistence::Affinity;
use crate::affinity::sessions::SessionKey;
use crate::affinity::{Outcome, Pin};
use crate::pool::{Pool, Slots};
use http::header::COOKIE;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// Counts a request as in flight on a backend for as long as it lives.
pub struct InFlight {
    slots: Slots,
    index: usize,
}

impl InFlight {
    pub fn start(slots: &Slots, index: usize) -> Self {
        slots[index].in_flight.fetch_add(1, Relaxed);
        InFlight {
            slots: slots.clone(),
            index,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slots[self.index].in_flight.fetch_sub(1, Relaxed);
    }
}

/// What the request's session records say, read once per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionLookup {
    /// The first backend recorded for the request (named node, cookie, then learned id, then
    /// client IP): see [`SessionLookup::settle`].
    pub pin: Pin,
    /// What the affinity cookie says.
    pub cookie_pin: Pin,
    /// What a named node (a Rust namer) says, if it named one.
    pub named_pin: Option<Pin>,
    /// The request carried an affinity cookie that named no backend.
    pub cookie_invalid: bool,
    /// The learned session id the request carries (hashed), and where the table had it.
    pub learned_key: Option<SessionKey>,
    pub learned_hit: Option<usize>,
    /// The client-IP table key, and where the table had it.
    pub ip_key: Option<SessionKey>,
    pub ip_hit: Option<usize>,
}

/// Per-request state shared across the hooks.
pub struct RequestCtx {
    pub started: Instant,
    /// The request came over TLS (cookies get `Secure`, `X-Forwarded-Proto: https`).
    pub tls: bool,
    /// The TCP peer's address (canonical: IPv4-mapped addresses as IPv4), and whether it is one
    /// of the `trusted_proxies`; read once in `request_filter`.
    pub peer: Option<IpAddr>,
    pub peer_trusted: bool,
    /// Index of the matched route (`usize::MAX` until `request_filter` matches one).
    pub route: usize,
    /// The failure policy that answered, if the required backend could not serve.
    pub failure_policy: Option<&'static str>,
    /// `None` until the first `upstream_peer` call reads it.
    pub session: Option<SessionLookup>,
    /// The client's IP, resolved through trusted proxies.
    pub client_ip: Option<IpAddr>,
    /// Backends this request failed to connect to.
    pub failed: Vec<usize>,
    /// The backend of the current attempt.
    pub selected: Option<usize>,
    /// The backend of the first attempt (the decision's favourite).
    pub favoured: Option<usize>,
    /// When the current attempt's backend was chosen.
    pub upstream_started: Option<Instant>,
    /// A backend's final response header arrived.
    pub responded: bool,
    /// Its body has a `Content-Length` and is pushed to the client as it comes.
    pub held_body: bool,
    pub outcome: Outcome,
    /// Whether the response gets the affinity cookie for `selected`.
    pub issue_cookie: bool,
    pub in_flight: Option<InFlight>,
    /// This request's upgraded upstream connection, while it is registered for closing.
    pub upgraded: Option<crate::pool::upgraded::Registration>,
    /// An upgrade request's gate (its current attempt's): see [`crate::pool::upgrade_gate`].
    pub upgrade_gate: Option<std::sync::Arc<crate::pool::upgrade_gate::Gate>>,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            tls: false,
            peer: None,
            peer_trusted: false,
            route: usize::MAX,
            failure_policy: None,
            session: None,
            client_ip: None,
            failed: Vec::new(),
            selected: None,
            favoured: None,
            upstream_started: None,
            responded: false,
            held_body: false,
            outcome: Outcome::None,
            issue_cookie: false,
            in_flight: None,
            upgraded: None,
            upgrade_gate: None,
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionLookup {
    /// Set `pin` from the records, in order of precedence: a named node, then the inserted
    /// cookie, then a learned session id, then the client-IP table.
    pub fn settle(&mut self) {
        self.pin = self.cookie_pin;
        if !matches!(self.pin, Pin::Backend(_)) {
            if let Some(backend) = self.learned_hit.or(self.ip_hit) {
                self.pin = Pin::Backend(backend);
            }
        }
        if let Some(named) = self.named_pin {
            self.pin = named;
        }
    }

    /// The learned id the local table did not know, to ask the shared store about.
    pub fn learned_miss(&self) -> Option<SessionKey> {
        self.learned_key.filter(|_| self.learned_hit.is_none())
    }
}

/// Read the request's session records in the local tables: a named node first (a Rust namer),
/// then the inserted cookie, then a learned session id, then the client-IP table. Table hits
/// refresh entries. A learned id the local table misses is left for the shared store
/// ([`SessionLookup::learned_miss`]).
pub fn look_up_session(
    pool: &Pool,
    affinity: Option<&Affinity>,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    client_ip: Option<IpAddr>,
) -> SessionLookup {
    let mut lookup = SessionLookup::default();
    let Some(affinity) = affinity else {
        return lookup;
    };
    if let Some(cookie) = &affinity.cookie {
        lookup.cookie_pin = cookie.pinned(headers.get_all(COOKIE).iter().map(|v| v.as_bytes()));
        lookup.cookie_invalid = lookup.cookie_pin == Pin::Invalid;
    }
    if let Some(learned) = &affinity.learned {
        if let Some(id) = learned.request_id(uri, headers) {
            let key = crate::affinity::sessions::key_of(id);
            lookup.learned_key = Some(key);
            lookup.learned_hit = learned.local(key);
        }
    }
    if let (Some(table), Some(ip)) = (&affinity.ip_table, client_ip) {
        let key = table.key(ip);
        lookup.ip_key = Some(key);
        lookup.ip_hit = table.table.get(key);
    }
    if let Some(namer) = &affinity.named_node {
        let view = RequestView {
            uri,
            headers,
            client_ip,
        };
        if let Some(name) = namer.backend(&view) {
            lookup.named_pin = Some(pool.backend_index(&name).map_or(Pin::Missing, Pin::Backend));
        }
    }
    lookup.settle();
    lookup
}
