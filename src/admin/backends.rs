//! The backend endpoints: an operator's state change (`active`, `draining`, `disabled`) and the
//! closing of a backend's upgraded (WebSocket) connections. Both are logged at `warn`; a state
//! change is also written to the state file, if there is one.

use super::reply::Reply;
use super::views::{table_entries_by_backend, BackendView};
use super::AdminApp;
use crate::config::BackendState;
use http::StatusCode;
use serde::Deserialize;

impl AdminApp {
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
        let slot = &pool.slots[index];
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
        if let Some(state_file) = &self.state_file {
            state_file.changed();
        }
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
