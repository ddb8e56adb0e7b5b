//! The decision access log: one line per request through the `log` crate (target
//! `sticky_proxy::access`, so `RUST_LOG` controls it), as text or JSON.
//!
//! Besides client, method, path, status and duration, each line names the three backends of
//! Stingray's `%F %N %n`: the **favoured** one (the first choice of the affinity decision), the
//! one **required** by persistence (the backend the request's cookie or session record named,
//! usable or not), and the **actual** one that served it — plus the outcome, HAProxy-style.

use serde::Serialize;

/// The log target of the access log.
pub const TARGET: &str = "sticky_proxy::access";

use crate::config::AccessLogFormat as Format;

/// One request's line.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub client: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub duration_ms: u128,
    pub pool: &'a str,
    pub route: &'a str,
    pub class: &'a str,
    pub favoured: &'a str,
    pub required: &'a str,
    pub actual: &'a str,
    pub outcome: &'a str,
    /// The class's failure policy, when it answered instead of a backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl Entry<'_> {
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string(self).unwrap_or_default(),
            Format::Text => {
                let mut line = format!(
                    "{} {} {} {} {}ms pool={} route={} class={} favoured={} required={} actual={} outcome={}",
                    self.client,
                    self.method,
                    self.path,
                    self.status,
                    self.duration_ms,
                    self.pool,
                    self.route,
                    self.class,
                    self.favoured,
                    self.required,
                    self.actual,
                    self.outcome
                );
                if let Some(policy) = self.failure_policy {
                    line.push_str(" failure_policy=");
                    line.push_str(policy);
                }
                if let Some(error) = self.error {
                    line.push_str(" error=");
                    line.push_str(error);
                }
                line
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            client: "127.0.0.1:5000",
            method: "GET",
            path: "/a",
            status: 200,
            duration_ms: 3,
            pool: "web",
            route: "-",
            class: "-",
            favoured: "iis1",
            required: "iis1",
            actual: "iis2",
            outcome: "rebalanced",
            failure_policy: None,
            error: None,
        }
    }

    #[test]
    fn text_lines_carry_every_field() {
        assert_eq!(
            entry().render(Format::Text),
            "127.0.0.1:5000 GET /a 200 3ms pool=web route=- class=- favoured=iis1 required=iis1 actual=iis2 outcome=rebalanced"
        );
    }

    #[test]
    fn json_lines_parse_back() {
        let value: serde_json::Value = serde_json::from_str(&entry().render(Format::Json)).unwrap();
        assert_eq!(value["actual"], "iis2");
        assert_eq!(value["status"], 200);
        assert!(value.get("error").is_none());
    }
}
