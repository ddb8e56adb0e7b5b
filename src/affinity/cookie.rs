//! The affinity cookie: value codec, request-side lookup, and the prebuilt `Set-Cookie` lines.
//!
//! A value is 64 lowercase hex characters and never shows a backend's name or address:
//! - `arr`: `hex(SHA-256(UTF-16LE(lowercase(name))))`, the value IIS ARR and Azure App Service
//!   issue, so sessions survive a migration from ARR;
//! - `keyed`: `hex(HMAC-SHA256(secret, "sticky-proxy/v1" 0 pool 0 name))`, which nobody without
//!   the secret can mint for a chosen backend.
//!
//! Both are deterministic, so every proxy with the same configuration issues and accepts the
//! same values without shared state. With lifetimes (`keyed` only) the value also carries its
//! dates: see [`super::lifetime`]. Values are computed once at start-up; a request only
//! hex-decodes its value into a stack buffer and compares it, in constant time, with the pool's
//! table — no allocation, no hashing of secrets on the hot path.

use super::lifetime::DatedIds;
use crate::config::{CookieConfig, CookieFormat, SameSite};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of a decoded cookie value in bytes (a SHA-256 / HMAC-SHA256 output).
pub const VALUE_LEN: usize = 32;

/// The value (raw bytes) that `format` assigns to backend `backend` of pool `pool`.
pub fn value_bytes(format: &CookieFormat, pool: &str, backend: &str) -> [u8; VALUE_LEN] {
    match format {
        CookieFormat::Arr => {
            let mut hasher = Sha256::new();
            for unit in backend.to_lowercase().encode_utf16() {
                hasher.update(unit.to_le_bytes());
            }
            hasher.finalize().into()
        }
        CookieFormat::Keyed { secret } => {
            // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            mac.update(b"sticky-proxy/v1\0");
            mac.update(pool.as_bytes());
            mac.update(b"\0");
            mac.update(backend.as_bytes());
            mac.finalize().into_bytes().into()
        }
    }
}

/// The cookie value (64 lowercase hex characters) for a backend.
pub fn value_text(format: &CookieFormat, pool: &str, backend: &str) -> String {
    hex::encode(value_bytes(format, pool, backend))
}

/// Maps cookie values back to backend indexes for one pool: the date-less values, and (`keyed`)
/// the ids of dated values ([`super::lifetime`]).
#[derive(Debug, Clone)]
pub struct CookieTable {
    values: Vec<[u8; VALUE_LEN]>,
    dated: Option<DatedIds>,
}

impl CookieTable {
    /// Build the table for the backends of a pool, in their configured order.
    pub fn new<'a>(
        format: &CookieFormat,
        pool: &str,
        backends: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let names: Vec<&str> = backends.into_iter().collect();
        CookieTable {
            values: names
                .iter()
                .map(|name| value_bytes(format, pool, name))
                .collect(),
            dated: match format {
                CookieFormat::Keyed { secret } => {
                    Some(DatedIds::new(secret, pool, names.iter().copied()))
                }
                CookieFormat::Arr => None,
            },
        }
    }

    /// The dated side of the table (`keyed` only).
    pub fn dated(&self) -> Option<&DatedIds> {
        self.dated.as_ref()
    }

    /// The backend index that `value` names, or `None` for a value that is malformed, forged,
    /// or belongs to no backend of this pool.
    pub fn lookup(&self, value: &[u8]) -> Option<usize> {
        if value.len() != VALUE_LEN * 2 {
            return None;
        }
        let mut decoded = [0u8; VALUE_LEN];
        hex::decode_to_slice(value, &mut decoded).ok()?;
        // Every entry is compared in constant time so that response timing does not reveal
        // how much of a guessed value was right.
        let mut found = None;
        for (index, known) in self.values.iter().enumerate() {
            if same_bytes(known, &decoded) {
                found = Some(index);
            }
        }
        found
    }
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ: the
/// differences of every 8-byte word are folded together and only the fold is tested (in
/// constant time, by `subtle`). Four word compares for a 32-byte value, where `subtle`'s
/// byte-wise `ct_eq` makes 32 guarded ones (about 300 instructions per backend per request).
pub fn same_bytes<const N: usize>(a: &[u8; N], b: &[u8; N]) -> bool {
    let (a_words, a_rest) = a.as_chunks::<8>();
    let (b_words, b_rest) = b.as_chunks::<8>();
    let mut difference = 0u64;
    for (x, y) in a_words.iter().zip(b_words) {
        difference |= u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y);
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        difference |= u64::from(x ^ y);
    }
    bool::from(difference.ct_eq(&0))
}

/// Iterate over the values of every cookie called `name` in a `Cookie` header value, in order.
///
/// Works on raw bytes, so a header with non-UTF-8 bytes elsewhere still yields our cookie; a
/// quoted value (`name="v"`) is unquoted. Allocation-free.
pub fn cookie_values<'h: 'n, 'n>(
    header: &'h [u8],
    name: &'n [u8],
) -> impl Iterator<Item = &'h [u8]> + 'n {
    header.split(|b| *b == b';').filter_map(move |pair| {
        let pair = trim_ows(pair);
        let eq = pair.iter().position(|b| *b == b'=')?;
        let (n, v) = (trim_ows(&pair[..eq]), trim_ows(&pair[eq + 1..]));
        if n != name {
            return None;
        }
        Some(unquote(v))
    })
}

/// Does the `Cookie` header value contain a cookie with any of these names?
pub fn contains_any<N: AsRef<[u8]>>(header: &[u8], names: &[N]) -> bool {
    header.split(|b| *b == b';').any(|pair| {
        let pair = trim_ows(pair);
        let name = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => trim_ows(&pair[..eq]),
            None => pair,
        };
        names.iter().any(|n| n.as_ref() == name)
    })
}

/// The `Cookie` header value without the cookies named in `names`, other pairs kept byte for
/// byte; `None` when nothing is left.
pub fn without_cookies<N: AsRef<[u8]>>(header: &[u8], names: &[N]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(header.len());
    for pair in header.split(|b| *b == b';') {
        let pair = trim_ows(pair);
        if pair.is_empty() {
            continue;
        }
        let name = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => trim_ows(&pair[..eq]),
            None => pair,
        };
        if names.iter().any(|n| n.as_ref() == name) {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
    }
    (!out.is_empty()).then_some(out)
}

/// The name of the cookie a `Set-Cookie` line sets (RFC 6265 §5.2: what comes before the first
/// `=` of the part before the first `;`, without surrounding whitespace); `None` for a line
/// without `=`, which browsers take as a cookie without a name. Names are compared byte for
/// byte by browsers (`arraffinity` is another cookie than `ARRAffinity`), so they are here.
pub fn set_cookie_name(line: &[u8]) -> Option<&[u8]> {
    let pair = line.split(|b| *b == b';').next().unwrap_or(line);
    let eq = pair.iter().position(|b| *b == b'=')?;
    Some(trim_ows(&pair[..eq]))
}

/// How many of these `Set-Cookie` lines set a cookie called one of `names`, and the first such
/// name; `None` when none does (the usual case: then nothing was allocated).
pub fn setting_any<'l, 'n, N: AsRef<[u8]>>(
    lines: impl Iterator<Item = &'l [u8]>,
    names: &'n [N],
) -> Option<(usize, &'n [u8])> {
    let mut found: Option<(usize, &'n [u8])> = None;
    for line in lines {
        let Some(name) = set_cookie_name(line) else {
            continue;
        };
        if let Some(own) = names.iter().find(|n| n.as_ref() == name) {
            let (count, first) = found.unwrap_or((0, own.as_ref()));
            found = Some((count + 1, first));
        }
    }
    found
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// Build the `Set-Cookie` line for `value` (done once per backend at start-up, with the `cookie`
/// crate so that attribute syntax is right). `tls`: the line is for requests that came over TLS,
/// which get `Secure` unless the config says `secure: false`.
pub fn set_cookie_line(
    config: &CookieConfig,
    name: &str,
    value: &str,
    twin: bool,
    tls: bool,
) -> String {
    let mut builder = cookie::Cookie::build((name.to_string(), value.to_string()))
        .path(config.path.clone())
        .http_only(config.http_only);
    if let Some(domain) = &config.domain {
        builder = builder.domain(domain.clone());
    }
    if let Some(max_age) = config.max_age {
        let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        builder = builder.max_age(cookie::time::Duration::seconds(seconds));
    }
    if twin {
        builder = builder.secure(true).same_site(cookie::SameSite::None);
    } else {
        let same_site_none = config.same_site == Some(SameSite::None);
        builder = builder.secure(config.secure.unwrap_or(tls) || same_site_none);
        if let Some(same_site) = config.same_site {
            builder = builder.same_site(match same_site {
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::None => cookie::SameSite::None,
            });
        }
    }
    builder.build().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(secret: &str) -> CookieFormat {
        CookieFormat::Keyed {
            secret: secret.as_bytes().to_vec(),
        }
    }

    #[test]
    fn same_bytes_finds_a_difference_in_any_byte_whole_words_or_not() {
        let value = [7u8; 32];
        assert!(same_bytes(&value, &value));
        for at in 0..32 {
            let mut other = value;
            other[at] ^= 0x80;
            assert!(!same_bytes(&value, &other), "byte {at}");
        }
        let short = *b"twelve bytes";
        assert!(same_bytes(&short, b"twelve bytes"));
        assert!(!same_bytes(&short, b"twelve byteZ"));
        assert!(!same_bytes(&short, b"Twelve bytes"));
    }

    #[test]
    fn arr_value_is_sha256_of_utf16le_lowercase_name() {
        // Computed independently: sha256 of "iis1" encoded as UTF-16LE.
        let expected = {
            let mut h = Sha256::new();
            h.update(b"i\0i\0s\x001\0");
            hex::encode(h.finalize())
        };
        assert_eq!(value_text(&CookieFormat::Arr, "web", "IIS1"), expected);
        assert_eq!(value_text(&CookieFormat::Arr, "other", "iis1"), expected);
    }

    #[test]
    fn keyed_value_depends_on_secret_pool_and_backend() {
        let a = value_text(&keyed("0123456789abcdef"), "web", "iis1");
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(a, value_text(&keyed("0123456789abcdef"), "web", "iis1"));
        assert_ne!(a, value_text(&keyed("0123456789abcdeX"), "web", "iis1"));
        assert_ne!(a, value_text(&keyed("0123456789abcdef"), "api", "iis1"));
        assert_ne!(a, value_text(&keyed("0123456789abcdef"), "web", "iis2"));
        assert!(!a.contains("iis1"));
    }

    #[test]
    fn table_resolves_only_exact_values() {
        let format = keyed("0123456789abcdef");
        let table = CookieTable::new(&format, "web", ["iis1", "iis2"]);
        let v2 = value_text(&format, "web", "iis2");
        assert_eq!(table.lookup(v2.as_bytes()), Some(1));
        assert_eq!(table.lookup(v2.to_uppercase().as_bytes()), Some(1));
        assert_eq!(table.lookup(&v2.as_bytes()[..63]), None);
        assert_eq!(table.lookup(b""), None);
        let mut flipped = v2.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        assert_eq!(table.lookup(&flipped), None);
        let arr = value_text(&CookieFormat::Arr, "web", "iis2");
        assert_eq!(table.lookup(arr.as_bytes()), None);
        let other_pool = value_text(&format, "api", "iis2");
        assert_eq!(table.lookup(other_pool.as_bytes()), None);
        assert_eq!(table.lookup(&[b'z'; 64]), None);
        assert_eq!(table.lookup(&[0xff; 64]), None);
    }

    #[test]
    fn cookie_values_finds_every_occurrence_in_order() {
        let header = b"a=1; ARRAffinity=x;ARRAffinity=\"y\" ; b ; =c; ARRAffinityX=z";
        let found: Vec<&[u8]> = cookie_values(header, b"ARRAffinity").collect();
        assert_eq!(found, vec![&b"x"[..], &b"y"[..]]);
        assert_eq!(cookie_values(b"", b"ARRAffinity").count(), 0);
        assert_eq!(
            cookie_values(b"ARRAffinity=", b"ARRAffinity").next(),
            Some(&b""[..])
        );
        let binary = b"x=\xff\xfe; ARRAffinity=ok";
        assert_eq!(
            cookie_values(binary, b"ARRAffinity").next(),
            Some(&b"ok"[..])
        );
    }

    #[test]
    fn without_cookies_keeps_other_pairs_byte_for_byte() {
        let names: [&[u8]; 2] = [b"ARRAffinity", b"ARRAffinitySameSite"];
        assert_eq!(
            without_cookies(
                b"a=1; ARRAffinity=x;b=\"2 3\";ARRAffinitySameSite=y",
                &names
            ),
            Some(b"a=1; b=\"2 3\"".to_vec())
        );
        assert_eq!(without_cookies(b"ARRAffinity=x", &names), None);
        assert_eq!(without_cookies(b" ; ", &names), None);
        assert!(contains_any(b"a=1; ARRAffinity=x", &names));
        assert!(!contains_any(b"a=1; ARRAffinityX=x", &names));
    }

    #[test]
    fn set_cookie_names_are_read_as_browsers_read_them() {
        for (line, name) in [
            (&b"ARRAffinity=evil; Path=/"[..], Some(&b"ARRAffinity"[..])),
            (b" ARRAffinity =x", Some(b"ARRAffinity")),
            (b"\tARRAffinity\t=x;Path=/", Some(b"ARRAffinity")),
            (b"ARRAffinity=", Some(b"ARRAffinity")),
            (b"ARRAffinity", None),
            (b"ARRAffinity; Path=/a=b", None),
            (b"=x", Some(b"")),
            (b"", None),
            (b"a=b=c", Some(b"a")),
            (b"\xff=\xfe", Some(b"\xff")),
        ] {
            assert_eq!(
                set_cookie_name(line),
                name,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        let names: [&[u8]; 2] = [b"ARRAffinity", b"ARRAffinitySameSite"];
        let lines: [&[u8]; 5] = [
            b"JSESSIONID=1",
            b"ARRAffinitySameSite=x; Secure",
            b"arraffinity=y",
            b"ARRAffinity=z",
            b"ARRAffinityX=z",
        ];
        assert_eq!(
            setting_any(lines.iter().copied(), &names),
            Some((2, &b"ARRAffinitySameSite"[..]))
        );
        assert_eq!(setting_any(lines[..1].iter().copied(), &names), None);
        assert_eq!(setting_any(lines.iter().copied(), &[] as &[&[u8]]), None);
    }

    #[test]
    fn set_cookie_line_carries_the_configured_attributes() {
        let config = CookieConfig {
            name: "ARRAffinity".into(),
            format: CookieFormat::Arr,
            path: "/".into(),
            domain: Some("example.com".into()),
            http_only: true,
            secure: None,
            same_site: Some(SameSite::Lax),
            max_age: Some(std::time::Duration::from_secs(3600)),
            twin_name: Some("ARRAffinitySameSite".into()),
            indirect: true,
            nocache: true,
            lifetimes: None,
        };
        let line = set_cookie_line(&config, "ARRAffinity", "abc", false, false);
        assert!(line.starts_with("ARRAffinity=abc"), "{line}");
        for attr in [
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Domain=example.com",
            "Max-Age=3600",
        ] {
            assert!(line.contains(attr), "{line} lacks {attr}");
        }
        assert!(!line.contains("Secure"), "{line}");
        // Secure by default only on TLS; `secure: false` never; `true` always.
        assert!(set_cookie_line(&config, "A", "v", false, true).contains("Secure"));
        let never = CookieConfig {
            secure: Some(false),
            ..config.clone()
        };
        assert!(!set_cookie_line(&never, "A", "v", false, true).contains("Secure"));
        let always = CookieConfig {
            secure: Some(true),
            ..config.clone()
        };
        assert!(set_cookie_line(&always, "A", "v", false, false).contains("Secure"));
        let twin = set_cookie_line(&config, "ARRAffinitySameSite", "abc", true, false);
        assert!(
            twin.contains("SameSite=None") && twin.contains("Secure"),
            "{twin}"
        );
    }
}
