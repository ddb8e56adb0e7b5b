//! Unit tests of a pool's cookie affinity with lifetimes: reading dated, date-less and broken
//! values at a given clock, several cookies in one request, and the dated `Set-Cookie` lines.

use super::*;
use crate::affinity::{CookieAffinity, CookieRead, Pin, Reissue};
use crate::config::{CookieConfig, CookieFormat, CookieLifetimes};
use std::time::Duration;

const SECRET: &[u8] = b"0123456789abcdef-secret";
const NOW: u32 = 1_800_000_000;

fn config(lifetimes: Option<CookieLifetimes>) -> CookieConfig {
    CookieConfig {
        name: "ARRAffinity".into(),
        format: CookieFormat::Keyed {
            secret: SECRET.to_vec(),
        },
        path: "/".into(),
        domain: None,
        http_only: true,
        secure: None,
        same_site: None,
        max_age: None,
        twin_name: Some("ARRAffinitySameSite".into()),
        indirect: true,
        nocache: true,
        lifetimes,
    }
}

fn lifetimes(idle: u64, life: u64, accept_undated: bool) -> Option<CookieLifetimes> {
    Some(CookieLifetimes {
        max_idle: Some(Duration::from_secs(idle)),
        max_life: Some(Duration::from_secs(life)),
        accept_undated,
    })
}

fn affinity(lifetimes: Option<CookieLifetimes>) -> CookieAffinity {
    CookieAffinity::new(&config(lifetimes), "web", &["iis1", "iis2", "iis3"])
}

/// A dated value for backend `index`, minted with the secret.
fn dated(index: usize, issued_ago: u32, refreshed_ago: u32) -> String {
    let ids = DatedIds::new(SECRET, "web", ["iis1", "iis2", "iis3"]);
    let dates = Dates {
        issued: NOW - issued_ago,
        refreshed: NOW - refreshed_ago,
    };
    String::from_utf8(ids.codec.encode(ids.id(index).unwrap(), dates).to_vec()).unwrap()
}

fn undated(index: usize) -> String {
    let name = ["iis1", "iis2", "iis3"][index];
    crate::affinity::cookie::value_text(
        &CookieFormat::Keyed {
            secret: SECRET.to_vec(),
        },
        "web",
        name,
    )
}

fn read(affinity: &CookieAffinity, header: &str) -> CookieRead {
    affinity.read_with_clock(std::iter::once(header.as_bytes()), || NOW)
}

fn pinned(index: usize, reissue: Option<Reissue>) -> CookieRead {
    CookieRead::Backend { index, reissue }
}

#[test]
fn a_dated_cookie_pins_until_a_lifetime_is_over_and_is_refreshed_once_a_quarter_of_max_idle_passed()
{
    let a = affinity(lifetimes(100, 1000, true));
    let cookie =
        |issued_ago, refreshed_ago| format!("ARRAffinity={}", dated(1, issued_ago, refreshed_ago));
    assert_eq!(read(&a, &cookie(0, 0)), pinned(1, None));
    assert_eq!(read(&a, &cookie(900, 24)), pinned(1, None));
    let refresh = Some(Reissue::Refresh { issued: NOW - 900 });
    assert_eq!(read(&a, &cookie(900, 25)), pinned(1, refresh));
    assert_eq!(
        read(&a, &cookie(900, 101)),
        CookieRead::Expired(Expiry::Idle)
    );
    assert_eq!(
        read(&a, &cookie(1001, 0)),
        CookieRead::Expired(Expiry::Life)
    );
    assert_eq!(read(&a, &cookie(1001, 0)).pin(), Pin::Invalid);
}

#[test]
fn a_dated_cookie_with_changed_dates_or_dates_beyond_the_clock_tolerance_is_invalid() {
    let a = affinity(lifetimes(100, 1000, true));
    let value = dated(0, 50, 50);
    // Move the refresh date forward by one second, keeping the tag.
    let tampered = format!("{}{:08x}{}", &value[..42], NOW - 49, &value[50..]);
    assert_eq!(tampered.len(), DATED_LEN);
    assert_eq!(
        read(&a, &format!("ARRAffinity={tampered}")),
        CookieRead::Invalid
    );
    let ahead = CLOCK_TOLERANCE_SECONDS + 1;
    let future = {
        let ids = DatedIds::new(SECRET, "web", ["iis1", "iis2", "iis3"]);
        let dates = Dates::new_at(NOW + ahead);
        String::from_utf8(ids.codec.encode(ids.id(0).unwrap(), dates).to_vec()).unwrap()
    };
    assert_eq!(
        read(&a, &format!("ARRAffinity={future}")),
        CookieRead::Invalid
    );
    // A dated value cut down to its id is no date-less value.
    assert_eq!(
        read(&a, &format!("ARRAffinity={}", &value[..32])),
        CookieRead::Invalid
    );
    assert_eq!(
        read(&a, &format!("ARRAffinity={}", &value[..64])),
        CookieRead::Invalid
    );
}

#[test]
fn a_date_less_value_pins_and_gets_dates_unless_undated_values_are_refused() {
    let a = affinity(lifetimes(100, 1000, true));
    let header = format!("ARRAffinity={}", undated(2));
    assert_eq!(read(&a, &header), pinned(2, Some(Reissue::Convert)));
    let strict = affinity(lifetimes(100, 1000, false));
    assert_eq!(read(&strict, &header), CookieRead::Invalid);
}

#[test]
fn without_lifetimes_a_dated_value_still_pins_and_is_replaced_by_the_date_less_one() {
    let a = affinity(None);
    // Whatever its dates: this pool no longer enforces them.
    let header = format!("ARRAffinity={}", dated(1, 100_000, 100_000));
    assert_eq!(read(&a, &header), pinned(1, Some(Reissue::Convert)));
    let header = format!("ARRAffinity={}", undated(1));
    assert_eq!(read(&a, &header), pinned(1, None));
    // Tampered dated values are still refused.
    let mut tampered = dated(1, 10, 10).into_bytes();
    tampered[82] = if tampered[82] == b'0' { b'1' } else { b'0' };
    let header = format!("ARRAffinity={}", String::from_utf8(tampered).unwrap());
    assert_eq!(read(&a, &header), CookieRead::Invalid);
}

#[test]
fn the_clock_is_not_read_for_a_date_less_value_without_lifetimes() {
    let a = affinity(None);
    let header = format!("a=1; ARRAffinity={}", undated(0));
    let read = a.read_with_clock(std::iter::once(header.as_bytes()), || {
        panic!("the clock was read")
    });
    assert_eq!(read, pinned(0, None));
}

#[test]
fn the_first_valid_cookie_wins_and_an_expired_one_is_reported_over_an_invalid_one() {
    let a = affinity(lifetimes(100, 1000, true));
    let expired = dated(0, 2000, 10);
    let valid = dated(2, 10, 10);
    let header =
        format!("ARRAffinity={expired}; ARRAffinity=nonsense; ARRAffinitySameSite={valid}");
    assert_eq!(read(&a, &header), pinned(2, None));
    let header = format!("ARRAffinity=nonsense; ARRAffinitySameSite={expired}");
    assert_eq!(read(&a, &header), CookieRead::Expired(Expiry::Life));
    let header = format!("ARRAffinity={expired}; ARRAffinity=nonsense");
    assert_eq!(read(&a, &header), CookieRead::Expired(Expiry::Life));
    assert_eq!(read(&a, "other=1"), CookieRead::Absent);
    assert_eq!(read(&a, "ARRAffinity="), CookieRead::Invalid);
}

#[test]
fn an_arr_pool_reads_no_dated_value() {
    let mut arr = config(None);
    arr.format = CookieFormat::Arr;
    let a = CookieAffinity::new(&arr, "web", &["iis1", "iis2", "iis3"]);
    let header = format!("ARRAffinity={}", dated(0, 0, 0));
    assert_eq!(read(&a, &header), CookieRead::Invalid);
}

/// The value of a `Set-Cookie` line.
fn value_of(line: &http::HeaderValue) -> String {
    let text = line.to_str().unwrap();
    let pair = text.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_string()
}

#[test]
fn an_issued_dated_cookie_carries_the_dates_asked_for_and_the_configured_attributes() {
    let a = affinity(lifetimes(100, 1000, true));
    let before = unix_now();
    let (main, twin) = a.issue(1, true, None).unwrap();
    let after = unix_now();
    let twin = twin.expect("the twin is issued too");
    let value = value_of(&main);
    assert_eq!(value, value_of(&twin));
    let parsed = DatedValue::parse(value.as_bytes()).unwrap();
    assert!((before..=after).contains(&parsed.dates.issued));
    assert_eq!(parsed.dates.issued, parsed.dates.refreshed);
    let ids = DatedIds::new(SECRET, "web", ["iis1", "iis2", "iis3"]);
    assert_eq!(ids.lookup(value.as_bytes()), Some((1, parsed.dates)));
    // The same attributes as the date-less line, only the value differs.
    let plain = affinity(None);
    let (undated_main, _) = plain.set_cookie_for(1, true).unwrap();
    let attributes = |line: &http::HeaderValue| {
        let text = line.to_str().unwrap().to_string();
        text.split_once(';').unwrap().1.to_string()
    };
    assert_eq!(attributes(&main), attributes(&undated_main));
    assert!(main.to_str().unwrap().starts_with("ARRAffinity="));
    assert!(twin.to_str().unwrap().contains("SameSite=None"));

    // A refresh keeps the first issue (and a first issue in the future is taken as now).
    let long_ago = before - 5000;
    let (refreshed, _) = a.issue(1, false, Some(long_ago)).unwrap();
    let dates = DatedValue::parse(value_of(&refreshed).as_bytes())
        .unwrap()
        .dates;
    assert_eq!(dates.issued, long_ago);
    assert!(dates.refreshed >= after);
    let (ahead, _) = a.issue(1, false, Some(u32::MAX)).unwrap();
    let dates = DatedValue::parse(value_of(&ahead).as_bytes())
        .unwrap()
        .dates;
    assert_eq!(dates.issued, dates.refreshed);
    assert!(a.issue(3, false, None).is_none(), "no such backend");
}

#[test]
fn without_lifetimes_the_issued_lines_are_the_prebuilt_date_less_ones() {
    let a = affinity(None);
    let (main, _) = a.issue(0, false, None).unwrap();
    assert_eq!(value_of(&main), undated(0));
    assert_eq!(&main, &a.set_cookie_for(0, false).unwrap().0);
}
