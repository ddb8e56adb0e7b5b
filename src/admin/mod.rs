//! The admin listener: health, readiness, Prometheus metrics and a JSON API over pools,
//! backends and session tables. Served by Pingora itself (a `ServeHttp` app on its own
//! listener, loopback by default), so it follows the same graceful upgrade as the proxy.
//!
//! | method | path | what | token |
//! |---|---|---|---|
//! | GET | `/healthz` | `200 ok` while the process runs | no |
//! | GET | `/readyz` | `200 ready`; `503 shutting down` once a shutdown or upgrade has begun | no |
//! | GET | `/metrics` | Prometheus text format (names in `metrics.rs`) | no |
//! | GET | `/api/pools` | every pool: backends (state, health, in flight, requests, last used, pinned requests in the last minute), session tables, and their shared stores (`stores`: Redis address, `up`, lookup and write counts) | no |
//! | GET | `/api/pools/{pool}` | one pool, same shape | no |
//! | POST | `/api/pools/{pool}/backends/{backend}/state` | body `{"state": "active" \| "draining" \| "disabled"}`, optionally `"close_upgraded": true` to also close its WebSocket connections | yes |
//! | POST | `/api/pools/{pool}/backends/{backend}/close-upgraded` | close the backend's upgraded (WebSocket) connections; answers `{"closed": n}` | yes |
//! | GET | `/api/pools/{pool}/tables/{table}/entries?limit=N` | entries of `learn` or `client_ip` (keys are hashes), default limit 100 | no |
//! | GET | `/api/pools/{pool}/tables/{table}/lookup?id=…` or `?ip=…` | the entry for a session id or client IP | no |
//! | POST | `/api/pools/{pool}/tables/{table}/delete` | body `{"id": …}`, `{"ip": …}` or `{"backend": …}`; an `id` is deleted from the shared store too | yes |
//!
//! Mutations are POST only and need `Authorization: Bearer <token>` (the scheme in any case;
//! token from the file or environment variable named in `sticky.admin`): no header → 401, a
//! wrong token → 403; with no token configured, mutations are off (403). Callers from other than
//! loopback get 403 unless `allow_remote` is set, and then need the token for every endpoint but
//! `/healthz` and `/readyz` (the "token" column is for loopback callers). A path not in the table
//! gets 404, one in it with another method 405 and `Allow` ([`access`]). Bodies over 64 KiB get
//! 413; malformed JSON, unknown pools, backends, tables or states get 400 / 404. Nothing
//! changes on any 4xx.

mod access;
mod reply;
mod views;

use crate::affinity::persistence::Affinity;
use crate::affinity::sessions::{key_of, SessionTable};
use crate::lifecycle::Leaving;
use crate::metrics::Metrics;
use crate::pool::{BackendState, Pool};
use access::{is_loopback_caller, query_param, token_required};
use reply::{read_body, Reply};
use views::{table_entries_by_backend, BackendView, LookupView, PoolView};
use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde::Deserialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What the admin app serves from.
pub struct AdminApp {
    pools: Vec<Arc<Pool>>,
    metrics: Arc<Metrics>,
    token: Option<String>,
    allow_remote: bool,
    leaving: Leaving,
}

impl AdminApp {
    pub fn new(
        pools: Vec<Arc<Pool>>,
        metrics: Arc<Metrics>,
        token: Option<String>,
        allow_remote: bool,
        leaving: Leaving,
    ) -> Self {
        AdminApp {
            pools,
            metrics,
            token,
            allow_remote,
            leaving,
        }
    }

    fn pool(&self, name: &str) -> Result<&Arc<Pool>, Reply> {
        self.pools
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Reply::error(StatusCode::NOT_FOUND, format!("no pool named {name:?}")))
    }

    /// A pool and the index of one of its backends, or the 404 to answer.
    fn backend(&self, pool: &str, backend: &str) -> Result<(&Arc<Pool>, usize), Reply> {
        let pool = self.pool(pool)?;
        match pool.backend_index(backend) {
            Some(index) => Ok((pool, index)),
            None => Err(Reply::error(
                StatusCode::NOT_FOUND,
                format!("no backend named {backend:?}"),
            )),
        }
    }

    /// 401 without a token, 403 with a wrong one or when no token is configured.
    fn authorize(&self, header: Option<&[u8]>) -> Result<(), Reply> {
        let Some(expected) = &self.token else {
            return Err(Reply::error(
                StatusCode::FORBIDDEN,
                "no admin token is configured: mutations (and remote reads) are off",
            ));
        };
        let Some(given) = header.and_then(access::bearer_token) else {
            return Err(Reply::error(
                StatusCode::UNAUTHORIZED,
                "bearer token required",
            ));
        };
        if bool::from(given.ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(Reply::error(StatusCode::FORBIDDEN, "wrong token"))
        }
    }

    async fn handle(&self, session: &mut ServerSession) -> Reply {
        let caller = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let loopback_caller = is_loopback_caller(caller);
        if !(loopback_caller || self.allow_remote) {
            return Reply::error(StatusCode::FORBIDDEN, "admin API is for loopback callers");
        }
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_string();
        let query = req.uri.query().unwrap_or("").to_string();
        let auth = req
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let is_mutation = method == Method::POST;
        if token_required(is_mutation, loopback_caller, &segments) {
            if let Err(reply) = self.authorize(auth.as_deref()) {
                return reply;
            }
        }
        let body = if is_mutation {
            match read_body(session).await {
                Ok(body) => body,
                Err(reply) => return reply,
            }
        } else {
            Vec::new()
        };
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["healthz"]) => Reply::text(StatusCode::OK, "ok\n"),
            ("GET", ["readyz"]) => {
                if self.leaving.is_set() {
                    Reply::text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                } else {
                    Reply::text(StatusCode::OK, "ready\n")
                }
            }
            ("GET", ["metrics"]) => {
                let (content_type, body) = self.metrics.render(&self.pools);
                Reply {
                    status: StatusCode::OK,
                    content_type,
                    body,
                    allow: None,
                }
            }
            ("GET", ["api", "pools"]) => {
                let views: Vec<PoolView> = self.pools.iter().map(|p| PoolView::of(p)).collect();
                Reply::json(StatusCode::OK, &views)
            }
            ("GET", ["api", "pools", pool]) => match self.pool(pool) {
                Ok(p) => Reply::json(StatusCode::OK, &PoolView::of(p)),
                Err(reply) => reply,
            },
            ("POST", ["api", "pools", pool, "backends", backend, "state"]) => {
                self.set_state(pool, backend, &body)
            }
            ("POST", ["api", "pools", pool, "backends", backend, "close-upgraded"]) => {
                self.close_upgraded(pool, backend)
            }
            ("GET", ["api", "pools", pool, "tables", table, "entries"]) => {
                let limit = query_param(&query, "limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(100usize)
                    .min(10_000);
                match self.pool(pool).and_then(|p| table_of(p, table)) {
                    Ok((_, t)) => Reply::json(StatusCode::OK, &t.entries(limit)),
                    Err(reply) => reply,
                }
            }
            ("GET", ["api", "pools", pool, "tables", table, "lookup"]) => {
                self.lookup(pool, table, &query)
            }
            ("POST", ["api", "pools", pool, "tables", table, "delete"]) => {
                self.delete(pool, table, &body)
            }
            (_, path) => match access::allowed_method(path) {
                Some(allow) => Reply {
                    allow: Some(allow),
                    ..Reply::error(StatusCode::METHOD_NOT_ALLOWED, format!("{allow} only"))
                },
                None => Reply::error(StatusCode::NOT_FOUND, "no such endpoint"),
            },
        }
    }

    fn set_state(&self, pool: &str, backend: &str, body: &[u8]) -> Reply {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            state: BackendState,
            #[serde(default)]
            close_upgraded: bool,
        }
        let (pool, index) = match self.backend(pool, backend) {
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
            &BackendView::of(pool, index, table_entries_by_backend(pool)[index]),
        )
    }

    fn close_upgraded(&self, pool: &str, backend: &str) -> Reply {
        let (pool, index) = match self.backend(pool, backend) {
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

    fn lookup(&self, pool: &str, table: &str, query: &str) -> Reply {
        let pool = match self.pool(pool) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let (affinity, t) = match table_of(pool, table) {
            Ok(t) => t,
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

    fn delete(&self, pool: &str, table: &str, body: &[u8]) -> Reply {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            id: Option<String>,
            ip: Option<String>,
            backend: Option<String>,
        }
        let pool = match self.pool(pool) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let (affinity, t) = match table_of(pool, table) {
            Ok(t) => t,
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
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let reply = self.handle(session).await;
        let length = reply.body.len();
        let mut builder = Response::builder();
        if let Some(allow) = reply.allow {
            builder = builder.header(http::header::ALLOW, allow);
        }
        builder
            .status(reply.status)
            .header(http::header::CONTENT_TYPE, reply.content_type)
            .header(http::header::CONTENT_LENGTH, length)
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(reply.body)
            .unwrap_or_else(|_| Response::new(b"error\n".to_vec()))
    }
}

fn table_of<'p>(pool: &'p Pool, table: &str) -> Result<(&'p Affinity, &'p SessionTable), Reply> {
    pool.table(table).ok_or_else(|| {
        let names: Vec<String> = pool.table_stats().into_iter().map(|(n, _)| n).collect();
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
