//! Property tests (proptest) over the parsers that take client or operator input: the cookie
//! scanner and codec, hash-key extraction, and the config loader. They run a few hundred cases
//! each in `make test`; `PROPTEST_CASES=100000 cargo test --release --test properties` runs a
//! long campaign (see the README).

use proptest::prelude::*;
use sticky_proxy::affinity::cookie::{
    contains_any, cookie_values, value_text, without_cookies, CookieTable,
};
use sticky_proxy::affinity::key::{self, RequestView};
use sticky_proxy::config::{load_str, CookieFormat, KeySourceConfig};

fn keyed() -> CookieFormat {
    CookieFormat::Keyed {
        secret: b"property-secret-0123456789".to_vec(),
    }
}

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
            let source = key::from_config(config, &Default::default()).unwrap();
            if let Some(k) = source.key(&view) {
                prop_assert!(!k.is_empty());
            }
        }
    }

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
}
