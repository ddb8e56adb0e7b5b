//! Unit tests for config validation: defaults, and the error for each impossible value.

use super::super::{load_str, Balance, CookieFormat, HealthCheckKind, KeySourceConfig, SameSite};
use std::time::Duration;

const MINIMAL: &str = "sticky:\n  listeners: [{ addr: \"127.0.0.1:6188\" }]\n  pools:\n    - name: web\n      backends: [{ name: iis1, addr: \"127.0.0.1:9001\" }]\n      affinity: { cookie: { secret: \"0123456789abcdef\" } }\n";

fn error_of(yaml: &str) -> String {
    load_str(yaml).unwrap_err().to_string()
}

#[test]
fn a_minimal_config_gets_the_documented_defaults() {
    let config = load_str(MINIMAL).unwrap();
    let pool = &config.pools[0];
    assert_eq!(pool.balance, Balance::RoundRobin);
    assert_eq!(pool.backends[0].weight, 1);
    assert!(pool.health_check.is_none());
    assert_eq!(pool.timeouts.connect, Duration::from_secs(3));
    assert_eq!(pool.timeouts.read, Duration::from_secs(60));
    assert_eq!(pool.opt_out_header.as_str(), "arr-disable-session-affinity");
    let cookie = pool.affinity.as_ref().unwrap().cookie.as_ref().unwrap();
    assert_eq!(cookie.name, "ARRAffinity");
    assert!(matches!(cookie.format, CookieFormat::Keyed { .. }));
    assert_eq!(cookie.path, "/");
    assert!(cookie.http_only && cookie.secure.is_none() && cookie.indirect && cookie.nocache);
    assert_eq!(cookie.same_site, None);
    assert_eq!(cookie.max_age, None);
    assert_eq!(cookie.twin_name, None);
    assert_eq!(config.listeners[0].pool, 0);
    assert!(config.hide_headers.is_empty());
}

#[test]
fn health_check_defaults_follow_haproxy() {
    let yaml = MINIMAL.replace(
        "      affinity:",
        "      health_check: { type: http }\n      affinity:",
    );
    let check = load_str(&yaml).unwrap().pools[0]
        .health_check
        .clone()
        .unwrap();
    assert_eq!(check.kind, HealthCheckKind::Http);
    assert_eq!(check.path, "/");
    assert_eq!(check.expect_status, 200);
    assert_eq!(check.interval, Duration::from_secs(2));
    assert_eq!((check.rise, check.fall), (2, 3));
}

#[test]
fn same_site_none_is_accepted_with_secure() {
    let yaml = MINIMAL.replace(
        "secret: \"0123456789abcdef\"",
        "secret: \"0123456789abcdef\", secure: true, same_site: none",
    );
    let config = load_str(&yaml).unwrap();
    let cookie = config.pools[0]
        .affinity
        .as_ref()
        .unwrap()
        .cookie
        .as_ref()
        .unwrap();
    assert_eq!(cookie.same_site, Some(SameSite::None));
}

#[test]
fn disabled_affinity_still_validates_its_cookie_section() {
    let yaml = MINIMAL.replace("affinity: { cookie:", "affinity: { enabled: false, cookie:");
    assert!(load_str(&yaml).unwrap().pools[0].affinity.is_none());
    let bad = yaml.replace("secret: \"0123456789abcdef\"", "name: \"a b\", format: arr");
    assert!(error_of(&bad).starts_with("sticky.pools[0].affinity.cookie.name:"));
}

#[test]
fn impossible_values_name_their_field_and_value() {
    let cases = [
        (
            "\"127.0.0.1:9001\" }]",
            "\"127.0.0.1:99999\" }]",
            "sticky.pools[0].backends[0].addr: not a socket address: \"127.0.0.1:99999\"",
        ),
        (
            "name: iis1",
            "name: \"\"",
            "sticky.pools[0].backends[0].name: must not be empty",
        ),
        (
            "- name: web",
            "- name: \"\"",
            "sticky.pools[0].name: must not be empty",
        ),
        (
            "\"0123456789abcdef\"",
            "\"0123456789abcdef\", path: nope",
            "sticky.pools[0].affinity.cookie.path: must start with '/': \"nope\"",
        ),
        (
            "\"0123456789abcdef\"",
            "\"0123456789abcdef\", domain: \"\"",
            "sticky.pools[0].affinity.cookie.domain: must not be empty",
        ),
        (
            "\"0123456789abcdef\"",
            "\"0123456789abcdef\", secret_env: X",
            "sticky.pools[0].affinity.cookie.secret: format \"keyed\" needs exactly one of",
        ),
    ];
    for (from, to, expected) in cases {
        let yaml = MINIMAL.replace(from, to);
        assert_ne!(yaml, MINIMAL, "{from} not found");
        let error = error_of(&yaml);
        assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
    }
}

#[test]
fn the_secret_never_appears_in_an_error_or_a_debug_print() {
    let yaml = MINIMAL.replace("0123456789abcdef", "tooshort");
    let error = error_of(&yaml);
    assert!(!error.contains("tooshort"), "{error}");
    let config = load_str(MINIMAL).unwrap();
    assert!(!format!("{config:?}").contains("0123456789abcdef"));
}

#[test]
fn a_pool_without_an_affinity_section_has_no_affinity() {
    let yaml = MINIMAL.replace(
        "      affinity: { cookie: { secret: \"0123456789abcdef\" } }\n",
        "",
    );
    assert_ne!(yaml, MINIMAL);
    assert!(load_str(&yaml).unwrap().pools[0].affinity.is_none());
}

#[test]
fn hash_sources_are_parsed_in_order_with_their_options() {
    let yaml = MINIMAL.replace(
        "affinity: { cookie: { secret: \"0123456789abcdef\" } }",
        "affinity:\n        hash:\n          balance_factor: 1.25\n          sources:\n            - { type: cookie, name: CUserID, regex: \"^([0-9.A-Za-z]+)\" }\n            - { type: header, name: X-Tenant }\n            - { type: query, params: [uid, t] }\n            - { type: path }\n            - { type: path_and_query }\n            - { type: host }\n            - { type: client_ip, ipv4_prefix: 24 }\n  trusted_proxies: [10.0.0.0/8, 192.168.1.1]",
    );
    let config = load_str(&yaml).unwrap();
    let hash = config.pools[0]
        .affinity
        .as_ref()
        .unwrap()
        .hash
        .as_ref()
        .unwrap();
    assert_eq!(hash.sources.len(), 7);
    assert_eq!(hash.balance_factor, Some(1.25));
    assert!(matches!(
        hash.sources[6],
        KeySourceConfig::ClientIp {
            ipv4_prefix: 24,
            ipv6_prefix: 128
        }
    ));
    assert_eq!(config.trusted_proxies.len(), 2);
}

#[test]
fn bad_hash_settings_name_their_field() {
    let with = |hash: &str| {
        MINIMAL.replace(
            "affinity: { cookie: { secret: \"0123456789abcdef\" } }",
            &format!("affinity: {{ hash: {hash} }}"),
        )
    };
    let cases = [
        (
            "{ sources: [] }",
            "sticky.pools[0].affinity.hash.sources: at least one key source is required",
        ),
        (
            "{ sources: [{ type: path }], balance_factor: 1.0 }",
            "sticky.pools[0].affinity.hash.balance_factor: must be above 1.0",
        ),
        (
            "{ sources: [{ type: cookie, name: C, regex: \"(\" }] }",
            "sticky.pools[0].affinity.hash.sources[0].regex: not a valid regex: \"(\"",
        ),
        (
            "{ sources: [{ type: cookie, name: C, regex: \"^abc\" }] }",
            "sticky.pools[0].affinity.hash.sources[0].regex: needs a capture group",
        ),
        (
            "{ sources: [{ type: client_ip, ipv4_prefix: 33 }] }",
            "sticky.pools[0].affinity.hash.sources[0].ipv4_prefix: must be 0 to 32: 33",
        ),
        (
            "{ sources: [{ type: query, params: [] }] }",
            "sticky.pools[0].affinity.hash.sources[0].params",
        ),
        (
            "{ sources: [{ type: header, name: \"a b\" }] }",
            "sticky.pools[0].affinity.hash.sources[0].name: not a header name",
        ),
        (
            "{ sources: [{ type: url }] }",
            "sticky.pools[0].affinity.hash.sources[0].type: unknown variant `url`",
        ),
    ];
    for (hash, expected) in cases {
        let error = error_of(&with(hash));
        assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
    }
}

#[test]
fn unreachable_route_warnings_respect_ignore_case() {
    let routed = |first: &str, second: &str| {
        let yaml = format!(
            "sticky:\n  listeners: [{{ addr: \"127.0.0.1:6188\" }}]\n  pools:\n    - {{ name: web, backends: [{{ name: a, addr: \"127.0.0.1:9001\" }}] }}\n  routes:\n    - {{ match: {first}, pool: web }}\n    - {{ match: {second}, pool: web }}\n"
        );
        load_str(&yaml).unwrap().warnings
    };
    // A case-insensitive /app covers a case-sensitive /APP/x ...
    let w = routed(
        "{ path_prefix: /app, ignore_case: true }",
        "{ path_prefix: /APP/x }",
    );
    assert!(w.iter().any(|w| w.contains("unreachable")), "{w:?}");
    // ... but a case-sensitive /app does not cover a case-insensitive /app/x.
    let w = routed(
        "{ path_prefix: /app }",
        "{ path_prefix: /app/x, ignore_case: true }",
    );
    assert!(!w.iter().any(|w| w.contains("unreachable")), "{w:?}");
}

#[test]
fn backend_names_that_differ_only_in_unicode_case_are_duplicates() {
    // Found by a proptest property (tests/properties.rs): `Ä` and `ä` passed the ASCII-only check, yet an `arr`
    // cookie (SHA-256 of the lower-cased name) for one resolved to the other.
    for (a, b) in [
        ("\u{c4}", "\u{e4}"),
        ("\u{212a}", "k"),
        ("\u{130}", "i\u{307}"),
    ] {
        let yaml = MINIMAL.replace(
            "backends: [{ name: iis1, addr: \"127.0.0.1:9001\" }]",
            &format!(
                "backends: [{{ name: \"{a}\", addr: \"127.0.0.1:9001\" }}, {{ name: \"{b}\", addr: \"127.0.0.1:9002\" }}]"
            ),
        );
        let error = error_of(&yaml);
        assert!(
            error.starts_with("sticky.pools[0].backends[1].name: duplicate backend name"),
            "{error}"
        );
    }
}

#[test]
fn cookie_attributes_with_outer_spaces_are_refused() {
    // Found by the proptest campaign (`make fuzz`): `path: "/ "` was accepted and sent as
    // `Path=/ `, which browsers read as `Path=/`.
    for (key, value) in [("path", "/ "), ("path", " /a"), ("domain", "example.com ")] {
        let yaml = MINIMAL.replace(
            "secret: \"0123456789abcdef\"",
            &format!("secret: \"0123456789abcdef\", {key}: \"{value}\""),
        );
        assert_eq!(
            error_of(&yaml),
            format!(
                "sticky.pools[0].affinity.cookie.{key}: not a valid cookie attribute value: {value:?}"
            )
        );
    }
}

#[test]
fn listener_timeouts_default_to_30_s_for_the_head_and_60_s_idle_and_sending() {
    let timeouts = load_str(MINIMAL).unwrap().listeners[0].timeouts;
    assert_eq!(timeouts.http_request, Duration::from_secs(30));
    assert_eq!(timeouts.keepalive, Duration::from_secs(60));
    assert_eq!(timeouts.client_send, Duration::from_secs(60));
    assert_eq!(timeouts, crate::config::ClientTimeouts::default());
}

#[test]
fn listener_timeouts_are_milliseconds_each_checked_and_named_in_errors() {
    let with = |t: &str| {
        MINIMAL.replace(
            "listeners: [{ addr: \"127.0.0.1:6188\" }]",
            &format!("listeners: [{{ addr: \"127.0.0.1:6188\", timeouts: {t} }}]"),
        )
    };
    let timeouts = load_str(&with(
        "{ http_request_ms: 1500, keepalive_ms: 250, client_send_ms: 90000 }",
    ))
    .unwrap()
    .listeners[0]
        .timeouts;
    assert_eq!(timeouts.http_request, Duration::from_millis(1500));
    assert_eq!(timeouts.keepalive, Duration::from_millis(250));
    assert_eq!(timeouts.client_send, Duration::from_secs(90));
    for (t, message) in [
        (
            "{ http_request_ms: 0 }",
            "sticky.listeners[0].timeouts.http_request_ms: must be between 1 and 86400000 milliseconds: 0",
        ),
        (
            "{ http_request_ms: 60001 }",
            "sticky.listeners[0].timeouts.http_request_ms: 60001: at most 60000",
        ),
        (
            "{ keepalive_ms: 0 }",
            "sticky.listeners[0].timeouts.keepalive_ms: must be between 1 and 86400000 milliseconds: 0",
        ),
        (
            "{ client_send_ms: 86400001 }",
            "sticky.listeners[0].timeouts.client_send_ms: must be between 1 and 86400000 milliseconds: 86400001",
        ),
        (
            "{ keepalive: 5 }",
            "sticky.listeners[0].timeouts: unknown field `keepalive`",
        ),
    ] {
        let error = error_of(&with(t));
        assert!(error.contains(message), "{t}: {error}");
    }
}

#[test]
fn a_default_host_is_a_host_with_an_optional_port() {
    let with = |host: &str| {
        MINIMAL.replace(
            "      affinity:",
            &format!("      default_host: {host:?}\n      affinity:"),
        )
    };
    for good in [
        "www.example.com",
        "www.example.com:8080",
        "10.0.0.1",
        "[::1]:80",
        "localhost",
    ] {
        let config = load_str(&with(good)).unwrap();
        assert_eq!(config.pools[0].default_host.as_ref().unwrap(), good);
    }
    for bad in [
        "",
        "a b",
        "user@host",
        "host/path",
        "host:port",
        "http://host",
        "host?x",
        "h\u{e9}te",
        "[::1",
        "host:",
        "host:99999",
        "a:1:2",
        "[nope]:80",
        "[::1]x",
    ] {
        assert_eq!(
            error_of(&with(bad)),
            format!("sticky.pools[0].default_host: not a host, or host:port: {bad:?}"),
        );
    }
    assert!(load_str(MINIMAL).unwrap().pools[0].default_host.is_none());
}

#[test]
fn cookie_lifetimes_and_the_served_by_header_are_typed_and_absent_without_their_keys() {
    let cookie = |config: &crate::config::Config| {
        config.pools[0]
            .affinity
            .as_ref()
            .and_then(|a| a.cookie.clone())
            .unwrap()
    };
    assert!(cookie(&load_str(MINIMAL).unwrap()).lifetimes.is_none());
    let with = |keys: &str| {
        MINIMAL.replace(
            "secret: \"0123456789abcdef\"",
            &format!("secret: \"0123456789abcdef\", {keys}"),
        )
    };
    let idle = cookie(&load_str(&with("max_idle_seconds: 1800")).unwrap());
    let lifetimes = idle.lifetimes.unwrap();
    assert_eq!(lifetimes.max_idle, Some(Duration::from_secs(1800)));
    assert_eq!(lifetimes.max_life, None);
    assert!(
        lifetimes.accept_undated,
        "date-less values accepted by default"
    );
    let both = with("max_idle_seconds: 60, max_life_seconds: 60, accept_undated: false");
    let lifetimes = cookie(&load_str(&both).unwrap()).lifetimes.unwrap();
    assert_eq!(lifetimes.max_life, Some(Duration::from_secs(60)));
    assert!(!lifetimes.accept_undated);
    assert!(load_str(&with("max_life_seconds: 315360000")).is_ok());
    assert!(load_str(MINIMAL).unwrap().pools[0]
        .served_by_header
        .is_none());
    let served = MINIMAL.replace(
        "      affinity:",
        "      served_by_header: x-served-by\n      affinity:",
    );
    let config = load_str(&served).unwrap();
    assert_eq!(
        config.pools[0]
            .served_by_header
            .as_ref()
            .map(|h| h.as_str()),
        Some("x-served-by")
    );
}
