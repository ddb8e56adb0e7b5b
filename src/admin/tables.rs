//! The session-table endpoints: listing a table's entries, looking one up by session id or
//! client IP, and deleting entries (by id, IP or backend).

use super::access::query_param;
use super::reply::Reply;
use super::views::LookupView;
use super::AdminApp;
use crate::affinity::persistence::Affinity;
use crate::affinity::registry::PoolAffinities;
use crate::affinity::sessions::{key_of, SessionTable};
use crate::pool::Pool;
use http::StatusCode;
use serde::Deserialize;

impl AdminApp {
    /// `GET …/tables/{table}/entries?limit=N`: at most `limit` entries (default 100, at most
    /// 10,000).
    pub(super) fn entries(&self, pool: &str, table: &str, query: &str) -> Reply {
        let limit = query_param(query, "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100usize)
            .min(10_000);
        match self.pool_table(pool, table) {
            Ok((_, _, t)) => Reply::json(StatusCode::OK, &t.entries(limit)),
            Err(reply) => reply,
        }
    }

    /// `GET …/tables/{table}/lookup?id=…` or `?ip=…`: the entry, or 404.
    pub(super) fn lookup(&self, pool: &str, table: &str, query: &str) -> Reply {
        let (pool, affinity, t) = match self.pool_table(pool, table) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let key = match session_key(
            affinity,
            table,
            query_param(query, "id").as_deref(),
            query_param(query, "ip").as_deref(),
        ) {
            Ok(k) => k,
            Err(reply) => return reply,
        };
        match t.peek(key) {
            Some(entry) => Reply::json(StatusCode::OK, &LookupView::of(pool, entry)),
            None => Reply::error(StatusCode::NOT_FOUND, "no entry"),
        }
    }

    /// `POST …/tables/{table}/delete`: `{"id"}`, `{"ip"}` or `{"backend"}`; answers
    /// `{"deleted": n}`.
    pub(super) fn delete(&self, pool: &str, table: &str, body: &[u8]) -> Reply {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            id: Option<String>,
            ip: Option<String>,
            backend: Option<String>,
        }
        let (pool, affinity, t) = match self.pool_table(pool, table) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let body: Body = match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => return Reply::error(StatusCode::BAD_REQUEST, format!("bad body: {e}")),
        };
        let deleted = match (&body.id, &body.ip, &body.backend) {
            (None, None, Some(name)) => match pool.backend_index(name) {
                Some(index) => t.remove_backend(index),
                None => {
                    return Reply::error(
                        StatusCode::NOT_FOUND,
                        format!("no backend named {name:?}"),
                    )
                }
            },
            (id, ip, None) if id.is_some() != ip.is_some() => {
                match session_key(affinity, table, id.as_deref(), ip.as_deref()) {
                    Ok(key) => match &affinity.learned {
                        // The learned table: forget the id in the shared store too.
                        Some(learned) if id.is_some() => usize::from(learned.forget(key)),
                        _ => usize::from(t.remove(key)),
                    },
                    Err(reply) => return reply,
                }
            }
            _ => {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "give exactly one of \"id\", \"ip\", \"backend\"",
                )
            }
        };
        Reply::json(StatusCode::OK, &serde_json::json!({ "deleted": deleted }))
    }

    /// The pool called `pool` and its table called `table`, or the 404 to answer.
    fn pool_table(
        &self,
        pool: &str,
        table: &str,
    ) -> Result<(&Pool, &Affinity, &SessionTable), Reply> {
        let (pool, affinities) = self.pool(pool)?;
        let (affinity, t) = table_of(pool, affinities, table)?;
        Ok((pool, affinity, t))
    }
}

/// The table called `table` of `pool`, or the 404 naming the tables it has.
fn table_of<'p>(
    pool: &Pool,
    affinities: &'p PoolAffinities,
    table: &str,
) -> Result<(&'p Affinity, &'p SessionTable), Reply> {
    affinities.table(table).ok_or_else(|| {
        let names: Vec<String> = affinities
            .table_stats()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        Reply::error(
            StatusCode::NOT_FOUND,
            format!(
                "pool {:?} has no table {table:?} (tables: {names:?})",
                pool.name
            ),
        )
    })
}

/// The table key for a session id (a `learn` table) or a client IP (a `client_ip` table).
fn session_key(
    affinity: &Affinity,
    table: &str,
    id: Option<&str>,
    ip: Option<&str>,
) -> Result<u128, Reply> {
    let is_learn = table.ends_with("learn");
    match (id, ip) {
        (Some(id), None) if is_learn => Ok(key_of(id.as_bytes())),
        (None, Some(ip)) if !is_learn => {
            let addr: std::net::IpAddr = ip.parse().map_err(|_| {
                Reply::error(
                    StatusCode::BAD_REQUEST,
                    format!("not an IP address: {ip:?}"),
                )
            })?;
            affinity
                .ip_table
                .as_ref()
                .map(|t| t.key(addr))
                .ok_or_else(|| Reply::error(StatusCode::NOT_FOUND, "no client_ip table"))
        }
        _ if is_learn => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "a learn table takes \"id\"",
        )),
        _ => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "a client_ip table takes \"ip\"",
        )),
    }
}
