//! The admin listener: the dashboard, health, readiness, Prometheus metrics and a JSON API over
//! pools, backends and session tables. Served by Pingora itself (a `ServeHttp` app on its own
//! listener, loopback by default), so it follows the same graceful upgrade as the proxy. This
//! file routes; `access.rs` says who may call what, `views.rs` and `status.rs` are the JSON,
//! `rates.rs` the request rates, `dashboard.rs` the page (`assets/` its files), `backends.rs`
//! and `tables.rs` the endpoints that act, `reply.rs` the answers.
//!
//! | method | path | what | token |
//! |---|---|---|---|
//! | GET | `/` | the dashboard (HTML; its data comes from `/api/status` and `/api/pools`) | no |
//! | GET | `/dashboard.js`, `/dashboard-pools.js`, `/dashboard.css`, `/favicon.svg` | the dashboard's script (two modules), style and icon | no |
//! | GET | `/healthz` | `200 ok` while the process runs | no |
//! | GET | `/readyz` | `200 ready`; `503 shutting down` once a shutdown or upgrade has begun | no |
//! | GET | `/metrics` | Prometheus text format (names in `metrics.rs`) | no |
//! | GET | `/api/status` | version, start time, uptime, readiness, listeners, whether mutations are on, the rates' sampling | no |
//! | GET | `/api/auth` | checks the bearer token: `200` when it is right, else 401 / 403; changes nothing | always |
//! | GET | `/api/pools` | every pool: backends (state, health, weight, in flight, requests, requests per second now and per 10 s over 5 minutes, last used, pinned requests in the last minute, slow-start share, table entries, upgraded connections), `slow_start_seconds`, session tables, and their shared stores (`stores`: Redis address, `up`, lookup and write counts) | no |
//! | GET | `/api/pools/{pool}` | one pool, same shape | no |
//! | POST | `/api/pools/{pool}/backends` | add a backend: body `{"name", "addr", "weight", "state"}` (`weight` 1 by default, `state` `active`), validated as in the configuration; a name the pool had before takes its old place, so its cookies pin to it again. `201` with the backend's view; a duplicate name or address or a bad field is `400` naming the field | yes |
//! | DELETE | `/api/pools/{pool}/backends/{backend}` | remove a backend (its sessions move on by their failure policy, with a new cookie); `?close_upgraded=true` also closes its WebSocket connections. `200 {"removed": name, "closed": n}` | yes |
//! | POST | `/api/pools/{pool}/backends/{backend}/state` | body `{"state": "active" \| "draining" \| "disabled"}`, optionally `"close_upgraded": true` to also close its WebSocket connections; with `sticky.state_file`, the file is written after the answer | yes |
//! | POST | `/api/pools/{pool}/backends/{backend}/close-upgraded` | close the backend's upgraded (WebSocket) connections; answers `{"closed": n}` | yes |
//! | GET | `/api/pools/{pool}/tables/{table}/entries?limit=N` | entries of `learn` or `client_ip` (keys are hashes), default limit 100 | no |
//! | GET | `/api/pools/{pool}/tables/{table}/lookup?id=…` or `?ip=…` | the entry for a session id or client IP | no |
//! | POST | `/api/pools/{pool}/tables/{table}/delete` | body `{"id": …}`, `{"ip": …}` or `{"backend": …}`; an `id` is deleted from the shared store too | yes |
//!
//! Mutations are POST and DELETE and need `Authorization: Bearer <token>` (the scheme in any case;
//! token from the file or environment variable named in `sticky.admin`): no header → 401, a
//! wrong token → 403; with no token configured, mutations are off (403). Callers from other than
//! loopback get 403 unless `allow_remote` is set, and then need the token for every endpoint but
//! `/healthz`, `/readyz` and the dashboard's files, which hold no data (the "token" column
//! is for loopback callers). A path not in the table gets 404, one in it with another method
//! 405 and `Allow` (`access.rs`). Bodies over 64 KiB get 413; malformed JSON, unknown pools,
//! backends, tables or states get 400 / 404. Nothing changes on any 4xx. Every answer has
//! `Cache-Control: no-store` and the security headers of `dashboard.rs`.

mod access;
mod backends;
mod dashboard;
mod rates;
mod reply;
mod status;
mod tables;
mod views;

use crate::affinity::registry::{PoolAffinities, Registry};
use crate::config::{AdminConfig, Config};
use crate::lifecycle::Leaving;
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::pool::Pool;
use access::{is_loopback_caller, token_required};
use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use reply::{read_body, Reply};
use std::sync::Arc;
use views::PoolView;

pub use rates::RateSampler;

/// What the admin app serves from.
pub struct AdminApp {
    pools: Vec<Arc<Pool>>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    token: Option<String>,
    allow_remote: bool,
    leaving: Leaving,
    status: status::Status,
    rates: Arc<rates::Rates>,
    /// Adds and removes backends; tells the state file of every change.
    membership: Arc<Membership>,
}

impl AdminApp {
    /// The admin app of `config`'s admin listener `admin`, over `pools`. Its request rates stay
    /// at the first snapshot unless [`AdminApp::rate_sampler`] runs as a background service.
    pub fn new(
        config: &Config,
        admin: &AdminConfig,
        pools: Vec<Arc<Pool>>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        leaving: Leaving,
        membership: Arc<Membership>,
    ) -> Self {
        AdminApp {
            rates: Arc::new(rates::Rates::new(pools.clone())),
            status: status::Status::new(config, admin),
            pools,
            registry,
            metrics,
            token: admin.token.clone(),
            allow_remote: admin.allow_remote,
            leaving,
            membership,
        }
    }

    /// The background service that samples the backends' request counters every 2 s for the
    /// request rates of `/api/pools` (it only reads counters the proxy keeps anyway).
    pub fn rate_sampler(&self) -> RateSampler {
        RateSampler(self.rates.clone())
    }

    /// The pool called `name` with its affinities, or the 404 to answer.
    fn pool(&self, name: &str) -> Result<(&Arc<Pool>, &PoolAffinities), Reply> {
        self.pools
            .iter()
            .position(|p| p.name == name)
            .map(|i| (&self.pools[i], self.registry.pool(i)))
            .ok_or_else(|| Reply::error(StatusCode::NOT_FOUND, format!("no pool named {name:?}")))
    }

    /// A pool and the index of one of its backends, or the 404 to answer.
    fn backend(
        &self,
        pool: &str,
        backend: &str,
    ) -> Result<(&Arc<Pool>, &PoolAffinities, usize), Reply> {
        let (pool, affinities) = self.pool(pool)?;
        match pool.backend_index(backend) {
            Some(index) => Ok((pool, affinities, index)),
            None => Err(Reply::error(
                StatusCode::NOT_FOUND,
                format!("no backend named {backend:?}"),
            )),
        }
    }

    /// Check the request's `Authorization` header against the configured token: the refusal
    /// (401 / 403) to answer, if any.
    fn authorize(&self, header: Option<&[u8]>) -> Result<(), Reply> {
        access::check_token(self.token.as_deref(), header)
            .map_err(|refused| Reply::error(refused.status(), refused.message()))
    }

    /// Answer one request: the caller check (loopback, or anyone with `allow_remote`), the
    /// token where [`token_required`] asks for it, a POST's body, then the endpoint of the
    /// table above. Every refusal is a 4xx [`Reply`]; nothing changes on one.
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
        let is_mutation = method == Method::POST || method == Method::DELETE;
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
            ("GET", path) if dashboard::is_asset(path) => dashboard::asset(path)
                .unwrap_or_else(|| Reply::error(StatusCode::NOT_FOUND, "no such file")),
            ("GET", ["healthz"]) => Reply::text(StatusCode::OK, "ok\n"),
            ("GET", ["readyz"]) => {
                if self.leaving.is_set() {
                    Reply::text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                } else {
                    Reply::text(StatusCode::OK, "ready\n")
                }
            }
            ("GET", ["metrics"]) => {
                let (content_type, body) = self.metrics.render(&self.pools, &self.registry);
                Reply {
                    status: StatusCode::OK,
                    content_type,
                    body,
                    allow: None,
                }
            }
            ("GET", ["api", "status"]) => {
                Reply::json(StatusCode::OK, &self.status.view(!self.leaving.is_set()))
            }
            // The token was checked above (`token_required`).
            ("GET", ["api", "auth"]) => {
                Reply::json(StatusCode::OK, &serde_json::json!({ "token": "accepted" }))
            }
            ("GET", ["api", "pools"]) => {
                let views: Vec<PoolView> = self
                    .pools
                    .iter()
                    .zip(self.registry.pools())
                    .map(|(p, a)| PoolView::of(p, a, &self.rates))
                    .collect();
                Reply::json(StatusCode::OK, &views)
            }
            ("GET", ["api", "pools", pool]) => match self.pool(pool) {
                Ok((p, a)) => Reply::json(StatusCode::OK, &PoolView::of(p, a, &self.rates)),
                Err(reply) => reply,
            },
            ("POST", ["api", "pools", pool, "backends"]) => self.add_backend(pool, &body),
            ("DELETE", ["api", "pools", pool, "backends", backend]) => {
                self.remove_backend(pool, backend, &query)
            }
            ("POST", ["api", "pools", pool, "backends", backend, "state"]) => {
                self.set_state(pool, backend, &body)
            }
            ("POST", ["api", "pools", pool, "backends", backend, "close-upgraded"]) => {
                self.close_upgraded(pool, backend)
            }
            ("GET", ["api", "pools", pool, "tables", table, "entries"]) => {
                self.entries(pool, table, &query)
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
        builder = builder
            .status(reply.status)
            .header(http::header::CONTENT_TYPE, reply.content_type)
            .header(http::header::CONTENT_LENGTH, length)
            .header(http::header::CACHE_CONTROL, "no-store");
        for (name, value) in dashboard::SECURITY_HEADERS {
            builder = builder.header(name, value);
        }
        builder
            .body(reply.body)
            .unwrap_or_else(|_| Response::new(b"error\n".to_vec()))
    }
}
