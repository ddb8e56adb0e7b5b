//! Who may call what on the admin listener, as pure functions: the endpoints and their one
//! method (404 for a path that is none of them, 405 with `Allow` for another method), the
//! bearer token (its scheme in any case), callers on this machine, and which requests need the
//! token (and the refusal: 401 without one, 403 for a wrong one or none configured).

/// The method an admin path is served with, or `None` when the admin API serves no such path
/// (404). Keep in step with the table at the top of `admin/mod.rs` and its `match`.
pub(super) fn allowed_method(segments: &[&str]) -> Option<&'static str> {
    match segments {
        path if super::dashboard::is_asset(path) => Some("GET"),
        ["healthz"] | ["readyz"] | ["metrics"] => Some("GET"),
        ["api", "status"] | ["api", "auth"] => Some("GET"),
        ["api", "pools"] | ["api", "pools", _] => Some("GET"),
        ["api", "pools", _, "backends"] => Some("POST"),
        ["api", "pools", _, "backends", _] => Some("DELETE"),
        ["api", "pools", _, "backends", _, "state" | "close-upgraded"] => Some("POST"),
        ["api", "pools", _, "tables", _, "entries" | "lookup"] => Some("GET"),
        ["api", "pools", _, "tables", _, "delete"] => Some("POST"),
        _ => None,
    }
}

/// Why a request that needs the admin token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// No token is configured: mutations (and remote reads) are off. 403.
    NoTokenConfigured,
    /// No `Authorization: Bearer` header. 401.
    Missing,
    /// A token that is not the configured one. 403.
    Wrong,
}

impl Refused {
    /// The status the refusal is answered with.
    pub(super) fn status(self) -> http::StatusCode {
        match self {
            Refused::Missing => http::StatusCode::UNAUTHORIZED,
            Refused::NoTokenConfigured | Refused::Wrong => http::StatusCode::FORBIDDEN,
        }
    }

    /// The message the refusal is answered with (it never shows the token).
    pub(super) fn message(self) -> &'static str {
        match self {
            Refused::NoTokenConfigured => {
                "no admin token is configured: mutations (and remote reads) are off"
            }
            Refused::Missing => "bearer token required",
            Refused::Wrong => "wrong token",
        }
    }
}

/// Check an `Authorization` header value against the configured token (compared in constant
/// time). `expected` is `None` when no token is configured: everything is refused.
pub(super) fn check_token(expected: Option<&str>, header: Option<&[u8]>) -> Result<(), Refused> {
    use subtle::ConstantTimeEq;
    let expected = expected.ok_or(Refused::NoTokenConfigured)?;
    let given = header.and_then(bearer_token).ok_or(Refused::Missing)?;
    if bool::from(given.ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(Refused::Wrong)
    }
}

/// The token of an `Authorization: Bearer <token>` header value. The scheme is matched in any
/// case (RFC 9110 §11.1: `bearer`, `BEARER`), followed by one or more spaces; `None` for another
/// scheme or no token.
pub(super) fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let space = header.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = header.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Is the caller on this machine: a loopback address (IPv4-mapped ones included) or no IP
/// address at all (a Unix socket)? Others may use the admin API only with `allow_remote`, and
/// then need the token for reads too ([`token_required`]).
pub(super) fn is_loopback_caller(caller: Option<std::net::IpAddr>) -> bool {
    caller.is_none_or(|ip| ip.to_canonical().is_loopback())
}

/// The first value of query parameter `name`, percent- and `+`-decoded (so that ids holding
/// `&`, `=` or `+` can be looked up as `?id=a%26b`).
pub(super) fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// Whether a request needs the bearer token: every mutation, the token check `/api/auth`, and,
/// from callers not on loopback (`allow_remote`), every read except the liveness and readiness
/// probes and the dashboard's files (which hold no data: the page asks for the token, then
/// reads the API with it) — the API shows backend addresses and session tables.
pub(super) fn token_required(is_mutation: bool, loopback_caller: bool, segments: &[&str]) -> bool {
    let open_to_remote =
        matches!(segments, ["healthz"] | ["readyz"]) || super::dashboard::is_asset(segments);
    is_mutation || matches!(segments, ["api", "auth"]) || (!loopback_caller && !open_to_remote)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_has_one_method_and_other_paths_none() {
        for (path, method) in [
            ("", Some("GET")),
            ("dashboard.js", Some("GET")),
            ("dashboard.css", Some("GET")),
            ("favicon.svg", Some("GET")),
            ("api/status", Some("GET")),
            ("api/auth", Some("GET")),
            ("healthz", Some("GET")),
            ("metrics", Some("GET")),
            ("api/pools", Some("GET")),
            ("api/pools/web", Some("GET")),
            ("api/pools/web/backends", Some("POST")),
            ("api/pools/web/backends/iis1", Some("DELETE")),
            ("api/pools/web/backends/iis1/state", Some("POST")),
            ("api/pools/web/backends/iis1/close-upgraded", Some("POST")),
            ("api/pools/web/tables/learn/entries", Some("GET")),
            ("api/pools/web/tables/learn/lookup", Some("GET")),
            ("api/pools/web/tables/learn/delete", Some("POST")),
            ("api", None),
            ("api/nope", None),
            ("api/pools/web/backends/iis1/state/x", None),
            ("api/pools/web/tables/learn", None),
            ("nope", None),
            ("dashboard.html", None),
            ("api/status/x", None),
            ("/", None),
        ] {
            let segments: Vec<&str> = path.split('/').collect();
            assert_eq!(allowed_method(&segments), method, "{path}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for (header, token) in [
            (&b"Bearer abc"[..], Some(&b"abc"[..])),
            (b"bearer abc", Some(b"abc")),
            (b"BEARER abc", Some(b"abc")),
            (b"BeArEr   abc ", Some(b"abc")),
            (b"Bearer", None),
            (b"Bearer ", None),
            (b"Bearerabc", None),
            (b"Basic abc", None),
            (b"Bearer\tabc", None),
            (b" Bearer abc", None),
            (b"", None),
        ] {
            let shown = String::from_utf8_lossy(header);
            assert_eq!(bearer_token(header), token, "{shown:?}");
        }
    }

    #[test]
    fn a_missing_token_is_401_and_a_wrong_one_or_none_configured_403() {
        let token = Some("0123456789abcdef");
        assert_eq!(check_token(token, Some(b"Bearer 0123456789abcdef")), Ok(()));
        assert_eq!(check_token(token, None), Err(Refused::Missing));
        assert_eq!(check_token(token, Some(b"Basic x")), Err(Refused::Missing));
        assert_eq!(
            check_token(token, Some(b"Bearer 0123456789abcdeF")),
            Err(Refused::Wrong)
        );
        assert_eq!(
            check_token(token, Some(b"Bearer 0123")),
            Err(Refused::Wrong)
        );
        assert_eq!(
            check_token(None, Some(b"Bearer 0123456789abcdef")),
            Err(Refused::NoTokenConfigured)
        );
        assert_eq!(Refused::Missing.status(), 401);
        assert_eq!(Refused::Wrong.status(), 403);
        assert_eq!(Refused::NoTokenConfigured.status(), 403);
    }

    #[test]
    fn remote_callers_need_the_token_for_everything_but_the_probes() {
        assert!(!token_required(false, true, &["api", "pools"]));
        assert!(token_required(false, false, &["api", "pools"]));
        assert!(token_required(false, false, &["metrics"]));
        assert!(!token_required(false, false, &["healthz"]));
        assert!(!token_required(false, false, &["readyz"]));
        assert!(token_required(true, true, &["api", "pools", "web"]));
        assert!(!token_required(false, false, &[""]));
        assert!(!token_required(false, false, &["dashboard.js"]));
        assert!(token_required(false, false, &["api", "status"]));
        assert!(token_required(true, false, &[""]));
    }

    #[test]
    fn the_token_check_always_needs_the_token() {
        assert!(token_required(false, true, &["api", "auth"]));
        assert!(token_required(false, false, &["api", "auth"]));
        assert!(!token_required(false, true, &["api", "status"]));
    }

    #[test]
    fn query_parameters_are_percent_decoded() {
        assert_eq!(query_param("id=a%26b%3Dc&x=1", "id").unwrap(), "a&b=c");
        assert_eq!(query_param("x=1&id=a+b", "id").unwrap(), "a b");
        assert_eq!(query_param("id=%2B1", "id").unwrap(), "+1");
        assert!(query_param("x=1", "id").is_none());
    }

    #[test]
    fn loopback_callers_are_the_ones_on_this_machine() {
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        assert!(is_loopback_caller(ip("127.0.0.1")));
        assert!(is_loopback_caller(ip("127.9.9.9")));
        assert!(is_loopback_caller(ip("::1")));
        assert!(is_loopback_caller(ip("::ffff:127.0.0.1")));
        assert!(is_loopback_caller(None));
        assert!(!is_loopback_caller(ip("10.0.0.1")));
        assert!(!is_loopback_caller(ip("192.168.1.5")));
        assert!(!is_loopback_caller(ip("2001:db8::1")));
    }
}
