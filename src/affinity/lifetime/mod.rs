//! Cookie lifetimes enforced by the proxy (HAProxy `maxidle` / `maxlife`): the dated `keyed`
//! value, its codec, and the rules that say whether a dated cookie still pins, is due for a
//! refresh, or starts a new session. Pure functions of the value, the secret and the clock
//! reading they are given.
//!
//! A dated value is 83 characters, `<id>.<issued>.<refreshed>.<tag>`:
//! - `id`: 32 hex digits, the first 16 bytes of
//!   `HMAC-SHA256(secret, "sticky-proxy/v2/id" 0 pool 0 backend)`: it names the backend without
//!   showing its name or address, and it is not the date-less value, so a dated value stripped
//!   of its dates is no valid date-less one (nobody extends a lifetime by cutting the dates off);
//! - `issued`, `refreshed`: 8 hex digits each, Unix seconds (UTC) of the first issue and of the
//!   last refresh;
//! - `tag`: 32 hex digits, the first 16 bytes of `HMAC-SHA256(K, id ‖ issued ‖ refreshed)` (the
//!   dates as 4 bytes big-endian), `K = HMAC-SHA256(secret, "sticky-proxy/v2/dates")`: any
//!   instance with the secret verifies the dates, nobody without it can change them.
//!
//! Reading one costs a parse into stack buffers, one HMAC (two SHA-256 blocks, from a keyed
//! state prepared at start-up) and constant-time comparisons: no allocation.

mod issue;

pub use issue::DatedIssue;

use super::cookie::same_bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of a backend's id in a dated value.
pub const ID_LEN: usize = 16;
/// Bytes of the tag (a truncated HMAC-SHA256: 128 bits, RFC 2104's "not less than half").
pub const TAG_LEN: usize = 16;
/// Characters of a dated value.
pub const DATED_LEN: usize = 2 * ID_LEN + 1 + 8 + 1 + 8 + 1 + 2 * TAG_LEN;

/// How far in the future (by this instance's clock) a date may be: instances disagree on the
/// clock by this much at most. A later date is one no instance could have written: a forged
/// cookie, a new session.
pub const CLOCK_TOLERANCE_SECONDS: u32 = 60;

/// A dated value's dates, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dates {
    /// When the session's first cookie was issued (kept by every refresh).
    pub issued: u32,
    /// When the cookie was last issued or refreshed.
    pub refreshed: u32,
}

impl Dates {
    /// A new session's dates.
    pub fn new_at(now: u32) -> Dates {
        Dates {
            issued: now,
            refreshed: now,
        }
    }
}

/// A dated value's parts, as read (not verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatedValue {
    pub id: [u8; ID_LEN],
    pub dates: Dates,
    pub tag: [u8; TAG_LEN],
}

impl DatedValue {
    /// Read `<id>.<issued>.<refreshed>.<tag>` (hex digits in either case); `None` for anything
    /// else.
    pub fn parse(text: &[u8]) -> Option<DatedValue> {
        if text.len() != DATED_LEN {
            return None;
        }
        let (id_hex, rest) = text.split_at(2 * ID_LEN);
        let (issued_hex, rest) = rest.strip_prefix(b".")?.split_at(8);
        let (refreshed_hex, rest) = rest.strip_prefix(b".")?.split_at(8);
        let tag_hex = rest.strip_prefix(b".")?;
        let mut value = DatedValue {
            id: [0; ID_LEN],
            dates: Dates::new_at(0),
            tag: [0; TAG_LEN],
        };
        hex::decode_to_slice(id_hex, &mut value.id).ok()?;
        hex::decode_to_slice(tag_hex, &mut value.tag).ok()?;
        value.dates.issued = seconds(issued_hex)?;
        value.dates.refreshed = seconds(refreshed_hex)?;
        Some(value)
    }
}

fn seconds(hex_digits: &[u8]) -> Option<u32> {
    let mut bytes = [0u8; 4];
    hex::decode_to_slice(hex_digits, &mut bytes).ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// A backend's id in dated values: see the module's documentation.
pub fn backend_id(secret: &[u8], pool: &str, backend: &str) -> [u8; ID_LEN] {
    let mut mac = keyed(secret);
    mac.update(b"sticky-proxy/v2/id\0");
    mac.update(pool.as_bytes());
    mac.update(b"\0");
    mac.update(backend.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&digest[..ID_LEN]);
    id
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// Signs and verifies the dates of dated values under one secret. The HMAC state is keyed once
/// here; each use clones it (a copy on the stack).
#[derive(Clone)]
pub struct DatedCodec {
    dates_mac: Hmac<Sha256>,
}

// Hand-written: the keyed state is secret material.
impl std::fmt::Debug for DatedCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatedCodec { key: <hidden> }")
    }
}

impl DatedCodec {
    pub fn new(secret: &[u8]) -> DatedCodec {
        let mut derive = keyed(secret);
        derive.update(b"sticky-proxy/v2/dates");
        DatedCodec {
            dates_mac: keyed(&derive.finalize().into_bytes()),
        }
    }

    /// The tag of `id` with `dates`.
    pub fn tag(&self, id: &[u8; ID_LEN], dates: Dates) -> [u8; TAG_LEN] {
        let mut mac = self.dates_mac.clone();
        mac.update(id);
        mac.update(&dates.issued.to_be_bytes());
        mac.update(&dates.refreshed.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&digest[..TAG_LEN]);
        tag
    }

    /// Whether the value's tag is the one its id and dates have (constant time).
    pub fn verify(&self, value: &DatedValue) -> bool {
        same_bytes(&self.tag(&value.id, value.dates), &value.tag)
    }

    /// The value (lowercase ASCII) for backend `id` with `dates`.
    pub fn encode(&self, id: &[u8; ID_LEN], dates: Dates) -> [u8; DATED_LEN] {
        let mut out = [b'.'; DATED_LEN];
        let tag = self.tag(id, dates);
        let (id_out, rest) = out.split_at_mut(2 * ID_LEN);
        let (issued_out, rest) = rest[1..].split_at_mut(8);
        let (refreshed_out, rest) = rest[1..].split_at_mut(8);
        let tag_out = &mut rest[1..];
        // The slices are exactly twice the input's length, so encoding cannot fail.
        let _ = hex::encode_to_slice(id, id_out);
        let _ = hex::encode_to_slice(dates.issued.to_be_bytes(), issued_out);
        let _ = hex::encode_to_slice(dates.refreshed.to_be_bytes(), refreshed_out);
        let _ = hex::encode_to_slice(tag, tag_out);
        out
    }
}

/// The dated side of one pool's cookie table: the codec and each backend's id, in backend order.
#[derive(Debug, Clone)]
pub struct DatedIds {
    pub codec: DatedCodec,
    ids: Vec<[u8; ID_LEN]>,
}

impl DatedIds {
    pub fn new<'a>(secret: &[u8], pool: &str, backends: impl IntoIterator<Item = &'a str>) -> Self {
        DatedIds {
            codec: DatedCodec::new(secret),
            ids: backends
                .into_iter()
                .map(|name| backend_id(secret, pool, name))
                .collect(),
        }
    }

    /// Backend `index`'s id.
    pub fn id(&self, index: usize) -> Option<&[u8; ID_LEN]> {
        self.ids.get(index)
    }

    /// How many backends the table has.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The backend index and the dates of a dated value whose tag verifies and whose id is one
    /// of this pool's; `None` for anything else. Every id is compared, in constant time.
    pub fn lookup(&self, text: &[u8]) -> Option<(usize, Dates)> {
        let value = DatedValue::parse(text)?;
        let verified = self.codec.verify(&value);
        let mut found = None;
        for (index, known) in self.ids.iter().enumerate() {
            if same_bytes(known, &value.id) {
                found = Some(index);
            }
        }
        found.filter(|_| verified).map(|i| (i, value.dates))
    }
}

/// The lifetimes of one cookie configuration, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lifetimes {
    /// A cookie not refreshed for longer than this starts a new session.
    pub max_idle: Option<u32>,
    /// A cookie first issued longer ago than this starts a new session, however much it is used.
    pub max_life: Option<u32>,
}

/// What a verified dated cookie means now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// It pins; nothing to send back.
    Current,
    /// It pins, and the response re-sends it with `refreshed` = now (`issued` kept).
    Refresh,
    /// It is past a lifetime: a new session.
    Expired(Expiry),
    /// Dates no instance writes (refreshed before issued, or beyond the clock tolerance in the
    /// future): forged, a new session.
    Impossible,
}

/// Which lifetime a cookie outlived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Life,
}

impl Expiry {
    pub fn as_str(self) -> &'static str {
        match self {
            Expiry::Idle => "idle",
            Expiry::Life => "life",
        }
    }
}

impl Lifetimes {
    /// How long after its last refresh a used cookie is refreshed again: a quarter of
    /// `max_idle`, rounded up to whole seconds, at least 1 s; `None` without `max_idle`
    /// (nothing slides).
    pub fn refresh_interval(&self) -> Option<u32> {
        self.max_idle.map(|idle| idle.div_ceil(4).max(1))
    }

    /// Judge a verified cookie's dates at `now` (whole Unix seconds), in this order:
    /// `refreshed < issued`, or `refreshed > now + CLOCK_TOLERANCE_SECONDS`: impossible;
    /// `now − issued > max_life`: expired (life); `now − refreshed > max_idle`: expired (idle);
    /// `now − refreshed ≥ refresh_interval`: refresh; else current. Dates within the tolerance
    /// in the future count as now.
    pub fn judge(&self, dates: Dates, now: u32) -> Judgement {
        if dates.refreshed < dates.issued
            || dates.refreshed > now.saturating_add(CLOCK_TOLERANCE_SECONDS)
        {
            return Judgement::Impossible;
        }
        let age = now.saturating_sub(dates.issued);
        let idle = now.saturating_sub(dates.refreshed);
        if self.max_life.is_some_and(|life| age > life) {
            return Judgement::Expired(Expiry::Life);
        }
        if self.max_idle.is_some_and(|max| idle > max) {
            return Judgement::Expired(Expiry::Idle);
        }
        if self.refresh_interval().is_some_and(|every| idle >= every) {
            return Judgement::Refresh;
        }
        Judgement::Current
    }
}

/// The Unix clock in whole seconds (0 before 1970, `u32::MAX` after 2106).
pub fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod read_tests;
#[cfg(test)]
mod tests;
