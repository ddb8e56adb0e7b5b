//! Property tests (proptest) over the parsers that take client or operator input: the cookie
//! scanner and codec, hash-key extraction, learned-session ids (request side and `Set-Cookie`
//! side), and the config loader (`load_str`, `extension::load_str_with`). `make test` runs proptest's
//! default 256 cases per property; `PROPTEST_CASES` (read by proptest itself) sets the count,
//! and `make fuzz-proptest` (or `make fuzz` on a machine without a nightly toolchain) runs a long,
//! time-bounded campaign per property (`scripts/fuzz-proptest.sh`). Where a nightly toolchain
//! exists, `make fuzz` runs the cargo fuzz targets in `fuzz/` instead (docs/testing.md, Fuzzing).

use proptest::prelude::*;
use std::borrow::Cow;
use std::time::Duration;
use sticky_proxy::affinity::cookie::set_cookie_line;
use sticky_proxy::affinity::cookie::{
    contains_any, cookie_values, value_text, without_cookies, CookieTable,
};
use sticky_proxy::affinity::key::KeySource;
use sticky_proxy::affinity::key::{self, RequestView};
use sticky_proxy::affinity::learned::{observe_set_cookie, LearnedSessions, Observed};
use sticky_proxy::config::TableConfig;
use sticky_proxy::config::{load_str, CookieFormat, KeySourceConfig, LearnConfig};
use sticky_proxy::extension::load_str_with;
use sticky_proxy::extension::Extensions;

fn keyed() -> CookieFormat {
    CookieFormat::Keyed {
        secret: b"property-secret-0123456789".to_vec(),
    }
}

/// Learned sessions over `JSESSIONID`, `;jsessionid=` and the query parameters `sid`, `s`.
fn learned() -> LearnedSessions {
    LearnedSessions::new(
        &LearnConfig {
            cookies: vec!["JSESSIONID".into(), "PHPSESSID".into()],
            path_parameter: Some("jsessionid".into()),
            query_parameters: vec!["sid".into(), "s".into()],
            table: TableConfig {
                capacity: 16,
                idle_timeout: Duration::from_secs(60),
                max_lifetime: None,
            },
            store: None,
        },
        "web",
        "learn",
        &["iis1", "iis2"],
    )
}

/// Is `needle` a contiguous piece of `haystack`?
fn is_piece_of(needle: &[u8], haystack: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A custom key source registered as `tenant` for `load_str_with`.
#[derive(Debug)]
struct Tenant;

impl KeySource for Tenant {
    fn key<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
        Some(Cow::Borrowed(request.headers.get("x-tenant")?.as_bytes()))
    }
}

/// YAML text for a string (JSON strings are YAML double-quoted scalars).
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Backend names that stress the duplicate check and the ARR codec: ASCII, case pairs beyond
/// ASCII (`Ä`/`ä`, the Kelvin sign `K` and `k`), any printable text.
fn backend_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z]{1,3}",
        Just("iis1".to_string()),
        Just("IIS1".to_string()),
        Just("\u{c4}".to_string()),
        Just("\u{e4}".to_string()),
        Just("\u{212a}".to_string()),
        Just("k".to_string()),
        Just("\u{130}".to_string()),
        Just("i\u{307}".to_string()),
        "\\PC{1,4}",
    ]
}

/// Cookie attribute text: plausible values and every kind of hostile one.
fn attribute() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_string()),
        "/[a-z]{0,6}",
        "[ -~]{0,12}",
        "\\PC{0,6}",
        Just("/a;b".to_string()),
        Just("/a\r\nSet-Cookie: x=1".to_string()),
        Just("/\u{7f}".to_string()),
        Just(String::new()),
    ]
}

mod cookie_codec {
    //! The cookie scanner, stripping, and the value codecs (`src/affinity/cookie.rs`, the dated
    //! values of `src/affinity/lifetime/`).
    use super::*;

    proptest! {
        #[test]
        fn the_cookie_scanner_never_panics_and_only_returns_slices_of_the_header(header in proptest::collection::vec(any::<u8>(), 0..512)) {
            for value in cookie_values(&header, b"ARRAffinity") {
                prop_assert!(value.len() <= header.len());
            }
            let names: [&[u8]; 2] = [b"ARRAffinity", b"ARRAffinitySameSite"];
            let _ = contains_any(&header, &names);
            if let Some(kept) = without_cookies(&header, &names) {
                prop_assert!(!contains_any(&kept, &names), "our cookies are gone");
                prop_assert!(kept.len() <= header.len() + 2 * header.len() / 2 + 2);
            }
        }

        #[test]
        fn stripping_keeps_every_other_cookie(
            others in proptest::collection::vec(("[a-zA-Z][a-zA-Z0-9_]{0,10}", "[a-zA-Z0-9]{0,12}"), 0..6),
            ours in "[0-9a-f]{64}",
        ) {
            let others: Vec<(String, String)> = others.into_iter().filter(|(n, _)| !n.starts_with("ARRAffinity")).collect();
            let mut pairs: Vec<String> = others.iter().map(|(n, v)| format!("{n}={v}")).collect();
            pairs.insert(pairs.len() / 2, format!("ARRAffinity={ours}"));
            let header = pairs.join("; ");
            let names: [&[u8]; 1] = [b"ARRAffinity"];
            let kept = without_cookies(header.as_bytes(), &names).unwrap_or_default();
            let expected: Vec<String> = others.iter().map(|(n, v)| format!("{n}={v}")).collect();
            prop_assert_eq!(String::from_utf8(kept).unwrap(), expected.join("; "));
        }

        #[test]
        fn no_value_but_the_issued_ones_resolves(value in proptest::collection::vec(any::<u8>(), 0..80)) {
            let format = keyed();
            let table = CookieTable::new(&format, "web", ["iis1", "iis2", "iis3"]);
            let issued: Vec<String> = ["iis1", "iis2", "iis3"].iter().map(|b| value_text(&format, "web", b)).collect();
            let found = table.lookup(&value);
            let is_issued = issued.iter().any(|v| v.as_bytes().eq_ignore_ascii_case(&value));
            prop_assert_eq!(found.is_some(), is_issued);
        }

        #[test]
        fn every_issued_value_resolves_to_its_backend(backend in 0usize..3) {
            let format = keyed();
            let names = ["iis1", "iis2", "iis3"];
            let table = CookieTable::new(&format, "web", names);
            let value = value_text(&format, "web", names[backend]);
            prop_assert_eq!(table.lookup(value.as_bytes()), Some(backend));
        }

        #[test]
        fn any_cookie_value_resolves_in_either_case_to_its_backend_in_both_formats(
            names in proptest::collection::vec("[a-z0-9]{1,8}", 1..6),
            pool in "\\PC{1,10}",
            secret in proptest::collection::vec(any::<u8>(), 16..40),
            pick in any::<proptest::sample::Index>(),
            upper in any::<bool>(),
        ) {
            let mut names = names;
            names.sort();
            names.dedup();
            for format in [CookieFormat::Arr, CookieFormat::Keyed { secret: secret.clone() }] {
                let table = CookieTable::new(&format, &pool, names.iter().map(String::as_str));
                let i = pick.index(names.len());
                let mut value = value_text(&format, &pool, &names[i]);
                prop_assert_eq!(value.len(), 64);
                if upper {
                    value = value.to_ascii_uppercase();
                }
                prop_assert_eq!(table.lookup(value.as_bytes()), Some(i));
            }
        }

        #[test]
        fn a_dated_value_reads_back_to_its_backend_and_dates_and_no_changed_one_does(
            names in proptest::collection::vec("[a-z0-9]{1,8}", 1..6),
            secret in proptest::collection::vec(any::<u8>(), 16..40),
            pick in any::<proptest::sample::Index>(),
            issued in any::<u32>(),
            idle in any::<u32>(),
            at in 0usize..sticky_proxy::affinity::lifetime::DATED_LEN,
            with in prop_oneof![Just(b'.'), Just(b'0'), Just(b'f'), Just(b'A'), any::<u8>()],
        ) {
            use sticky_proxy::affinity::lifetime::{DatedIds, Dates};
            let mut names = names;
            names.sort();
            names.dedup();
            let ids = DatedIds::new(&secret, "web", names.iter().map(String::as_str));
            let i = pick.index(names.len());
            let dates = Dates { issued, refreshed: issued.saturating_add(idle) };
            let value = ids.codec.encode(ids.id(i).unwrap(), dates);
            prop_assert_eq!(ids.lookup(&value), Some((i, dates)));
            prop_assert_eq!(ids.lookup(&value.to_ascii_uppercase()), Some((i, dates)));
            let mut changed = value;
            changed[at] = with;
            if !changed.eq_ignore_ascii_case(&value) {
                prop_assert_eq!(ids.lookup(&changed), None);
            }
        }
    }
}

mod key_extraction {
    //! Hash-key sources (`src/affinity/key.rs`) and learned session ids, request side and
    //! `Set-Cookie` side (`src/affinity/learned.rs`).
    use super::*;

    proptest! {
        #[test]
        fn key_sources_never_panic_on_odd_requests(
            path in "/[ -~]{0,60}",
            header_value in proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..200),
        ) {
            let Ok(uri) = path.parse::<http::Uri>() else { return Ok(()) };
            let Ok(value) = http::HeaderValue::from_bytes(&header_value) else { return Ok(()) };
            let mut headers = http::HeaderMap::new();
            for name in ["cookie", "x-tenant", "host", "x-forwarded-for"] {
                headers.append(http::HeaderName::from_static(name), value.clone());
            }
            let view = RequestView { uri: &uri, headers: &headers, client_ip: Some("192.0.2.1".parse().unwrap()) };
            let sources = [
                KeySourceConfig::Cookie { name: "CUserID".into(), regex: Some(regex::bytes::Regex::new("^((a+)+)$").unwrap()) },
                KeySourceConfig::Header { name: http::HeaderName::from_static("x-tenant") },
                KeySourceConfig::Query { params: vec!["a".into(), "b".into()] },
                KeySourceConfig::Path,
                KeySourceConfig::PathAndQuery,
                KeySourceConfig::Host,
                KeySourceConfig::ClientIp { ipv4_prefix: 24, ipv6_prefix: 64 },
            ];
            for config in &sources {
                let source = key::from_config(config, &sticky_proxy::extension::Extensions::default()).unwrap();
                if let Some(k) = source.key(&view) {
                    prop_assert!(!k.is_empty());
                }
            }
        }

        #[test]
        fn a_learned_session_id_is_found_in_the_cookie_the_path_parameter_or_the_query(
            id in "[A-Za-z0-9._~-]{1,40}",
            place in 0usize..4,
            noise in "[a-z]{1,6}",
        ) {
            let sessions = learned();
            let mut headers = http::HeaderMap::new();
            let uri: http::Uri = match place {
                0 => {
                    headers.append("cookie", http::HeaderValue::from_str(&format!("{noise}=1; JSESSIONID={id}; x=y")).unwrap());
                    "/".parse().unwrap()
                }
                1 => {
                    headers.append("cookie", http::HeaderValue::from_str(&format!("{noise}=1")).unwrap());
                    headers.append("cookie", http::HeaderValue::from_str(&format!("PHPSESSID=\"{id}\"")).unwrap());
                    "/".parse().unwrap()
                }
                2 => format!("/{noise};jsessionid={id}/cart").parse().unwrap(),
                _ => format!("/{noise}?a=1&sid=&s={id}").parse().unwrap(),
            };
            prop_assert_eq!(sessions.request_id(&uri, &headers), Some(id.as_bytes()));
        }

        #[test]
        fn a_learned_session_id_is_a_non_empty_piece_of_the_request_whatever_it_carries(
            path in "/[!-~]{0,80}",
            cookies in proptest::collection::vec(proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..120), 0..3),
        ) {
            let Ok(uri) = path.parse::<http::Uri>() else { return Ok(()) };
            let mut headers = http::HeaderMap::new();
            for cookie in &cookies {
                if let Ok(value) = http::HeaderValue::from_bytes(cookie) {
                    headers.append("cookie", value);
                }
            }
            if let Some(id) = learned().request_id(&uri, &headers) {
                prop_assert!(!id.is_empty());
                let in_cookie = headers.get_all("cookie").iter().any(|v| is_piece_of(id, v.as_bytes()));
                let in_uri = is_piece_of(id, uri.to_string().as_bytes());
                prop_assert!(in_cookie || in_uri, "{:?} not in the request", id);
            }
        }

        #[test]
        fn observing_a_set_cookie_line_never_panics_and_reports_only_values_from_the_line(
            line in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let names = vec!["JSESSIONID".to_string()];
            match observe_set_cookie(&line, &names) {
                Observed::Other | Observed::Cleared(None) => {}
                Observed::Set(v) | Observed::Cleared(Some(v)) => {
                    prop_assert!(!v.is_empty());
                    prop_assert!(is_piece_of(&v, &line));
                }
            }
        }

        #[test]
        fn a_session_cookie_is_set_unless_it_is_empty_or_expired(
            value in "[A-Za-z0-9]{0,20}",
            max_age in proptest::option::of(-3i64..3),
            past in proptest::option::of(any::<bool>()),
            other_name in any::<bool>(),
        ) {
            let name = if other_name { "OTHER" } else { "JSESSIONID" };
            let mut line = format!("{name}={value}; Path=/");
            if let Some(age) = max_age {
                line.push_str(&format!("; Max-Age={age}"));
            }
            if let Some(past) = past {
                line.push_str(if past { "; Expires=Thu, 01 Jan 1970 00:00:00 GMT" } else { "; Expires=Fri, 01 Jan 2100 00:00:00 GMT" });
            }
            let expected = if other_name {
                Observed::Other
            } else if value.is_empty() {
                Observed::Cleared(None)
            } else if max_age.map_or(past == Some(true), |a| a <= 0) {
                // RFC 6265 5.3 step 3: Max-Age, when present, wins over Expires.
                Observed::Cleared(Some(value.clone().into_bytes()))
            } else {
                Observed::Set(value.clone().into_bytes())
            };
            prop_assert_eq!(observe_set_cookie(line.as_bytes(), &["JSESSIONID".to_string()]), expected);
        }
    }
}

mod config_loader {
    //! The config loader (`sticky_proxy::config::load_str`, `extension::load_str_with`).
    use super::*;

    proptest! {
        #[test]
        fn the_config_loader_never_panics_on_arbitrary_text(text in "[ -~\\n]{0,400}") {
            let _ = load_str(&text);
        }

        #[test]
        fn the_config_loader_never_panics_on_mutated_valid_configs(
            position in 0usize..400,
            insert in "[ -~]{0,8}",
        ) {
            let valid = "sticky:\n  listeners: [{ addr: \"127.0.0.1:6188\" }]\n  pools:\n    - name: web\n      backends: [{ name: iis1, addr: \"127.0.0.1:9001\", weight: 2 }]\n      health_check: { type: http, path: /healthz }\n      affinity:\n        cookie: { secret: \"0123456789abcdef0123\", same_site: lax, max_age_seconds: 60 }\n        hash: { sources: [{ type: header, name: X-Tenant }], balance_factor: 1.5 }\n        learn: { presets: [j2ee], table: { capacity: 10 } }\n";
            let at = position.min(valid.len());
            let mutated = format!("{}{}{}", &valid[..at], insert, &valid[at..]);
            if let Err(e) = load_str(&mutated) {
                prop_assert!(e.field.starts_with("sticky") || e.field == "yaml", "{}", e);
                prop_assert!(!e.to_string().contains('\n'));
            }
        }

        #[test]
        fn an_accepted_cookie_config_gives_distinct_values_and_well_formed_set_cookie_lines(
            names in proptest::collection::vec(backend_name(), 1..4),
            arr in any::<bool>(),
            cookie_name in prop_oneof![Just("ARRAffinity".to_string()), "[ -~]{0,10}", "\\PC{1,4}"],
            path in attribute(),
            domain in proptest::option::of(attribute()),
            max_age in proptest::option::of(prop_oneof![Just(-1i64), Just(0i64), 1i64..100_000, Just(i64::MAX)]),
            same_site in proptest::option::of(prop_oneof![Just("lax"), Just("strict"), Just("none"), Just("Lax"), Just("bogus")]),
            secure in any::<bool>(),
        ) {
            let backends: Vec<String> = names
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{{ name: {}, addr: \"127.0.0.1:{}\" }}", yaml_string(n), 9001 + i))
                .collect();
            let mut cookie = format!("name: {}, path: {}, secure: {secure}", yaml_string(&cookie_name), yaml_string(&path));
            cookie.push_str(if arr { ", format: arr" } else { ", secret: \"0123456789abcdef0123\"" });
            if let Some(domain) = &domain {
                cookie.push_str(&format!(", domain: {}", yaml_string(domain)));
            }
            if let Some(age) = max_age {
                cookie.push_str(&format!(", max_age_seconds: {age}"));
            }
            if let Some(same_site) = same_site {
                cookie.push_str(&format!(", same_site: {same_site}"));
            }
            let yaml = format!(
                "sticky:\n  listeners: [{{ addr: \"127.0.0.1:6188\" }}]\n  pools:\n    - name: web\n      backends: [{}]\n      affinity:\n        cookie: {{ {cookie} }}\n",
                backends.join(", ")
            );
            let config = match load_str(&yaml) {
                Ok(config) => config,
                Err(e) => {
                    prop_assert!(e.field.starts_with("sticky"), "{}", e);
                    prop_assert!(!e.to_string().contains('\n'));
                    return Ok(());
                }
            };
            let pool = &config.pools[0];
            let cookie = pool.affinity.as_ref().and_then(|a| a.cookie.as_ref()).unwrap();
            let values: Vec<String> = pool.backends.iter().map(|b| value_text(&cookie.format, &pool.name, &b.name)).collect();
            let table = CookieTable::new(&cookie.format, &pool.name, pool.backends.iter().map(|b| b.name.as_str()));
            for (i, value) in values.iter().enumerate() {
                prop_assert_eq!(
                    table.lookup(value.as_bytes()), Some(i),
                    "backend {:?}'s cookie names another backend (names {:?})", pool.backends[i].name, names
                );
                for tls in [false, true] {
                    let line = set_cookie_line(cookie, &cookie.name, value, false, tls);
                    prop_assert!(http::HeaderValue::from_str(&line).is_ok(), "not a header value: {:?}", line);
                    let parsed = ::cookie::Cookie::parse(line.as_str());
                    prop_assert!(parsed.is_ok(), "{:?}", line);
                    let parsed = parsed.unwrap();
                    prop_assert_eq!(parsed.name(), cookie.name.as_str());
                    prop_assert_eq!(parsed.value(), value.as_str());
                    prop_assert_eq!(parsed.path(), Some(cookie.path.as_str()));
                    // Secure: on TLS unless `secure: false`; on plain HTTP only if asked (or SameSite=None).
                    let same_site_none = cookie.same_site == Some(sticky_proxy::config::SameSite::None);
                    let expected_secure = cookie.secure.unwrap_or(tls) || same_site_none;
                    prop_assert_eq!(parsed.secure().unwrap_or(false), expected_secure, "{:?}", line);
                }
            }
        }

        #[test]
        fn the_config_loader_with_extensions_accepts_exactly_the_registered_custom_sources(
            name in prop_oneof![Just("tenant".to_string()), "[a-z]{0,8}", "\\PC{0,6}"],
            factor in prop_oneof![Just("1.25".to_string()), Just("1.0".to_string()), Just("-2".to_string()), Just("nan".to_string()), Just(".inf".to_string()), Just(".nan".to_string()), "[0-9.e+-]{1,6}"],
        ) {
            let yaml = format!(
                "sticky:\n  listeners: [{{ addr: \"127.0.0.1:6188\" }}]\n  pools:\n    - name: web\n      backends: [{{ name: iis1, addr: \"127.0.0.1:9001\" }}]\n      affinity:\n        hash: {{ sources: [{{ type: custom, name: {} }}], balance_factor: {factor} }}\n",
                yaml_string(&name)
            );
            let extensions = Extensions::default().with_key_source("tenant", Tenant);
            match load_str_with(&yaml, &extensions) {
                Ok(config) => {
                    prop_assert_eq!(name.as_str(), "tenant");
                    let hash = config.pools[0].affinity.as_ref().and_then(|a| a.hash.as_ref());
                    prop_assert!(hash.is_some_and(|h| h.balance_factor.is_none_or(|f| f > 1.0 && f <= 100.0)));
                }
                Err(e) => {
                    prop_assert!(e.field.starts_with("sticky"), "{}", e);
                    prop_assert!(!e.to_string().contains('\n'));
                }
            }
            // Without the registration the same text never loads (`config::load_str` alone
            // checks the shape; the names are checked against what a program registered).
            prop_assert!(load_str_with(&yaml, &Extensions::default()).is_err());
        }
    }
}
