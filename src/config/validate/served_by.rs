//! Validation of a pool's `served_by_header`: a header name that HTTP and the proxy give no
//! meaning of their own, and backend names that can be sent in it.

use super::super::{BackendConfig, ConfigError};
use super::{parse_header_name, Result};

/// Headers that mean something to HTTP or to the proxy, which an annotation must not replace.
const RESERVED: [&str; 12] = [
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "keep-alive",
    "location",
    "proxy-connection",
    "set-cookie",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `field` (the pool's `served_by_header`, `name` as written): a valid header name, not one
/// HTTP or the proxy gives a meaning to (`opt_out`: the pool's opt-out header); then every
/// backend name of `pool_field` must be a valid header value (visible ASCII).
pub(super) fn validate(
    field: &str,
    name: Option<&str>,
    opt_out: &http::HeaderName,
    pool_field: &str,
    backends: &[BackendConfig],
) -> Result<Option<http::HeaderName>> {
    let Some(name) = name else {
        return Ok(None);
    };
    let header = parse_header_name(field, name)?;
    if RESERVED.contains(&header.as_str()) || header == *opt_out {
        return Err(ConfigError::new(
            field,
            format!(
                "{name:?} has a meaning of its own in a response; choose another name, such as X-Served-By"
            ),
        ));
    }
    for (j, backend) in backends.iter().enumerate() {
        // (`HeaderValue` would take UTF-8 bytes as obs-text, which clients read in any charset.)
        if !backend.name.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err(ConfigError::new(
                format!("{pool_field}.backends[{j}].name"),
                format!(
                    "sent in served_by_header, so it must be visible ASCII: {:?}",
                    backend.name
                ),
            ));
        }
    }
    Ok(Some(header))
}
