//! The dashboard: one page (`GET /`), its script (`GET /dashboard.js`, a module importing
//! `/dashboard-pools.js`), style (`GET /dashboard.css`) and icon (`GET /favicon.svg`),
//! embedded in the binary from `src/admin/assets/` (no CDN, no font, no build step). The page
//! holds no data: it reads `/api/status` and `/api/pools` every 2 s, with the admin token from
//! the tab's `sessionStorage` as `Authorization: Bearer` when one was entered, and posts the
//! backend actions to the API.
//!
//! Every admin answer carries [`SECURITY_HEADERS`]: the Content-Security-Policy allows only the
//! page's own resources (`default-src 'self'`: no inline script or style, no other origin),
//! and the page cannot be framed.

use super::reply::Reply;
use http::header::X_FRAME_OPTIONS;
use http::header::{HeaderName, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS};
use http::StatusCode;

/// The headers added to every admin answer (with `Cache-Control: no-store`).
pub(super) const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (
        CONTENT_SECURITY_POLICY,
        "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (X_FRAME_OPTIONS, "DENY"),
    (REFERRER_POLICY, "no-referrer"),
];

const PAGE: &str = include_str!("assets/dashboard.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const POOLS_SCRIPT: &str = include_str!("assets/dashboard-pools.js");
const STYLE: &str = include_str!("assets/dashboard.css");
const ICON: &str = include_str!("assets/favicon.svg");

/// The dashboard's files: path segments, content type, body.
const FILES: [(&str, &str, &str); 5] = [
    ("", "text/html; charset=utf-8", PAGE),
    ("dashboard.js", "text/javascript; charset=utf-8", SCRIPT),
    (
        "dashboard-pools.js",
        "text/javascript; charset=utf-8",
        POOLS_SCRIPT,
    ),
    ("dashboard.css", "text/css; charset=utf-8", STYLE),
    ("favicon.svg", "image/svg+xml", ICON),
];

/// Is `segments` one of the dashboard's files (`[""]` is `/`)?
pub(super) fn is_asset(segments: &[&str]) -> bool {
    matches!(segments, [one] if FILES.iter().any(|(path, _, _)| path == one))
}

/// The dashboard file at `segments` (`[""]` is `/`), or `None` when it is no dashboard path.
pub(super) fn asset(segments: &[&str]) -> Option<Reply> {
    let [one] = segments else {
        return None;
    };
    let (_, content_type, body) = FILES.iter().find(|(path, _, _)| path == one)?;
    Some(Reply {
        status: StatusCode::OK,
        content_type: (*content_type).into(),
        body: body.as_bytes().to_vec(),
        allow: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_script_and_style() {
        assert!(PAGE.contains(r#"<script type="module" src="/dashboard.js"></script>"#));
        assert!(SCRIPT.contains("from './dashboard-pools.js';"));
        assert!(PAGE.contains(r#"<link rel="stylesheet" href="/dashboard.css">"#));
        assert!(PAGE.contains(r#"<link rel="icon" href="/favicon.svg" type="image/svg+xml">"#));
        // Inline script or style would be refused by the policy; nothing from elsewhere.
        for forbidden in [
            "<script>",
            "<style",
            " style=",
            " onclick=",
            "http://",
            "https://",
        ] {
            assert!(!PAGE.contains(forbidden), "{forbidden}");
        }
        // The SVG namespace is a name, not an address the page loads.
        let script = SCRIPT.replace("'http://www.w3.org/2000/svg'", "");
        for forbidden in [
            "http://",
            "https://",
            "eval(",
            "innerHTML",
            "?token",
            "&token",
        ] {
            assert!(!script.contains(forbidden), "{forbidden}");
        }
        assert!(!STYLE.contains("@import") && !STYLE.contains("url("));
    }

    #[test]
    fn the_dashboard_paths_are_the_page_its_script_and_its_style() {
        let ct = |s: &[&str]| asset(s).map(|r| r.content_type);
        assert_eq!(ct(&[""]).as_deref(), Some("text/html; charset=utf-8"));
        assert_eq!(
            ct(&["dashboard.js"]).as_deref(),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            ct(&["dashboard.css"]).as_deref(),
            Some("text/css; charset=utf-8")
        );
        assert_eq!(ct(&["favicon.svg"]).as_deref(), Some("image/svg+xml"));
        assert!(asset(&["dashboard.html"]).is_none());
        assert!(asset(&["favicon.ico"]).is_none());
        assert!(asset(&["", ""]).is_none());
        assert!(is_asset(&[""]) && is_asset(&["favicon.svg"]) && !is_asset(&["api", "pools"]));
    }
}
