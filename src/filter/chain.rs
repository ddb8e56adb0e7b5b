//! Running a request's filters in order: each hook under `catch_unwind`, so that a filter that
//! panics fails like one that returns an error (logged with its name; the proxy answers 500),
//! and the state a request's filters share between hooks ([`FilterState`]).

use super::{Exchange, Filter, FilterRequest, FilterResponse, Flow};
use futures_util::FutureExt;
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// One filter with the name it was registered (and configured) under.
pub(crate) type Named = (Arc<str>, Arc<dyn Filter>);

/// The filters of a route, in order: its listener's, then its own. Empty for almost every
/// route, which then costs one length check per hook.
#[derive(Clone, Default)]
pub(crate) struct FilterChain(Arc<[Named]>);

impl FilterChain {
    /// The chain of `filters`, in order.
    pub(crate) fn new(filters: Vec<Named>) -> Self {
        FilterChain(filters.into())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, in order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| &**name)
    }
}

impl std::fmt::Debug for FilterChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// What a request's filters share and leave behind: their per-request values, and which filter
/// answered the request or failed.
#[derive(Default)]
pub(crate) struct FilterState {
    pub(crate) data: http::Extensions,
    /// The filter that answered the request, or failed.
    pub(crate) answered_by: Option<Arc<str>>,
    /// That filter failed (error or panic): the proxy answers 500.
    pub(crate) failed: bool,
}

/// How the request hooks ended.
#[derive(Debug)]
pub(crate) enum RequestStep {
    /// Every filter let the request go on.
    Continue,
    /// The named filter answered.
    Answer(Arc<str>, super::Answer),
    /// The named filter failed (logged): answer 500.
    Failed(Arc<str>),
}

impl FilterState {
    /// Record how the request hooks ended.
    pub(crate) fn record(&mut self, step: &RequestStep) {
        match step {
            RequestStep::Continue => {}
            RequestStep::Answer(name, _) => self.answered_by = Some(name.clone()),
            RequestStep::Failed(name) => self.fail(name.clone()),
        }
    }

    /// Record that the named filter failed.
    pub(crate) fn fail(&mut self, name: Arc<str>) {
        self.answered_by = Some(name);
        self.failed = true;
    }
}

/// Run the request hooks in order until one answers or fails.
pub(crate) async fn run_request(
    chain: &FilterChain,
    request: &mut FilterRequest<'_>,
) -> RequestStep {
    for (name, filter) in chain.0.iter() {
        let why = match AssertUnwindSafe(filter.request(request))
            .catch_unwind()
            .await
        {
            Ok(Ok(Flow::Continue)) => continue,
            Ok(Ok(Flow::Answer(answer))) if (200..=599).contains(&answer.status) => {
                return RequestStep::Answer(name.clone(), answer);
            }
            Ok(Ok(Flow::Answer(answer))) => format!("answered with status {}", answer.status),
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panicked(&*panic),
        };
        failed(name, "request", &why);
        return RequestStep::Failed(name.clone());
    }
    RequestStep::Continue
}

/// Run the response hooks in order; the name of the one that failed (logged), if one did: the
/// proxy answers 500 instead of the response.
pub(crate) async fn run_response(
    chain: &FilterChain,
    response: &mut FilterResponse<'_>,
) -> Result<(), Arc<str>> {
    for (name, filter) in chain.0.iter() {
        let why = match AssertUnwindSafe(filter.response(response))
            .catch_unwind()
            .await
        {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panicked(&*panic),
        };
        failed(name, "response", &why);
        return Err(name.clone());
    }
    Ok(())
}

/// Run every log hook; a panic is logged and the next filter's hook still runs.
pub(crate) fn run_log(chain: &FilterChain, exchange: &Exchange<'_>) {
    for (name, filter) in chain.0.iter() {
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| filter.log(exchange))) {
            failed(name, "log", &panicked(&*panic));
        }
    }
}

fn failed(name: &str, hook: &str, why: &str) {
    log::error!("filter {name:?} failed in its {hook} hook: {why}");
}

/// A panic's message, when it has one.
fn panicked(payload: &(dyn Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    match message {
        Some(message) => format!("panicked: {message}"),
        None => "panicked".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Answer, FilterError, RouteNames};
    use super::*;
    use pingora_http::RequestHeader;

    #[test]
    fn an_answer_keeps_the_headers_a_filter_may_set_and_leaves_out_the_proxys_own() {
        let answer = Answer::new(429, "slow down\n")
            .header("Retry-After", "5")
            .header("Content-Length", "0")
            .header("transfer-encoding", "chunked")
            .header("Cache-Control", "public")
            .header("Connection", "keep-alive")
            .header("content-type", "application/json");
        let names: Vec<&str> = answer.headers().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["retry-after", "content-type"]);
    }

    struct Add(&'static str);
    struct Refuse;
    struct Fails;
    struct Panics;

    #[async_trait::async_trait]
    impl Filter for Add {
        async fn request(&self, r: &mut FilterRequest<'_>) -> Result<Flow, FilterError> {
            r.header.append_header("x-seen", self.0)?;
            Ok(Flow::Continue)
        }
    }

    #[async_trait::async_trait]
    impl Filter for Refuse {
        async fn request(&self, _: &mut FilterRequest<'_>) -> Result<Flow, FilterError> {
            Ok(Flow::Answer(Answer::new(403, "no\n")))
        }
    }

    #[async_trait::async_trait]
    impl Filter for Fails {
        async fn request(&self, _: &mut FilterRequest<'_>) -> Result<Flow, FilterError> {
            Err("the token store is down".into())
        }
    }

    #[async_trait::async_trait]
    impl Filter for Panics {
        async fn request(&self, _: &mut FilterRequest<'_>) -> Result<Flow, FilterError> {
            panic!("a bug in a filter")
        }
    }

    fn chain(filters: Vec<(&str, Arc<dyn Filter>)>) -> FilterChain {
        FilterChain::new(filters.into_iter().map(|(n, f)| (n.into(), f)).collect())
    }

    async fn run(chain: &FilterChain) -> (RequestStep, FilterState, Vec<String>) {
        let mut header = RequestHeader::build("GET", b"/", None).unwrap();
        let mut state = FilterState::default();
        let mut data = http::Extensions::new();
        let mut request = FilterRequest {
            header: &mut header,
            client: Default::default(),
            route: RouteNames {
                pool: "web",
                route: "-",
                class: "pool",
            },
            data: &mut data,
        };
        let step = run_request(chain, &mut request).await;
        state.record(&step);
        let seen = header
            .headers
            .get_all("x-seen")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        (step, state, seen)
    }

    #[tokio::test]
    async fn filters_run_in_the_listed_order_until_one_answers() {
        let c = chain(vec![
            ("a", Arc::new(Add("a"))),
            ("b", Arc::new(Add("b"))),
            ("refuse", Arc::new(Refuse)),
            ("c", Arc::new(Add("c"))),
        ]);
        let (step, state, seen) = run(&c).await;
        assert!(matches!(step, RequestStep::Answer(_, a) if a.status() == 403));
        assert_eq!(seen, ["a", "b"]);
        assert_eq!(state.answered_by.as_deref(), Some("refuse"));
        assert!(!state.failed);
    }

    #[tokio::test]
    async fn an_error_or_a_panic_fails_the_request_and_names_the_filter() {
        for (name, filter) in [
            ("store", Arc::new(Fails) as Arc<dyn Filter>),
            ("buggy", Arc::new(Panics)),
        ] {
            let c = chain(vec![("a", Arc::new(Add("a"))), (name, filter)]);
            let (step, state, seen) = run(&c).await;
            assert!(matches!(step, RequestStep::Failed(_)), "{name}");
            assert_eq!(state.answered_by.as_deref(), Some(name));
            assert!(state.failed);
            assert_eq!(seen, ["a"]);
        }
    }

    #[tokio::test]
    async fn an_answer_that_is_no_final_status_is_a_failure() {
        struct Informational;
        #[async_trait::async_trait]
        impl Filter for Informational {
            async fn request(&self, _: &mut FilterRequest<'_>) -> Result<Flow, FilterError> {
                Ok(Flow::Answer(Answer::new(101, "")))
            }
        }
        let (step, state, _) = run(&chain(vec![("odd", Arc::new(Informational))])).await;
        assert!(matches!(step, RequestStep::Failed(_)));
        assert!(state.failed);
    }

    #[tokio::test]
    async fn an_empty_chain_lets_the_request_go_on() {
        let (step, state, _) = run(&FilterChain::default()).await;
        assert!(matches!(step, RequestStep::Continue));
        assert!(state.answered_by.is_none());
    }

    #[test]
    fn a_panic_message_is_kept_for_the_log() {
        let payload = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panicked(&*payload), "panicked: boom 1");
        let payload = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panicked(&*payload), "panicked");
    }
}
