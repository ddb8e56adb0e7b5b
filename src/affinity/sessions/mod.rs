//! The learned-session table: session id (or client IP) → backend, bounded, least recently used
//! first out, with an idle timeout refreshed by every hit and an optional absolute lifetime.
//!
//! Built on the `lru` crate (the LRU list Pingora itself uses) split into shards, each behind its
//! own mutex: lookups on different shards never wait for each other, and there is no global lock
//! on the request path. Expiry needs no timer: the least recently used entry of a shard is also
//! its longest idle one, so every insert first drops expired entries from the shard's LRU end,
//! and a lookup that finds an expired entry (idle or past its lifetime) drops it. `moka` was
//! measured first: it costs about 370 bytes per entry against about 90 here (benches/README.md).
//!
//! Keys are a 128-bit XXH3 hash of the id, not the id itself: every entry has the same small
//! size whatever the id's length (an 8 KiB id costs no more than a 32-byte one), so memory is
//! bounded by the capacity alone, and the table holds no session secrets to leak. Entries come
//! from backends' `Set-Cookie`, and from ids the table did not know when a request carrying one
//! gets an answer below 400 (so the table rebuilds itself after a restart, as HAProxy's
//! `stick on` does). A client sending many unknown ids can therefore churn the table, like any
//! LRU table filled from traffic; capacity bounds the memory, not the churn.

use lru::LruCache;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The hashed form of a session id or client-IP key.
pub type SessionKey = u128;

/// Hash an id into its table key.
pub fn key_of(id: &[u8]) -> SessionKey {
    xxhash_rust::xxh3::xxh3_128(id)
}

use crate::config::TableConfig;

/// One recorded session: 16 bytes (times in 100 ms ticks).
#[derive(Debug, Clone, Copy)]
struct Entry {
    backend: u16,
    /// Ticks since the table's epoch (see [`SessionTable::now`]).
    created: u32,
    last_used: u32,
    /// When the entry was last written to (or refreshed in) a shared store.
    synced: u32,
}

/// What [`SessionTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new entry (or one that replaced an expired entry).
    New,
    /// The key now points at another backend.
    Moved,
    /// The key already pointed at this backend: only its idle timer was restarted.
    Same,
    /// Not recorded (a backend index beyond the table's range).
    Ignored,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    insertions: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
}

/// A snapshot of a table's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct TableStats {
    pub entries: u64,
    pub capacity: u64,
    pub hits: u64,
    pub misses: u64,
    pub insertions: u64,
    pub evictions: u64,
    pub expirations: u64,
    /// Seconds since the least recently used entry was last used (0 when empty).
    pub oldest_entry_age_seconds: u64,
}

/// One entry as shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EntryView {
    /// The hex key (a hash: the id itself is never stored).
    pub key: String,
    pub backend: usize,
    pub age_seconds: u64,
    pub idle_seconds: u64,
}

/// A bounded, concurrent session table.
pub struct SessionTable {
    shards: Box<[Mutex<LruCache<SessionKey, Entry>>]>,
    shard_capacity: usize,
    capacity: u64,
    idle_ticks: u64,
    lifetime_ticks: Option<u64>,
    counters: Counters,
    epoch: Instant,
    /// Unit tests move the table's clock forward instead of sleeping (milliseconds).
    #[cfg(test)]
    skipped_ms: AtomicU64,
}

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// Tables below this many entries per shard use one shard: exact global LRU order for small
/// tables, spread locks for big ones.
const MIN_SHARD_ENTRIES: u64 = 1024;
/// Entry times are kept in 100 ms ticks.
const TICKS_PER_SECOND: u64 = 10;

fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_millis() / 100).unwrap_or(u64::MAX)
}
const MAX_SHARDS: u64 = 64;

impl SessionTable {
    pub fn new(config: TableConfig) -> Self {
        let capacity = config.capacity.max(1);
        let shards = (capacity / MIN_SHARD_ENTRIES)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two();
        let shards = if shards > MAX_SHARDS {
            MAX_SHARDS
        } else {
            shards
        };
        let shard_capacity = usize::try_from(capacity.div_ceil(shards)).unwrap_or(usize::MAX);
        SessionTable {
            shards: (0..shards)
                .map(|_| Mutex::new(LruCache::unbounded()))
                .collect(),
            shard_capacity,
            capacity,
            idle_ticks: ticks(config.idle_timeout),
            lifetime_ticks: config.max_lifetime.map(ticks),
            counters: Counters::default(),
            epoch: Instant::now(),
            #[cfg(test)]
            skipped_ms: Default::default(),
        }
    }

    /// Ticks since the table was made (a u32 of 100 ms ticks lasts 13 years of uptime).
    fn now(&self) -> u32 {
        let elapsed = self.epoch.elapsed();
        #[cfg(test)]
        let elapsed = elapsed + Duration::from_millis(self.skipped_ms.load(Relaxed));
        u32::try_from(ticks(elapsed)).unwrap_or(u32::MAX)
    }

    /// Move the table's clock forward (unit tests: time without sleeping, so that no test
    /// depends on how fast the machine runs).
    #[cfg(test)]
    fn skip(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.skipped_ms.fetch_add(ms, Relaxed);
    }

    fn shard(&self, key: SessionKey) -> MutexGuard<'_, LruCache<SessionKey, Entry>> {
        let index = (key as usize) & (self.shards.len() - 1);
        // A panic while holding a shard cannot leave an LRU half-updated in a way that matters
        // for routing, so a poisoned lock is taken over rather than propagated.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn expired(&self, entry: &Entry, now: u32) -> bool {
        u64::from(now.saturating_sub(entry.last_used)) >= self.idle_ticks
            || self
                .lifetime_ticks
                .is_some_and(|l| u64::from(now.saturating_sub(entry.created)) >= l)
    }

    /// The backend recorded for `key`; a hit refreshes the entry (idle timer and LRU order).
    pub fn get(&self, key: SessionKey) -> Option<usize> {
        self.get_syncing(key, None).map(|(backend, _)| backend)
    }

    /// [`get`](Self::get), also saying whether the entry is due for a refresh in a shared
    /// store: its last write or refresh is at least `every` ago (then it counts as refreshed
    /// now, so that only one request per interval asks for it).
    pub fn get_syncing(&self, key: SessionKey, every: Option<Duration>) -> Option<(usize, bool)> {
        let now = self.now();
        let every = every.map(ticks);
        let mut shard = self.shard(key);
        let found = match shard.get_mut(&key) {
            Some(entry) if !self.expired(entry, now) => {
                entry.last_used = now;
                let due = every.is_some_and(|e| u64::from(now.saturating_sub(entry.synced)) >= e);
                if due {
                    entry.synced = now;
                }
                Some((usize::from(entry.backend), due))
            }
            Some(_) => {
                shard.pop(&key);
                self.counters.expirations.fetch_add(1, Relaxed);
                None
            }
            None => None,
        };
        drop(shard);
        let counter = if found.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Relaxed);
        found
    }

    /// Record (or move) `key` to `backend`, dropping expired entries and, at capacity, the least
    /// recently used one. A new or moved entry counts as just written to a shared store.
    pub fn insert(&self, key: SessionKey, backend: usize) -> Recorded {
        let Ok(backend) = u16::try_from(backend) else {
            return Recorded::Ignored;
        };
        let now = self.now();
        let mut shard = self.shard(key);
        while let Some((_, oldest)) = shard.peek_lru() {
            if !self.expired(oldest, now) {
                break;
            }
            shard.pop_lru();
            self.counters.expirations.fetch_add(1, Relaxed);
        }
        // A backend that re-sends the same session cookie on every response refreshes the
        // entry but does not restart its absolute lifetime.
        let mut recorded = Recorded::New;
        if let Some(existing) = shard.get_mut(&key) {
            if !self.expired(existing, now) {
                if existing.backend == backend {
                    existing.last_used = now;
                    drop(shard);
                    return Recorded::Same;
                }
                recorded = Recorded::Moved;
            }
        }
        let entry = Entry {
            backend,
            created: now,
            last_used: now,
            synced: now,
        };
        if shard.put(key, entry).is_none() && shard.len() > self.shard_capacity {
            shard.pop_lru();
            self.counters.evictions.fetch_add(1, Relaxed);
        }
        drop(shard);
        self.counters.insertions.fetch_add(1, Relaxed);
        recorded
    }

    /// Forget `key`; returns whether it was there.
    pub fn remove(&self, key: SessionKey) -> bool {
        self.shard(key).pop(&key).is_some()
    }

    /// The live entry for `key`, without refreshing it (for operators).
    pub fn peek(&self, key: SessionKey) -> Option<EntryView> {
        let now = self.now();
        let shard = self.shard(key);
        let e = shard.peek(&key).filter(|e| !self.expired(e, now))?;
        Some(EntryView {
            key: format!("{key:032x}"),
            backend: usize::from(e.backend),
            age_seconds: u64::from(now.saturating_sub(e.created)) / TICKS_PER_SECOND,
            idle_seconds: u64::from(now.saturating_sub(e.last_used)) / TICKS_PER_SECOND,
        })
    }

    /// How many live entries point at each backend index (one walk of the table, a shard at a
    /// time: for operators).
    pub fn count_by_backend(&self, backends: usize) -> Vec<usize> {
        let now = self.now();
        let mut counts = vec![0; backends];
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (_, e) in shard.iter() {
                if !self.expired(e, now) {
                    if let Some(c) = counts.get_mut(usize::from(e.backend)) {
                        *c += 1;
                    }
                }
            }
        }
        counts
    }

    /// Forget every entry that points at `backend`; returns how many.
    pub fn remove_backend(&self, backend: usize) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<SessionKey> = shard
                .iter()
                .filter(|(_, e)| usize::from(e.backend) == backend)
                .map(|(k, _)| *k)
                .collect();
            for key in &keys {
                shard.pop(key);
            }
            removed += keys.len();
        }
        removed
    }

    /// Counters, entries and the idle age of the oldest entry (one look at each shard's LRU end).
    pub fn stats(&self) -> TableStats {
        let now = self.now();
        let mut entries = 0u64;
        let mut oldest = 0u32;
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            entries += shard.len() as u64;
            if let Some((_, e)) = shard.peek_lru() {
                oldest = oldest.max(now.saturating_sub(e.last_used));
            }
        }
        TableStats {
            entries,
            capacity: self.capacity,
            hits: self.counters.hits.load(Relaxed),
            misses: self.counters.misses.load(Relaxed),
            insertions: self.counters.insertions.load(Relaxed),
            evictions: self.counters.evictions.load(Relaxed),
            expirations: self.counters.expirations.load(Relaxed),
            oldest_entry_age_seconds: u64::from(oldest) / TICKS_PER_SECOND,
        }
    }

    /// Up to `limit` live entries, most recently used first within each shard, for operators.
    pub fn entries(&self, limit: usize) -> Vec<EntryView> {
        let now = self.now();
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (key, e) in shard.iter() {
                if out.len() >= limit {
                    return out;
                }
                if self.expired(e, now) {
                    continue;
                }
                out.push(EntryView {
                    key: format!("{key:032x}"),
                    backend: usize::from(e.backend),
                    age_seconds: u64::from(now.saturating_sub(e.created)) / TICKS_PER_SECOND,
                    idle_seconds: u64::from(now.saturating_sub(e.last_used)) / TICKS_PER_SECOND,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
