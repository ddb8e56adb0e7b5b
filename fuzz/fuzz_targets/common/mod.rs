//! Helpers shared by the fuzz targets: an independent reference reading of a `Cookie` header
//! (RFC 6265 §4.2.1 / §5.4 as the proxy documents it), written without the proxy's code, so that
//! the targets compare the proxy's scanner against it rather than against itself.
#![allow(dead_code)]

/// Trim spaces and horizontal tabs (the `OWS` of RFC 9110) from both ends.
pub fn trim(mut s: &[u8]) -> &[u8] {
    while let Some((b' ' | b'\t', rest)) = s.split_first() {
        s = rest;
    }
    while let Some((b' ' | b'\t', rest)) = s.split_last() {
        s = rest;
    }
    s
}

/// The non-empty `;`-separated pairs of a `Cookie` header, trimmed, in order.
pub fn pairs(header: &[u8]) -> Vec<&[u8]> {
    header
        .split(|b| *b == b';')
        .map(trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// A pair's name: before its first `=`, trimmed; a pair without `=` is all name.
pub fn name(pair: &[u8]) -> &[u8] {
    match pair.iter().position(|b| *b == b'=') {
        Some(eq) => trim(&pair[..eq]),
        None => pair,
    }
}

/// A pair's value: after its first `=`, trimmed, one pair of surrounding double quotes removed;
/// `None` for a pair without `=`.
pub fn value(pair: &[u8]) -> Option<&[u8]> {
    let eq = pair.iter().position(|b| *b == b'=')?;
    let v = trim(&pair[eq + 1..]);
    Some(if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        &v[1..v.len() - 1]
    } else {
        v
    })
}

/// The values of every cookie called `wanted`, in order.
pub fn values<'h>(header: &'h [u8], wanted: &[u8]) -> Vec<&'h [u8]> {
    pairs(header)
        .into_iter()
        .filter(|p| p.contains(&b'=') && name(p) == wanted)
        .filter_map(value)
        .collect()
}

/// Is `part` a slice that points into `whole` (borrowed from it, not copied)?
pub fn borrowed_from(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

/// Is `needle` a contiguous piece of `haystack`?
pub fn is_piece_of(needle: &[u8], haystack: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A cookie name as the config validator accepts it: RFC 6265 token characters only, at least
/// one. Anything else is mapped into that alphabet so the structured input stays useful.
pub fn token(raw: &[u8], fallback: &str) -> String {
    const TCHAR: &[u8] =
        b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let s: String = raw
        .iter()
        .take(24)
        .map(|b| TCHAR[*b as usize % TCHAR.len()] as char)
        .collect();
    if s.is_empty() {
        fallback.to_string()
    } else {
        s
    }
}
