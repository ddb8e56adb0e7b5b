//! Unit tests of the dated value codec (format, tampering, ids) and of the lifetime rules at
//! and around every boundary.

use super::*;

const SECRET: &[u8] = b"0123456789abcdef-secret";

fn ids() -> DatedIds {
    DatedIds::new(SECRET, "web", ["iis1", "iis2", "iis3"])
}

fn value(ids: &DatedIds, backend: usize, dates: Dates) -> [u8; DATED_LEN] {
    ids.codec.encode(ids.id(backend).unwrap(), dates)
}

const D: Dates = Dates {
    issued: 0x6500_0000,
    refreshed: 0x6500_0a00,
};

#[test]
fn a_dated_value_is_id_dot_issued_dot_refreshed_dot_tag_in_lowercase_hex() {
    let ids = ids();
    let text = value(&ids, 1, D);
    let text = std::str::from_utf8(&text).unwrap();
    assert_eq!(text.len(), 83);
    let parts: Vec<&str> = text.split('.').collect();
    assert_eq!(parts.len(), 4, "{text}");
    assert_eq!(parts[0], hex::encode(backend_id(SECRET, "web", "iis2")));
    assert_eq!(parts[1], "65000000");
    assert_eq!(parts[2], "65000a00");
    assert_eq!(parts[3].len(), 32);
    assert!(text
        .bytes()
        .all(|b| b == b'.' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    // The tag is HMAC-SHA256 under the derived key, computed here independently.
    let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(SECRET).unwrap();
    derive.update(b"sticky-proxy/v2/dates");
    let key = derive.finalize().into_bytes();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(&backend_id(SECRET, "web", "iis2"));
    mac.update(&[0x65, 0, 0, 0, 0x65, 0, 0x0a, 0]);
    assert_eq!(parts[3], hex::encode(&mac.finalize().into_bytes()[..16]));
}

#[test]
fn an_issued_value_reads_back_to_its_backend_and_dates_in_either_case() {
    let ids = ids();
    for backend in 0..3 {
        let text = value(&ids, backend, D);
        assert_eq!(ids.lookup(&text), Some((backend, D)));
        assert_eq!(ids.lookup(&text.to_ascii_uppercase()), Some((backend, D)));
        assert_eq!(DatedValue::parse(&text).map(|v| v.dates), Some(D));
    }
}

#[test]
fn a_value_never_shows_the_backend_name_and_differs_by_secret_pool_and_backend() {
    let a = backend_id(SECRET, "web", "iis1");
    assert_ne!(a, backend_id(b"0123456789abcdef-secreT", "web", "iis1"));
    assert_ne!(a, backend_id(SECRET, "api", "iis1"));
    assert_ne!(a, backend_id(SECRET, "web", "iis2"));
    // The pool/name split is unambiguous ("we" + "b\0iis1" is not "web" + "iis1").
    assert_ne!(a, backend_id(SECRET, "we", "b\0iis1"));
    let text = value(&ids(), 0, D);
    assert!(!String::from_utf8_lossy(&text).contains("iis"));
}

#[test]
fn a_value_from_another_pool_or_secret_is_not_accepted() {
    let other_pool = DatedIds::new(SECRET, "api", ["iis1", "iis2", "iis3"]);
    let other_secret = DatedIds::new(b"another-secret-0123456789", "web", ["iis1"]);
    let ids = ids();
    assert_eq!(ids.lookup(&value(&other_pool, 0, D)), None);
    assert_eq!(ids.lookup(&value(&other_secret, 0, D)), None);
}

#[test]
fn changing_any_character_of_a_value_makes_it_invalid() {
    let ids = ids();
    let text = value(&ids, 2, D);
    for at in 0..DATED_LEN {
        let mut changed = text;
        changed[at] = match changed[at] {
            b'.' => b'0',
            b'0' => b'1',
            _ => b'0',
        };
        assert_eq!(ids.lookup(&changed), None, "changed at {at}");
    }
}

#[test]
fn dates_moved_with_a_copied_tag_or_a_swapped_id_do_not_verify() {
    let ids = ids();
    let real = DatedValue::parse(&value(&ids, 0, D)).unwrap();
    let later = Dates {
        refreshed: D.refreshed + 3600,
        ..D
    };
    let forged = DatedValue {
        dates: later,
        ..real
    };
    assert!(!ids.codec.verify(&forged));
    let moved = DatedValue {
        id: *ids.id(1).unwrap(),
        ..real
    };
    assert!(!ids.codec.verify(&moved));
    assert!(ids.codec.verify(&real));
}

#[test]
fn malformed_values_are_not_read() {
    let ids = ids();
    let good = value(&ids, 0, D);
    let mut no_dots = good;
    no_dots[32] = b'0';
    let mut bad_hex = good;
    bad_hex[40] = b'g';
    let mut comma = good;
    comma[41] = b',';
    for text in [
        &good[..82],
        &[good.as_slice(), b"0"].concat()[..],
        &no_dots[..],
        &bad_hex[..],
        &comma[..],
        b"",
        &[b'.'; DATED_LEN][..],
        &[0xff; DATED_LEN][..],
        &good[..64],
    ] {
        assert_eq!(
            ids.lookup(text),
            None,
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
}

const NOW: u32 = 1_800_000_000;

fn at(issued_ago: u32, refreshed_ago: u32) -> Dates {
    Dates {
        issued: NOW - issued_ago,
        refreshed: NOW - refreshed_ago,
    }
}

#[test]
fn the_refresh_interval_is_a_quarter_of_max_idle_rounded_up_and_at_least_a_second() {
    let every = |idle| {
        Lifetimes {
            max_idle: Some(idle),
            max_life: None,
        }
        .refresh_interval()
    };
    assert_eq!(every(1), Some(1));
    assert_eq!(every(2), Some(1));
    assert_eq!(every(4), Some(1));
    assert_eq!(every(5), Some(2));
    assert_eq!(every(7), Some(2));
    assert_eq!(every(8), Some(2));
    assert_eq!(every(1800), Some(450));
    assert_eq!(Lifetimes::default().refresh_interval(), None);
    let life_only = Lifetimes {
        max_idle: None,
        max_life: Some(60),
    };
    assert_eq!(life_only.refresh_interval(), None);
}

#[test]
fn idle_is_measured_from_the_last_refresh_and_ends_only_past_max_idle() {
    let rules = Lifetimes {
        max_idle: Some(100),
        max_life: None,
    };
    assert_eq!(rules.judge(at(0, 0), NOW), Judgement::Current);
    assert_eq!(rules.judge(at(500, 24), NOW), Judgement::Current);
    // Refresh once a quarter (25 s) has passed since the last refresh.
    assert_eq!(rules.judge(at(500, 25), NOW), Judgement::Refresh);
    assert_eq!(rules.judge(at(500, 100), NOW), Judgement::Refresh);
    assert_eq!(
        rules.judge(at(500, 101), NOW),
        Judgement::Expired(Expiry::Idle)
    );
    // Without max_life, age alone never ends a session.
    assert_eq!(rules.judge(at(NOW - 1, 0), NOW), Judgement::Current);
}

#[test]
fn life_is_measured_from_the_first_issue_and_refreshes_do_not_extend_it() {
    let rules = Lifetimes {
        max_idle: Some(100),
        max_life: Some(1000),
    };
    assert_eq!(rules.judge(at(1000, 0), NOW), Judgement::Current);
    assert_eq!(
        rules.judge(at(1001, 0), NOW),
        Judgement::Expired(Expiry::Life)
    );
    // Both past: life is reported.
    assert_eq!(
        rules.judge(at(5000, 4000), NOW),
        Judgement::Expired(Expiry::Life)
    );
    let life_only = Lifetimes {
        max_idle: None,
        max_life: Some(1000),
    };
    // Without max_idle nothing is refreshed, and idleness does not matter.
    assert_eq!(life_only.judge(at(999, 999), NOW), Judgement::Current);
    assert_eq!(
        life_only.judge(at(1001, 1001), NOW),
        Judgement::Expired(Expiry::Life)
    );
}

#[test]
fn dates_up_to_the_clock_tolerance_in_the_future_count_as_now_and_later_ones_are_forged() {
    let rules = Lifetimes {
        max_idle: Some(10),
        max_life: Some(20),
    };
    let ahead = |issued: u32, refreshed: u32| Dates {
        issued: NOW + issued,
        refreshed: NOW + refreshed,
    };
    assert_eq!(rules.judge(ahead(5, 5), NOW), Judgement::Current);
    let edge = CLOCK_TOLERANCE_SECONDS;
    assert_eq!(rules.judge(ahead(edge, edge), NOW), Judgement::Current);
    assert_eq!(rules.judge(ahead(0, edge + 1), NOW), Judgement::Impossible);
    assert_eq!(
        rules.judge(ahead(edge + 1, edge + 1), NOW),
        Judgement::Impossible
    );
    // Refreshed before it was issued: no instance writes that.
    let backwards = Dates {
        issued: NOW,
        refreshed: NOW - 1,
    };
    assert_eq!(rules.judge(backwards, NOW), Judgement::Impossible);
}

#[test]
fn the_rules_hold_at_the_ends_of_the_clock() {
    let rules = Lifetimes {
        max_idle: Some(10),
        max_life: Some(20),
    };
    assert_eq!(
        rules.judge(Dates::new_at(u32::MAX), u32::MAX),
        Judgement::Current
    );
    assert_eq!(rules.judge(Dates::new_at(0), 0), Judgement::Current);
    assert_eq!(
        rules.judge(Dates::new_at(0), u32::MAX),
        Judgement::Expired(Expiry::Life)
    );
    // A clock that reads 0 (before 1970) judges a current cookie as far in the future.
    assert_eq!(rules.judge(Dates::new_at(NOW), 0), Judgement::Impossible);
}

#[test]
fn a_max_idle_of_one_second_refreshes_at_one_and_expires_at_two() {
    let rules = Lifetimes {
        max_idle: Some(1),
        max_life: None,
    };
    assert_eq!(rules.judge(at(9, 0), NOW), Judgement::Current);
    assert_eq!(rules.judge(at(9, 1), NOW), Judgement::Refresh);
    assert_eq!(rules.judge(at(9, 2), NOW), Judgement::Expired(Expiry::Idle));
}

#[test]
fn the_clock_reads_the_present() {
    // 2023-11-14 .. 2106: a sanity check of the conversion, not of the machine.
    assert!(unix_now() > 1_700_000_000);
}
