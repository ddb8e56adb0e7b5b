//! Unit tests of the bounded session table: capacity and LRU eviction, idle and absolute
//! expiry, statistics, entries, per-backend counts.

use super::*;

fn table(capacity: u64, idle_ms: u64) -> SessionTable {
    SessionTable::new(TableConfig {
        capacity,
        idle_timeout: Duration::from_millis(idle_ms),
        max_lifetime: None,
    })
}

#[test]
fn records_and_counts_hits_misses_and_insertions() {
    let t = table(10, 60_000);
    assert_eq!(t.get(key_of(b"a")), None);
    t.insert(key_of(b"a"), 2);
    assert_eq!(t.get(key_of(b"a")), Some(2));
    t.insert(key_of(b"a"), 1);
    assert_eq!(t.get(key_of(b"a")), Some(1));
    let s = t.stats();
    assert_eq!(
        (s.entries, s.capacity, s.hits, s.misses, s.insertions),
        (1, 10, 2, 1, 2)
    );
    assert!(t.remove(key_of(b"a")));
    assert_eq!(t.get(key_of(b"a")), None);
}

#[test]
fn at_capacity_the_least_recently_used_entry_goes_first() {
    let t = table(3, 60_000);
    for id in [b"a", b"b", b"c"] {
        t.insert(key_of(id), 0);
    }
    // Touch "a": "b" is now the least recently used.
    assert_eq!(t.get(key_of(b"a")), Some(0));
    t.insert(key_of(b"d"), 1);
    assert_eq!(t.get(key_of(b"b")), None, "b was least recently used");
    assert_eq!(t.get(key_of(b"a")), Some(0));
    assert_eq!(t.get(key_of(b"c")), Some(0));
    assert_eq!(t.get(key_of(b"d")), Some(1));
    assert_eq!(t.stats().evictions, 1);
}

// Time-based tests move the table's clock (`skip`) by tens of seconds against timeouts of a
// minute: the few real milliseconds a test takes, however busy the machine, do not count.

#[test]
fn an_idle_entry_expires_and_a_used_one_does_not() {
    let t = table(10, 60_000);
    t.insert(key_of(b"idle"), 0);
    t.insert(key_of(b"busy"), 1);
    for _ in 0..6 {
        t.skip(Duration::from_secs(20));
        assert_eq!(t.get(key_of(b"busy")), Some(1));
    }
    assert_eq!(t.get(key_of(b"idle")), None, "idle for 120 s, timeout 60 s");
    assert_eq!(t.stats().expirations, 1);
}

#[test]
fn an_absolute_lifetime_ends_even_a_busy_entry() {
    let t = SessionTable::new(TableConfig {
        capacity: 10,
        idle_timeout: Duration::from_secs(3600),
        max_lifetime: Some(Duration::from_secs(60)),
    });
    t.insert(key_of(b"s"), 0);
    for _ in 0..3 {
        t.skip(Duration::from_secs(10));
        assert_eq!(t.get(key_of(b"s")), Some(0));
    }
    t.skip(Duration::from_secs(60));
    assert_eq!(t.get(key_of(b"s")), None);
}

#[test]
fn re_recording_the_same_backend_keeps_the_absolute_lifetime() {
    let t = SessionTable::new(TableConfig {
        capacity: 10,
        idle_timeout: Duration::from_secs(3600),
        max_lifetime: Some(Duration::from_secs(60)),
    });
    t.insert(key_of(b"s"), 0);
    for _ in 0..3 {
        t.skip(Duration::from_secs(15));
        t.insert(key_of(b"s"), 0); // the app re-sends its cookie
    }
    t.skip(Duration::from_secs(20));
    assert_eq!(t.get(key_of(b"s")), None, "65 s old, lifetime 60 s");
    assert_eq!(t.stats().insertions, 1);
}

#[test]
fn insert_says_whether_an_entry_is_new_moved_or_the_same() {
    let t = table(10, 60_000);
    assert_eq!(t.insert(key_of(b"a"), 1), Recorded::New);
    assert_eq!(t.insert(key_of(b"a"), 1), Recorded::Same);
    assert_eq!(t.insert(key_of(b"a"), 2), Recorded::Moved);
    assert_eq!(t.insert(key_of(b"a"), 70_000), Recorded::Ignored);
}

#[test]
fn a_store_refresh_is_due_at_most_once_per_interval() {
    let t = table(10, 3_600_000);
    let every = Some(Duration::from_secs(60));
    t.insert(key_of(b"a"), 1);
    assert_eq!(t.get_syncing(key_of(b"a"), every), Some((1, false)));
    t.skip(Duration::from_secs(70));
    assert_eq!(t.get_syncing(key_of(b"a"), every), Some((1, true)));
    assert_eq!(t.get_syncing(key_of(b"a"), every), Some((1, false)));
    assert_eq!(t.get_syncing(key_of(b"b"), every), None);
    assert_eq!(t.get_syncing(key_of(b"a"), None), Some((1, false)));
}

#[test]
fn remove_backend_forgets_only_its_entries() {
    let t = table(100, 60_000);
    for i in 0..10u8 {
        t.insert(key_of(&[i]), usize::from(i % 2));
    }
    assert_eq!(t.remove_backend(1), 5);
    assert_eq!(t.get(key_of(&[1])), None);
    assert_eq!(t.get(key_of(&[2])), Some(0));
}

#[test]
fn keys_are_fixed_size_whatever_the_id() {
    assert_ne!(key_of(b""), key_of(b"\0"));
    let huge = vec![b'x'; 8192];
    assert_ne!(key_of(&huge), key_of(&huge[1..]));
}
