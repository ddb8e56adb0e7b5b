//! Learned sessions (HAProxy `stick store-response` / `stick match`, NGINX `sticky learn`,
//! Stingray's J2EE / ASP.NET / "monitor application cookies" persistence) and IP-based
//! persistence as a table.
//!
//! Request side: [`LearnedSessions::request_id`] finds the session id a request carries — a
//! learned cookie, a `;jsessionid=` path parameter, or a query parameter. Response side:
//! [`observe_set_cookie`] says what a backend's `Set-Cookie` did to a learned cookie: set an id,
//! or expire / clear one. Both are pure; the hooks apply them through [`LearnedSessions::local`],
//! [`LearnedSessions::remote`], [`LearnedSessions::record`] and [`LearnedSessions::forget`] to
//! the [`SessionTable`] and, when configured, the shared [`RedisStore`] behind it.

use super::client_ip;
use super::cookie::cookie_values;
use super::sessions::{key_of, Recorded, SessionKey, SessionTable};
use super::store::{Op, RedisStore};
use crate::config::{ClientIpTableConfig, LearnConfig};
use http::header::COOKIE;
use std::net::IpAddr;
use std::sync::Arc;

/// One pool's learned-session persistence.
#[derive(Debug)]
pub struct LearnedSessions {
    pub cookies: Vec<String>,
    pub path_parameter: Option<String>,
    pub query_parameters: Vec<String>,
    pub table: Arc<SessionTable>,
    /// The shared store behind the table (`store: { type: redis }`), if any.
    pub store: Option<Arc<RedisStore>>,
}

/// Where a recorded session id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The backend's `Set-Cookie`: it is authoritative.
    SetCookie,
    /// A request carried an id nobody had recorded, and it was served here.
    Request,
}

/// What a backend's `Set-Cookie` line did to a learned session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Not one of ours.
    Other,
    /// A session id was handed out.
    Set(Vec<u8>),
    /// The cookie was expired or emptied: this id (or, with `None`, the request's) is over.
    Cleared(Option<Vec<u8>>),
}

impl LearnedSessions {
    /// `pool` and `table_name` name the table in Redis keys; `names` are the pool's backends.
    pub fn new(config: &LearnConfig, pool: &str, table_name: &str, names: &[&str]) -> Self {
        let table = Arc::new(SessionTable::new(config.table));
        let store = config.store.clone().map(|store| {
            Arc::new(RedisStore::new(
                store,
                pool,
                table_name,
                names.iter().map(|n| n.to_string()).collect(),
                table.clone(),
                config.table.idle_timeout,
                config.table.max_lifetime,
            ))
        });
        LearnedSessions {
            cookies: config.cookies.clone(),
            path_parameter: config.path_parameter.clone(),
            query_parameters: config.query_parameters.clone(),
            table,
            store,
        }
    }

    /// The backend the local table has for `key` (a hit restarts its idle timer). With a shared
    /// store, a hit whose last refresh is older than the refresh interval queues one.
    pub fn local(&self, key: SessionKey) -> Option<usize> {
        let Some(store) = &self.store else {
            return self.table.get(key);
        };
        let (backend, due) = self
            .table
            .get_syncing(key, Some(store.refresh_interval()))?;
        if due {
            store.enqueue(Op::Refresh { key, backend });
        }
        Some(backend)
    }

    /// After a local miss: the backend the shared store has for `key` (waiting at most its
    /// lookup timeout), cached in the local table. `None` without a store.
    pub async fn remote(&self, key: SessionKey) -> Option<usize> {
        let backend = self.store.as_ref()?.lookup(key).await?;
        self.table.insert(key, backend);
        Some(backend)
    }

    /// Record `key` on `backend`, locally and (without waiting) in the shared store.
    pub fn record(&self, key: SessionKey, backend: usize, source: Source) {
        let recorded = self.table.insert(key, backend);
        let Some(store) = &self.store else {
            return;
        };
        match (recorded, source) {
            (Recorded::New | Recorded::Moved, Source::SetCookie) => {
                store.enqueue(Op::Set { key, backend });
            }
            (Recorded::Moved, Source::Request) => store.enqueue(Op::Set { key, backend }),
            (Recorded::New, Source::Request) => store.enqueue(Op::SetIfAbsent { key, backend }),
            (Recorded::Same | Recorded::Ignored, _) => {}
        }
    }

    /// Forget `key` locally and in the shared store; returns whether the local table had it.
    pub fn forget(&self, key: SessionKey) -> bool {
        if let Some(store) = &self.store {
            store.enqueue(Op::Delete { key });
        }
        self.table.remove(key)
    }

    /// The session id a request carries: a learned cookie (first configured name present, over
    /// all `Cookie` headers), else the path parameter, else a query parameter. Empty ids count as
    /// absent.
    pub fn request_id<'a>(
        &self,
        uri: &'a http::Uri,
        headers: &'a http::HeaderMap,
    ) -> Option<&'a [u8]> {
        for name in &self.cookies {
            for header in headers.get_all(COOKIE) {
                if let Some(id) =
                    cookie_values(header.as_bytes(), name.as_bytes()).find(|v| !v.is_empty())
                {
                    return Some(id);
                }
            }
        }
        if let Some(param) = &self.path_parameter {
            if let Some(id) = path_parameter(uri.path(), param) {
                return Some(id);
            }
        }
        let query = uri.query()?;
        self.query_parameters.iter().find_map(|name| {
            query.split('&').find_map(|pair| {
                let (n, v) = pair.split_once('=')?;
                (n == name && !v.is_empty()).then_some(v.as_bytes())
            })
        })
    }

    /// What one `Set-Cookie` line did to our cookies.
    pub fn observe(&self, set_cookie: &[u8]) -> Observed {
        observe_set_cookie(set_cookie, &self.cookies)
    }
}

/// The value of path parameter `name` in any segment: `/shop;jsessionid=ABC/cart` → `ABC`.
pub fn path_parameter<'a>(path: &'a str, name: &str) -> Option<&'a [u8]> {
    path.split('/').find_map(|segment| {
        segment.split(';').skip(1).find_map(|param| {
            let (n, v) = param.split_once('=')?;
            (n.eq_ignore_ascii_case(name) && !v.is_empty()).then_some(v.as_bytes())
        })
    })
}

/// Parse a `Set-Cookie` line with the `cookie` crate and classify it for `names`.
pub fn observe_set_cookie(line: &[u8], names: &[String]) -> Observed {
    let Ok(text) = std::str::from_utf8(line) else {
        return Observed::Other;
    };
    let Ok(cookie) = cookie::Cookie::parse(text) else {
        return Observed::Other;
    };
    if !names.iter().any(|n| n == cookie.name()) {
        return Observed::Other;
    }
    let value = cookie.value();
    // RFC 6265 5.3 step 3: `Max-Age`, when present, wins over `Expires` (a backend may send
    // both, with an `Expires` its clock got wrong).
    let expired = match cookie.max_age() {
        Some(age) => age.whole_seconds() <= 0,
        None => cookie
            .expires_datetime()
            .is_some_and(|when| when <= cookie::time::OffsetDateTime::now_utc()),
    };
    if value.is_empty() {
        Observed::Cleared(None)
    } else if expired {
        Observed::Cleared(Some(value.as_bytes().to_vec()))
    } else {
        Observed::Set(value.as_bytes().to_vec())
    }
}

/// IP-based persistence: the first request from a client IP (masked to a prefix) is balanced,
/// and the choice is recorded for the next ones.
#[derive(Debug)]
pub struct ClientIpTable {
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    pub table: SessionTable,
}

impl ClientIpTable {
    pub fn new(config: &ClientIpTableConfig) -> Self {
        ClientIpTable {
            ipv4_prefix: config.ipv4_prefix,
            ipv6_prefix: config.ipv6_prefix,
            table: SessionTable::new(config.table),
        }
    }

    /// The table key of a client IP.
    pub fn key(&self, ip: IpAddr) -> SessionKey {
        match client_ip::masked(ip, self.ipv4_prefix, self.ipv6_prefix) {
            IpAddr::V4(v4) => key_of(&v4.octets()),
            IpAddr::V6(v6) => key_of(&v6.octets()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned(cookies: &[&str], path: Option<&str>, query: &[&str]) -> LearnedSessions {
        LearnedSessions {
            cookies: cookies.iter().map(|c| c.to_string()).collect(),
            path_parameter: path.map(str::to_string),
            query_parameters: query.iter().map(|q| q.to_string()).collect(),
            table: Arc::new(SessionTable::new(crate::config::TableConfig {
                capacity: 10,
                idle_timeout: std::time::Duration::from_secs(60),
                max_lifetime: None,
            })),
            store: None,
        }
    }

    fn id_of(l: &LearnedSessions, uri: &str, cookie: Option<&str>) -> Option<Vec<u8>> {
        let uri: http::Uri = uri.parse().unwrap();
        let mut headers = http::HeaderMap::new();
        if let Some(c) = cookie {
            headers.insert(COOKIE, c.parse().unwrap());
        }
        l.request_id(&uri, &headers).map(<[u8]>::to_vec)
    }

    #[test]
    fn the_request_id_comes_from_a_cookie_then_the_path_then_the_query() {
        let l = learned(&["JSESSIONID", "PHPSESSID"], Some("jsessionid"), &["sid"]);
        assert_eq!(
            id_of(&l, "/", Some("a=1; PHPSESSID=p; JSESSIONID=j")),
            Some(b"j".to_vec())
        );
        assert_eq!(id_of(&l, "/", Some("PHPSESSID=p")), Some(b"p".to_vec()));
        assert_eq!(id_of(&l, "/", Some("JSESSIONID=")), None);
        assert_eq!(
            id_of(&l, "/shop/cart;jsessionid=ABC123?x=1", None),
            Some(b"ABC123".to_vec())
        );
        assert_eq!(id_of(&l, "/a;jsessionid=X/b", None), Some(b"X".to_vec()));
        assert_eq!(id_of(&l, "/a;JSESSIONID=Y", None), Some(b"Y".to_vec()));
        assert_eq!(id_of(&l, "/a?x=1&sid=S", None), Some(b"S".to_vec()));
        assert_eq!(id_of(&l, "/a?sid=", None), None);
        assert_eq!(id_of(&l, "/", None), None);
    }

    #[test]
    fn set_cookie_lines_are_classified() {
        let names = vec!["JSESSIONID".to_string()];
        let o = |line: &str| observe_set_cookie(line.as_bytes(), &names);
        assert_eq!(
            o("JSESSIONID=abc; Path=/; HttpOnly"),
            Observed::Set(b"abc".to_vec())
        );
        assert_eq!(o("JSESSIONID=; Path=/"), Observed::Cleared(None));
        assert_eq!(
            o("JSESSIONID=abc; Max-Age=0"),
            Observed::Cleared(Some(b"abc".to_vec()))
        );
        assert_eq!(
            o("JSESSIONID=abc; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
            Observed::Cleared(Some(b"abc".to_vec()))
        );
        assert_eq!(
            o("JSESSIONID=abc; Max-Age=3600"),
            Observed::Set(b"abc".to_vec())
        );
        assert_eq!(o("OTHER=abc"), Observed::Other);
        assert_eq!(o("garbage"), Observed::Other);
    }

    #[test]
    fn max_age_wins_over_expires_as_in_rfc_6265() {
        // Found by a proptest property (tests/properties.rs): a live Max-Age with a past Expires used to clear the
        // session; a browser keeps the cookie, so the table must keep the id.
        let names = vec!["JSESSIONID".to_string()];
        let o = |line: &str| observe_set_cookie(line.as_bytes(), &names);
        assert_eq!(
            o("JSESSIONID=abc; Max-Age=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
            Observed::Set(b"abc".to_vec())
        );
        assert_eq!(
            o("JSESSIONID=abc; Max-Age=0; Expires=Fri, 01 Jan 2100 00:00:00 GMT"),
            Observed::Cleared(Some(b"abc".to_vec()))
        );
        assert_eq!(
            o("JSESSIONID=abc; Expires=Fri, 01 Jan 2100 00:00:00 GMT"),
            Observed::Set(b"abc".to_vec())
        );
        assert_eq!(
            observe_set_cookie(b"JSESSIONID=\xff", &names),
            Observed::Other
        );
    }

    #[test]
    fn client_ip_keys_follow_the_prefix() {
        let t = ClientIpTable::new(&ClientIpTableConfig {
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            table: crate::config::TableConfig {
                capacity: 10,
                idle_timeout: std::time::Duration::from_secs(60),
                max_lifetime: None,
            },
        });
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(t.key(ip("10.1.2.3")), t.key(ip("10.1.2.200")));
        assert_ne!(t.key(ip("10.1.2.3")), t.key(ip("10.1.3.3")));
        assert_eq!(t.key(ip("2001:db8::1")), t.key(ip("2001:db8::ffff")));
    }
}
