//! What a request's session records say, read once per request: the affinity cookie (past a
//! lifetime? to be sent again?), a named node (a Rust namer), a learned session id, the
//! client-IP table — in that order of precedence ([`SessionLookup::settle`]). A learned id the
//! local table misses is left for the shared store ([`SessionLookup::learned_miss`]).

use super::decision::Placement;
use super::key::RequestView;
use super::lifetime::Expiry;
use super::persistence::Affinity;
use super::sessions::SessionKey;
use super::{CookieRead, Pin, Reissue};
use crate::pool::Pool;
use http::header::COOKIE;
use std::net::IpAddr;

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
    /// The request carried an affinity cookie that named no backend (and none past a lifetime).
    pub cookie_invalid: bool,
    /// The request's affinity cookie was verified but past a lifetime: a new session.
    pub cookie_expired: Option<Expiry>,
    /// The backend the valid affinity cookie names, if the response is to send it again.
    pub cookie_reissue: Option<(usize, Reissue)>,
    /// The learned session id the request carries (hashed), and where the table had it.
    pub learned_key: Option<SessionKey>,
    pub learned_hit: Option<usize>,
    /// The client-IP table key, and where the table had it.
    pub ip_key: Option<SessionKey>,
    pub ip_hit: Option<usize>,
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

    /// Whether a placement sends the request's valid affinity cookie again (a refresh, or a
    /// change of format): only when it follows that cookie's backend and issues no new cookie
    /// anyway.
    pub fn reissue_for(&self, placement: &Placement) -> Option<Reissue> {
        let (backend, reissue) = self.cookie_reissue?;
        (placement.backend == backend && !placement.issue_cookie).then_some(reissue)
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
        let read = cookie.read(headers.get_all(COOKIE).iter().map(|v| v.as_bytes()));
        lookup.cookie_pin = read.pin();
        match read {
            CookieRead::Invalid => lookup.cookie_invalid = true,
            CookieRead::Expired(expiry) => lookup.cookie_expired = Some(expiry),
            CookieRead::Backend {
                index,
                reissue: Some(reissue),
            } => lookup.cookie_reissue = Some((index, reissue)),
            CookieRead::Absent | CookieRead::Backend { .. } => {}
        }
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
