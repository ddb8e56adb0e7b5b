//! A sticky-proxy binary with Rust filters, enabled by name from the YAML on a listener or a
//! route (`filters: [auth, stamp]`; see docs/extending.md):
//!
//! - `auth`: the request must carry `Authorization: Bearer <token>` with a token listed in the
//!   file named by `STICKY_TOKENS_FILE` (one per line; `#` starts a comment), else it is
//!   answered `401` with `WWW-Authenticate: Bearer`. The file is read for each request, so a
//!   token added or removed counts at once; a file that cannot be read makes the filter fail
//!   (the client gets the proxy's plain 500, the log names the filter). The header is removed
//!   before the backend sees it.
//! - `stamp`: gives each request an `X-Request-Id` (unless it has one), returns it on the
//!   response with `X-Affinity: <outcome>` (what affinity decided), and logs one line per
//!   request with the decision (`stamp: id=… status=… outcome=… backend=…`).
//! - `noop`: does nothing in any hook: what one filter costs (benches/load/affinity-cost.sh).
//! - `chaos`: fails on demand, to see what a failing filter does: `X-Chaos: error` returns an
//!   error from the request hook, `X-Chaos: panic` panics there, `X-Chaos: panic-response`
//!   panics in the response hook.
//!
//! Run it like the stock binary: `cargo run --example filters -- -c proxy.yaml`.

use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use sticky_proxy::extension::Extensions;
use sticky_proxy::filter::{
    Answer, Exchange, Filter, FilterError, FilterRequest, FilterResponse, Flow,
};

/// Bearer tokens checked against a file.
struct Auth {
    tokens_file: std::path::PathBuf,
}

impl Auth {
    fn unauthorized() -> Flow {
        let answer = Answer::new(401, "401 Unauthorized\n").header("www-authenticate", "Bearer");
        Flow::Answer(answer)
    }
}

#[async_trait]
impl Filter for Auth {
    async fn request(&self, request: &mut FilterRequest<'_>) -> Result<Flow, FilterError> {
        let headers = &request.header.headers;
        let Some(token) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return Ok(Self::unauthorized());
        };
        let tokens = tokio::fs::read_to_string(&self.tokens_file)
            .await
            .map_err(|e| format!("cannot read {}: {e}", self.tokens_file.display()))?;
        let listed = tokens
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default().trim())
            .filter(|line| !line.is_empty())
            // Compared in constant time: the answer's timing says nothing about the tokens.
            .fold(false, |found, known| {
                found
                    | bool::from(subtle::ConstantTimeEq::ct_eq(
                        known.as_bytes(),
                        token.as_bytes(),
                    ))
            });
        if !listed {
            return Ok(Self::unauthorized());
        }
        request.header.remove_header(&http::header::AUTHORIZATION);
        Ok(Flow::Continue)
    }
}

/// A request id in, the id and the affinity outcome out, a log line with the decision.
struct Stamp {
    next: AtomicU64,
}

/// The id `Stamp` gave a request, kept in the request's filter data.
#[derive(Clone)]
struct RequestId(String);

#[async_trait]
impl Filter for Stamp {
    async fn request(&self, request: &mut FilterRequest<'_>) -> Result<Flow, FilterError> {
        let id = match request.header.headers.get("x-request-id") {
            Some(id) => id.to_str()?.to_string(),
            None => {
                let id = format!("{:016x}", self.next.fetch_add(1, Relaxed));
                request.header.insert_header("x-request-id", &id)?;
                id
            }
        };
        request.data.insert(RequestId(id));
        Ok(Flow::Continue)
    }

    async fn response(&self, response: &mut FilterResponse<'_>) -> Result<(), FilterError> {
        if let Some(RequestId(id)) = response.data.get::<RequestId>() {
            response.header.insert_header("x-request-id", id)?;
        }
        let outcome = response.affinity.outcome.as_str();
        response.header.insert_header("x-affinity", outcome)?;
        Ok(())
    }

    fn log(&self, exchange: &Exchange<'_>) {
        let id = exchange
            .data
            .get::<RequestId>()
            .map_or("-", |r| r.0.as_str());
        log::info!(
            "stamp: id={id} status={} outcome={} backend={} answered_by={}",
            exchange.status,
            exchange.affinity.outcome.as_str(),
            exchange.affinity.backend.unwrap_or("-"),
            exchange.answered_by.unwrap_or("-"),
        );
    }
}

/// Nothing in any hook.
struct Noop;

impl Filter for Noop {}

/// Fails when asked to.
struct Chaos;

#[async_trait]
impl Filter for Chaos {
    async fn request(&self, request: &mut FilterRequest<'_>) -> Result<Flow, FilterError> {
        match request.header.headers.get("x-chaos").map(|v| v.as_bytes()) {
            Some(b"error") => Err("chaos asked for an error (secret detail: 10.1.2.3)".into()),
            Some(b"panic") => panic!("chaos asked for a panic"),
            _ => Ok(Flow::Continue),
        }
    }

    async fn response(&self, response: &mut FilterResponse<'_>) -> Result<(), FilterError> {
        if response
            .request
            .headers
            .get("x-chaos")
            .map(|v| v.as_bytes())
            == Some(b"panic-response")
        {
            panic!("chaos asked for a panic in the response hook");
        }
        Ok(())
    }
}

/// As the stock binary (`src/main.rs`): mimalloc, a fifth of the user-space instructions less
/// than the system allocator (benches/README.md). A program of your own should keep these lines.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let tokens_file = std::env::var_os("STICKY_TOKENS_FILE").unwrap_or_else(|| "tokens.txt".into());
    let extensions = Extensions::default()
        .with_filter(
            "auth",
            Auth {
                tokens_file: tokens_file.into(),
            },
        )
        .with_filter(
            "stamp",
            Stamp {
                next: AtomicU64::new(1),
            },
        )
        .with_filter("noop", Noop)
        .with_filter("chaos", Chaos);
    match sticky_proxy::run(extensions) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
