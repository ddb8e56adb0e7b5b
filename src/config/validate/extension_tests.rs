//! Unit tests of the parts of the section that serve Rust extensions: filter lists, and a
//! section embedded in another Pingora proxy (no listeners; the raw types' defaults).

use super::super::load_str;

const MINIMAL: &str = "sticky:\n  listeners: [{ addr: \"127.0.0.1:6188\" }]\n  pools:\n    - name: web\n      backends: [{ name: iis1, addr: \"127.0.0.1:9001\" }]\n      affinity: { cookie: { secret: \"0123456789abcdef\" } }\n";

fn error_of(yaml: &str) -> String {
    load_str(yaml).unwrap_err().to_string()
}

#[test]
fn filter_lists_are_kept_in_order_and_an_empty_or_repeated_name_is_an_error() {
    let yaml = MINIMAL.replace(
        "\"127.0.0.1:6188\" }",
        "\"127.0.0.1:6188\", filters: [stamp, auth] }",
    ) + "  routes: [{ pool: web, filters: [tenant] }]\n";
    let config = load_str(&yaml).unwrap();
    assert_eq!(config.listeners[0].filters, ["stamp", "auth"]);
    assert_eq!(config.routes[0].filters, ["tenant"]);
    assert!(load_str(MINIMAL).unwrap().listeners[0].filters.is_empty());
    let twice = yaml.replace("[stamp, auth]", "[stamp, auth, stamp]");
    assert_eq!(
        error_of(&twice),
        "sticky.listeners[0].filters[2]: \"stamp\" is listed twice (also sticky.listeners[0].filters[0])"
    );
    let empty = yaml.replace("[tenant]", "[\"\"]");
    assert_eq!(
        error_of(&empty),
        "sticky.routes[0].filters[0]: empty: name a registered filter"
    );
}

#[test]
fn an_embedded_section_may_leave_out_the_listeners_and_a_raw_cookie_has_the_file_defaults() {
    let no_listeners = MINIMAL.replace("  listeners: [{ addr: \"127.0.0.1:6188\" }]\n", "");
    assert_eq!(
        error_of(&no_listeners),
        "sticky.listeners: at least one listener is required"
    );
    let config = super::super::load_str_embedded(&no_listeners).unwrap();
    assert!(config.listeners.is_empty());
    assert_eq!(config.pools[0].name, "web");
    let cookie = super::super::raw::RawCookie::default();
    let from_file: super::super::raw::RawCookie = serde_yaml::from_str("{}").unwrap();
    assert_eq!(format!("{cookie:?}"), format!("{from_file:?}"));
    assert_eq!(
        (cookie.name.as_str(), cookie.indirect),
        ("ARRAffinity", true)
    );
}
