//! The file format of `sticky.routes` and `sticky.default_route`.

use serde::Deserialize;

/// `sticky.routes[i]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// The conditions; all must hold (absent: every request).
    #[serde(rename = "match", default)]
    pub matcher: RawMatch,
    /// The pool's name.
    pub pool: String,
    /// A class from `sticky.classes`, or `none`; absent: the pool's own `affinity`.
    pub class: Option<String>,
    /// Rust filters run for this route's requests, in this order, after the listener's.
    #[serde(default)]
    pub filters: Vec<String>,
}

/// `sticky.routes[i].match` — every given condition must hold.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// `shop.example.com`, or `*.example.com` for any subdomain.
    pub host: Option<String>,
    /// The path must start with this (`/…`).
    pub path_prefix: Option<String>,
    /// Compare `path_prefix` ignoring ASCII case (HAProxy `path_beg -i`, NGINX `~*`), as IIS
    /// backends do.
    #[serde(default)]
    pub ignore_case: bool,
    /// The methods allowed; empty: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// A header that must be present (with a value, if given).
    pub header: Option<RawHeaderMatch>,
}

/// `sticky.routes[i].match.header`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderMatch {
    /// The header's name.
    pub name: String,
    /// Absent: the header only has to be present.
    pub value: Option<String>,
}

/// `sticky.default_route`: a pool (and class) for unmatched requests, or a status.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaultRoute {
    /// A pool for unmatched requests.
    pub pool: Option<String>,
    /// With this class (absent: the pool's own affinity).
    pub class: Option<String>,
    /// Or a status the proxy answers with.
    pub status: Option<u16>,
}
