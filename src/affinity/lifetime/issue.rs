//! Issuing dated cookies: per backend, the `Set-Cookie` lines prebuilt at start-up with a
//! placeholder value, into which a response writes the value of the moment (one allocation per
//! line, only on the responses that issue or refresh a cookie).

use super::{DatedIds, Dates, Lifetimes, DATED_LEN};
use crate::affinity::cookie::set_cookie_line;
use crate::config::{CookieConfig, CookieLifetimes};
use http::HeaderValue;

/// One pool's dated issuing: the rules, and each backend's line templates.
#[derive(Debug)]
pub struct DatedIssue {
    pub lifetimes: Lifetimes,
    /// A date-less value still pins (and is re-issued with dates).
    pub accept_undated: bool,
    /// Per backend index: the templates for plain-HTTP requests, then for TLS ones.
    lines: Vec<[Lines; 2]>,
}

#[derive(Debug)]
struct Lines {
    main: Template,
    twin: Option<Template>,
}

/// A `Set-Cookie` line whose value (`DATED_LEN` bytes from `at`) is written per response.
#[derive(Debug)]
struct Template {
    line: Box<[u8]>,
    at: usize,
}

impl Template {
    fn new(config: &CookieConfig, name: &str, placeholder: &str, twin: bool, tls: bool) -> Self {
        let line = set_cookie_line(config, name, placeholder, twin, tls);
        // The value is hex and dots: the `cookie` crate writes it as is, after `name=`.
        let at = line.find(placeholder).unwrap_or(usize::MAX);
        Template {
            line: line.into_bytes().into_boxed_slice(),
            at,
        }
    }

    fn fill(&self, value: &[u8; DATED_LEN]) -> Option<HeaderValue> {
        let mut line = self.line.to_vec();
        line.get_mut(self.at..self.at.checked_add(DATED_LEN)?)?
            .copy_from_slice(value);
        HeaderValue::from_maybe_shared(bytes::Bytes::from(line)).ok()
    }
}

/// Whole seconds of a validated lifetime (at most 3650 days, so it fits).
fn seconds(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl DatedIssue {
    /// Templates for every backend of `ids`, in order.
    pub fn new(config: &CookieConfig, lifetimes: &CookieLifetimes, ids: &DatedIds) -> Self {
        let lines = (0..ids.len())
            .filter_map(|index| ids.id(index))
            .map(|id| {
                let placeholder = ids.codec.encode(id, Dates::new_at(0));
                let placeholder = String::from_utf8_lossy(&placeholder);
                [false, true].map(|tls| Lines {
                    main: Template::new(config, &config.name, &placeholder, false, tls),
                    twin: config
                        .twin_name
                        .as_ref()
                        .map(|twin| Template::new(config, twin, &placeholder, true, tls)),
                })
            })
            .collect();
        DatedIssue {
            lifetimes: Lifetimes {
                max_idle: lifetimes.max_idle.map(seconds),
                max_life: lifetimes.max_life.map(seconds),
            },
            accept_undated: lifetimes.accept_undated,
            lines,
        }
    }

    /// The `Set-Cookie` values (main, twin) for backend `index` with `dates`.
    pub fn lines(
        &self,
        ids: &DatedIds,
        index: usize,
        tls: bool,
        dates: Dates,
    ) -> Option<(HeaderValue, Option<HeaderValue>)> {
        let value = ids.codec.encode(ids.id(index)?, dates);
        let lines = &self.lines.get(index)?[usize::from(tls)];
        let twin = match &lines.twin {
            Some(twin) => Some(twin.fill(&value)?),
            None => None,
        };
        Some((lines.main.fill(&value)?, twin))
    }
}
