//! The backend endpoints: adding and removing a backend (through [`crate::membership`]), an
//! operator's state change (`active`, `draining`, `disabled`) and the closing of a backend's
//! upgraded (WebSocket) connections. All are logged at `warn`; changes are also written to the
//! state file, if there is one.

use super::reply::Reply;
use super::views::{table_entries_by_backend, BackendView};
use super::AdminApp;
use crate::config::raw::RawBackend;
use crate::config::BackendState;
use crate::membership::MembershipError;
use crate::pool::{ChangeError, NewBackend, Origin};
use http::StatusCode;
use serde::Deserialize;

impl AdminApp {
    /// `POST /api/pools/{pool}/backends`: add the backend the body describes; answers its view
    /// (`201`).
    pub(super) fn add_backend(&self, pool: &str, body: &[u8]) -> Reply {
        if let Err(reply) = self.pool(pool) {
            return reply;
        }
        let raw: RawBackend = match serde_json::from_slice(body) {
            Ok(raw) => raw,
            Err(e) => return Reply::error(StatusCode::BAD_REQUEST, format!("bad body: {e}")),
        };
        let backend = match crate::config::backend_from_raw("backend", raw) {
            Ok(b) => b,
            Err(e) => return Reply::error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        if let Err(reason) = addressable_name(&backend.name) {
            return Reply::error(StatusCode::BAD_REQUEST, format!("backend.name: {reason}"));
        }
        let new = NewBackend {
            name: backend.name,
            addr: backend.addr,
            weight: backend.weight,
            state: backend.state,
            origin: Origin::Api,
        };
        match self.membership.add(pool, &new, false) {
            Ok(changed) => {
                let (pool, affinities) = match self.pool(pool) {
                    Ok(found) => found,
                    Err(reply) => return reply,
                };
                let index = changed.index;
                let view = BackendView::of(
                    pool,
                    index,
                    table_entries_by_backend(pool, affinities)
                        .get(index)
                        .copied()
                        .unwrap_or(0),
                    self.rates
                        .of_pool(pool)
                        .into_iter()
                        .nth(index)
                        .unwrap_or_default(),
                );
                Reply::json(StatusCode::CREATED, &view)
            }
            Err(e) => membership_refusal(&e),
        }
    }

    /// `DELETE /api/pools/{pool}/backends/{backend}[?close_upgraded=true]`: remove it; answers
    /// `{"removed": name, "closed": n}`.
    pub(super) fn remove_backend(&self, pool: &str, backend: &str, query: &str) -> Reply {
        let close_upgraded = match close_upgraded_of(query) {
            Ok(close) => close,
            Err(reply) => return reply,
        };
        match self
            .membership
            .remove(pool, backend, close_upgraded, Origin::Api)
        {
            Ok(closed) => Reply::json(
                StatusCode::OK,
                &serde_json::json!({ "removed": backend, "closed": closed }),
            ),
            Err(e) => membership_refusal(&e),
        }
    }

    /// `POST …/backends/{backend}/state`: set the state from `{"state": …}` (and close the
    /// backend's upgraded connections with `"close_upgraded": true`); answers the backend's view.
    pub(super) fn set_state(&self, pool: &str, backend: &str, body: &[u8]) -> Reply {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            state: BackendState,
            #[serde(default)]
            close_upgraded: bool,
        }
        let (pool, affinities, index) = match self.backend(pool, backend) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let body: Body = match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => return Reply::error(StatusCode::BAD_REQUEST, format!("bad body: {e}")),
        };
        let slot = &pool.slots()[index];
        let before = slot.state();
        slot.set_state(body.state);
        log::warn!(
            "admin: backend {} of pool {} is now {} (was {})",
            slot.name,
            pool.name,
            body.state.as_str(),
            before.as_str()
        );
        // Written by the state file's own task: the answer does not wait for it, nor depend
        // on it (a failed write is logged and counted there).
        self.membership.state_changed();
        if body.close_upgraded {
            let closed = pool.upgraded.close_backend(index);
            log::warn!(
                "admin: closed {closed} upgraded connections to backend {} of pool {}",
                slot.name,
                pool.name
            );
        }
        Reply::json(
            StatusCode::OK,
            &BackendView::of(
                pool,
                index,
                table_entries_by_backend(pool, affinities)[index],
                self.rates
                    .of_pool(pool)
                    .into_iter()
                    .nth(index)
                    .unwrap_or_default(),
            ),
        )
    }

    /// `POST …/backends/{backend}/close-upgraded`: close its upgraded connections; answers
    /// `{"closed": n}`.
    pub(super) fn close_upgraded(&self, pool: &str, backend: &str) -> Reply {
        let (pool, _, index) = match self.backend(pool, backend) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let closed = pool.upgraded.close_backend(index);
        log::warn!(
            "admin: closed {closed} upgraded connections to backend {backend} of pool {}",
            pool.name
        );
        Reply::json(StatusCode::OK, &serde_json::json!({ "closed": closed }))
    }
}

/// The answer to a refused membership change: 404 for what does not exist, 400 for a clash
/// (naming the field), 409 for a full pool.
fn membership_refusal(e: &MembershipError) -> Reply {
    let status = match e {
        MembershipError::UnknownPool(_)
        | MembershipError::Refused(ChangeError::UnknownBackend(_)) => StatusCode::NOT_FOUND,
        MembershipError::Refused(ChangeError::Conflict { .. }) => StatusCode::BAD_REQUEST,
        MembershipError::Refused(ChangeError::Full) => StatusCode::CONFLICT,
    };
    let message = match e {
        MembershipError::Refused(ChangeError::Conflict { field, reason }) => {
            format!("backend.{field}: {reason}")
        }
        other => other.to_string(),
    };
    Reply::error(status, message)
}

/// Can a backend added through the API be named `name`? Visible ASCII without `/`, `?`, `#`
/// and `%`: the API's paths name it afterwards (their segments are taken as they come, not
/// percent-decoded), a served-by header carries it and the log shows it. (Configured names may
/// be anything the YAML holds.)
fn addressable_name(name: &str) -> Result<(), String> {
    let bad = |c: char| !c.is_ascii_graphic() || matches!(c, '/' | '?' | '#' | '%');
    match name.chars().find(|c| bad(*c)) {
        Some(c) => Err(format!(
            "{name:?}: visible ASCII without '/', '?', '#' or '%' (found {c:?}), so that the API can name it"
        )),
        None => Ok(()),
    }
}

/// `close_upgraded` of a DELETE's query: absent or `false` → no, `true` → yes; else 400.
fn close_upgraded_of(query: &str) -> Result<bool, Reply> {
    let mut close = false;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match (key.as_ref(), value.as_ref()) {
            ("close_upgraded", "true") => close = true,
            ("close_upgraded", "false") => close = false,
            (key, value) => {
                return Err(Reply::error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter or value: {key}={value}"),
                ))
            }
        }
    }
    Ok(close)
}

#[cfg(test)]
mod tests {
    use super::addressable_name;

    #[test]
    fn an_api_backend_name_is_visible_ascii_the_paths_can_hold() {
        for good in ["iis4", "10.0.0.5:8080", "[::1]:80", "app_b-2.eu"] {
            assert!(addressable_name(good).is_ok(), "{good}");
        }
        for bad in ["a/b", "a?b", "a#b", "a%2Fb", "a b", "café", "a\nb", ""] {
            if !bad.is_empty() {
                assert!(addressable_name(bad).is_err(), "{bad:?}");
            }
        }
    }
}
