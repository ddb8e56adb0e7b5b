//! The cookie codec (`src/affinity/cookie.rs`, `CookieAffinity` in `src/affinity/mod.rs`, the
//! dated values of `src/affinity/lifetime/`):
//! scanning a `Cookie` header, finding and validating the proxy's cookie, stripping it.
//!
//! Invariants (each an `assert!`, so a violation is a crash libFuzzer saves):
//! 1. `cookie_values` returns exactly what the independent reference reading (`common`) finds,
//!    in order, each value borrowed from the header.
//! 2. `contains_any` is true exactly when a pair has one of the names.
//! 3. `without_cookies` keeps every other pair, byte for byte and in order; its output parses
//!    back to exactly those pairs, contains none of the names, is a valid header value whenever
//!    the input was, and stripping it again changes nothing.
//! 4. A value the proxy issues (`value_text`, or the value in the `Set-Cookie` line that
//!    `CookieAffinity` prebuilt) is 64 lowercase hex digits and is always accepted back, in either
//!    case, by the table and by `CookieAffinity::pinned` — behind any other cookies of the
//!    request, for the main and the twin name alike (lifetimes with `accept_undated: false`:
//!    refused instead).
//! 5. `lookup` accepts exactly the issued values (ASCII case-insensitively), nothing else; and
//!    `pinned` on an arbitrary header answers `Backend(i)` only if the header carries backend
//!    `i`'s value under one of the names — date-less, or (`keyed`) a dated value that re-encodes
//!    to itself from backend `i`'s id and its own dates —, `Absent` only if it carries none of
//!    the names.
//! 6. With lifetimes (`keyed`), an issued cookie is a dated value (83 characters: lowercase hex
//!    and three dots) whose dates are the issue's, read back at that moment as backend `i`
//!    without a refresh; read a second past `max_idle` it is expired, never a backend.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use sticky_proxy::affinity::cookie::{
    contains_any, cookie_values, value_bytes, value_text, without_cookies, CookieTable,
};
use sticky_proxy::affinity::lifetime::{backend_id, DatedCodec, DatedValue, DATED_LEN};
use sticky_proxy::affinity::{CookieAffinity, CookieRead, Pin};
use sticky_proxy::config::{CookieConfig, CookieFormat, CookieLifetimes, SameSite};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    header: &'a [u8],
    /// A second `Cookie` header (HTTP/2 clients send one per cookie).
    second: Option<&'a [u8]>,
    /// Mapped to a valid cookie name; the twin is `<name>SameSite` unless the name equals it.
    name: &'a [u8],
    twin: bool,
    /// A name that is not ours, scanned for as well (any bytes).
    other_name: &'a [u8],
    arr: bool,
    secret: &'a [u8],
    pool: &'a str,
    backends: Vec<&'a str>,
    pick: u8,
    tls: bool,
    same_site: u8,
    max_age: Option<u32>,
    /// Lifetimes (`keyed` only): max_idle, max_life (each + 1 s), accept_undated.
    lifetimes: Option<(u16, u16, bool)>,
}

fuzz_target!(|input: Input| check(input));

fn check(input: Input) {
    let name = common::token(input.name, "ARRAffinity");
    let twin = format!("{name}SameSite");
    let mut names: Vec<&[u8]> = vec![name.as_bytes()];
    if input.twin {
        names.push(twin.as_bytes());
    }
    let headers: Vec<&[u8]> = std::iter::once(input.header).chain(input.second).collect();

    // 1. The scanner against the reference reading.
    let mut scanned: Vec<&[u8]> = names.clone();
    if !input.other_name.is_empty() {
        scanned.push(input.other_name);
    }
    for header in &headers {
        for wanted in &scanned {
            let found: Vec<&[u8]> = cookie_values(header, wanted).collect();
            assert_eq!(found, common::values(header, wanted), "cookie_values");
            assert!(found.iter().all(|v| common::borrowed_from(v, header)));
            assert!(found.iter().all(|v| !v.contains(&b';')));
        }
    }

    // 2. and 3. Detection and stripping.
    for header in &headers {
        check_stripping(header, &names);
        if !input.other_name.is_empty() {
            check_stripping(header, &[input.other_name]);
        }
    }

    // 4. and 5. The value codec and the pin.
    let backends: Vec<&str> = input.backends.iter().copied().take(8).collect();
    if backends.is_empty() {
        return;
    }
    let format = if input.arr {
        CookieFormat::Arr
    } else {
        CookieFormat::Keyed {
            secret: input.secret.to_vec(),
        }
    };
    let table = CookieTable::new(&format, input.pool, backends.iter().copied());
    let raw: Vec<[u8; 32]> = backends
        .iter()
        .map(|b| value_bytes(&format, input.pool, b))
        .collect();
    let texts: Vec<String> = backends
        .iter()
        .map(|b| value_text(&format, input.pool, b))
        .collect();
    // The index a value resolves to: the last backend with that value (the table's rule when
    // two names share one, which the config validator forbids).
    let owner = |i: usize| raw.iter().rposition(|v| *v == raw[i]);
    let i = usize::from(input.pick) % backends.len();
    let issued = &texts[i];
    assert_eq!(issued.len(), 64);
    assert!(issued
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(table.lookup(issued.as_bytes()), owner(i), "issued value");
    assert_eq!(
        table.lookup(issued.to_ascii_uppercase().as_bytes()),
        owner(i),
        "issued value, upper case"
    );
    // Whatever else: accepted exactly when it is an issued value.
    for candidate in headers
        .iter()
        .flat_map(|h| h.chunks(64))
        .chain([input.name, input.secret])
    {
        let found = table.lookup(candidate);
        let issued_at = texts
            .iter()
            .rposition(|t| t.as_bytes().eq_ignore_ascii_case(candidate));
        match (found, issued_at) {
            (None, None) => {}
            (Some(f), Some(at)) => assert_eq!(raw[f], raw[at]),
            _ => panic!("lookup({candidate:?}) = {found:?}, issued at {issued_at:?}"),
        }
    }

    let config = CookieConfig {
        name: name.clone(),
        format: format.clone(),
        path: "/".into(),
        domain: None,
        http_only: true,
        secure: None,
        same_site: match input.same_site % 4 {
            0 => None,
            1 => Some(SameSite::Lax),
            2 => Some(SameSite::Strict),
            _ => Some(SameSite::None),
        },
        max_age: input
            .max_age
            .map(|s| std::time::Duration::from_secs(u64::from(s) + 1)),
        twin_name: (input.twin && twin != name).then(|| twin.clone()),
        indirect: true,
        nocache: true,
        lifetimes: input
            .lifetimes
            .filter(|_| !input.arr)
            .map(|(idle, life, accept_undated)| {
                let idle = u64::from(idle) + 1;
                CookieLifetimes {
                    max_idle: Some(Duration::from_secs(idle)),
                    max_life: Some(Duration::from_secs(idle.max(u64::from(life) + 1))),
                    accept_undated,
                }
            }),
    };
    let affinity = CookieAffinity::new(&config, input.pool, &backends);
    let (main_line, twin_line) = affinity
        .set_cookie_for(i, input.tls)
        .expect("a Set-Cookie line for every backend");
    assert_eq!(twin_line.is_some(), config.twin_name.is_some());
    let own: Vec<&[u8]> = affinity.cookie_names().iter().map(|n| &n[..]).collect();
    // A date-less value pins, unless lifetimes refuse date-less values.
    let undated_pin = match &config.lifetimes {
        Some(l) if !l.accept_undated => Pin::Invalid,
        _ => Pin::Backend(owner(i).unwrap()),
    };
    for (line, cookie_name) in std::iter::once((&main_line, &name))
        .chain(twin_line.as_ref().zip(config.twin_name.as_ref()))
    {
        let text = line.to_str().expect("a Set-Cookie line is visible ASCII");
        let parsed = cookie::Cookie::parse(text).expect("a Set-Cookie line parses");
        assert_eq!(parsed.name(), cookie_name.as_str());
        assert_eq!(parsed.value(), issued.as_str());
        // What the browser sends back, behind whatever else the request carries (ours
        // stripped from that, or an earlier valid value of ours would win).
        let rest = without_cookies(input.header, &own).unwrap_or_default();
        for upper in [false, true] {
            let value = if upper {
                issued.to_ascii_uppercase()
            } else {
                issued.clone()
            };
            let mut header = rest.clone();
            if !header.is_empty() {
                header.extend_from_slice(b"; ");
            }
            header.extend_from_slice(format!("{cookie_name}={value}").as_bytes());
            let pin = affinity.pinned([&header[..]].into_iter());
            assert_eq!(pin, undated_pin, "issued value sent back");
            // Split over two headers (HTTP/2), ours in the second.
            let pin = affinity
                .pinned([&rest[..], format!("{cookie_name}={value}").as_bytes()].into_iter());
            assert_eq!(pin, undated_pin, "issued value, second header");
        }
    }

    // 6. Lifetimes: the issued cookie is dated, and read back at its own dates.
    if let Some(lifetimes) = &config.lifetimes {
        check_dated(&affinity, lifetimes, i, owner(i).unwrap(), input.tls);
    }

    // 5. An arbitrary request: the pin says only what the header carries.
    let secret = match &format {
        CookieFormat::Keyed { secret } => Some(secret.clone()),
        CookieFormat::Arr => None,
    };
    let carries = |b: usize, v: &[u8]| {
        v.eq_ignore_ascii_case(texts[b].as_bytes())
            || secret.as_ref().is_some_and(|secret| {
                let id = backend_id(secret, input.pool, backends[b]);
                DatedValue::parse(v).is_some_and(|parsed| {
                    parsed.id == id
                        && DatedCodec::new(secret)
                            .encode(&id, parsed.dates)
                            .eq_ignore_ascii_case(v)
                })
            })
    };
    match affinity.pinned(headers.iter().copied()) {
        Pin::Backend(b) => assert!(
            headers.iter().any(|h| own
                .iter()
                .any(|n| common::values(h, n).iter().any(|v| carries(b, v)))),
            "pinned to {b} without its value"
        ),
        Pin::Invalid => assert!(headers
            .iter()
            .any(|h| own.iter().any(|n| !common::values(h, n).is_empty()))),
        Pin::Absent => assert!(headers
            .iter()
            .all(|h| own.iter().all(|n| common::values(h, n).is_empty()))),
        Pin::Missing => panic!("cookies never say Missing"),
    }
}

fn check_dated(
    affinity: &CookieAffinity,
    lifetimes: &CookieLifetimes,
    i: usize,
    owner: usize,
    tls: bool,
) {
    let (main, _) = affinity.issue(i, tls, None).expect("a dated line");
    let text = main.to_str().expect("a Set-Cookie line is visible ASCII");
    let parsed = cookie::Cookie::parse(text).expect("a Set-Cookie line parses");
    let value = parsed.value();
    assert_eq!(value.len(), DATED_LEN);
    assert_eq!(value.bytes().filter(|b| *b == b'.').count(), 3);
    assert!(value
        .bytes()
        .all(|b| b == b'.' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let dates = DatedValue::parse(value.as_bytes())
        .expect("an issued value parses")
        .dates;
    assert_eq!(dates.issued, dates.refreshed);
    let header = format!("{}={value}", affinity.config.name);
    let at = |now: u32| affinity.read_with_clock(std::iter::once(header.as_bytes()), || now);
    assert_eq!(
        at(dates.refreshed),
        CookieRead::Backend {
            index: owner,
            reissue: None
        },
        "issued value read back at once"
    );
    let idle = lifetimes.max_idle.map_or(0, |d| d.as_secs() as u32);
    let later = dates.refreshed.saturating_add(idle).saturating_add(1);
    if later > dates.refreshed.saturating_add(idle) {
        assert!(
            matches!(at(later), CookieRead::Expired(_)),
            "read past max_idle: {:?}",
            at(later)
        );
    }
}

fn check_stripping(header: &[u8], names: &[&[u8]]) {
    let pairs = common::pairs(header);
    let is_ours = |p: &[u8]| names.contains(&common::name(p));
    assert_eq!(
        contains_any(header, names),
        pairs.iter().any(|p| is_ours(p)),
        "contains_any"
    );
    let kept: Vec<&[u8]> = pairs.iter().copied().filter(|p| !is_ours(p)).collect();
    let out = without_cookies(header, names);
    let Some(out) = out else {
        assert!(kept.is_empty(), "without_cookies dropped {kept:?}");
        return;
    };
    assert_eq!(out, kept.join(&b"; "[..]), "without_cookies keeps the rest");
    assert_eq!(
        common::pairs(&out),
        kept,
        "the output parses to the kept pairs"
    );
    assert!(
        !contains_any(&out, names),
        "a stripped header has none of our names"
    );
    for n in names {
        assert_eq!(cookie_values(&out, n).count(), 0);
    }
    assert_eq!(without_cookies(&out, names).as_deref(), Some(&out[..]));
    if http::HeaderValue::from_bytes(header).is_ok() {
        assert!(http::HeaderValue::from_bytes(&out).is_ok());
    }
}
