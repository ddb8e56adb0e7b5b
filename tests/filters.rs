//! Rust filters through the real example binary (`examples/filters.rs`: `auth`, `stamp`,
//! `chaos`), enabled from the YAML per listener and per route, against demo backends: a filter's
//! early answer, header changes both ways, the affinity decision seen by the response and log
//! hooks, the listed order, and what a filter that fails or panics does to its request (a plain
//! 500 from the proxy, the filter named in the log) and to the others (nothing).

mod common;
use common::*;
use std::time::Duration;

const AFFINITY: &str =
    "      affinity:\n        cookie:\n          secret: test-secret-0123456789abcdef\n";

/// A `sticky:` section: one listener with `filters`, pool `web` with cookie affinity, `routes`.
fn section(backends: &[&TestBackend], listener_filters: &str, routes: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| b.yaml()).collect();
    format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n      filters: [{listener_filters}]\n  hide_headers: [X-ServerName, X-Powered-By]\n  pools:\n    - name: web\n      backends: [{}]\n{AFFINITY}{routes}",
        list.join(", ")
    )
}

/// The example binary on `section`, its `auth` filter reading `tokens`.
async fn start(section: &str, tokens: &std::path::Path) -> Proxy {
    let tokens = tokens.to_str().unwrap();
    let env = [("STICKY_TOKENS_FILE", tokens)];
    Proxy::start_bin_with_env(&example_binary("filters"), section, Port::new(), &env).await
}

fn tokens_file(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("tokens.txt");
    std::fs::write(&path, text).unwrap();
    path
}

async fn send(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = client().get(proxy.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    into_reply(request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_request_without_a_listed_bearer_token_is_answered_401_and_never_reaches_a_backend() {
    let b = TestBackend::start("iis1").await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(&dir, "token-a\n# retired: token-old\n  token-b  \n");
    let proxy = start(&section(&[&b], "auth", ""), &tokens).await;

    for headers in [
        vec![],
        vec![("Authorization", "Bearer token-old")],
        vec![("Authorization", "Bearer token-c")],
        vec![("Authorization", "Basic dG9rZW4tYQ==")],
    ] {
        let refused = send(&proxy, "/", &headers).await;
        assert_eq!(refused.status, 401, "{headers:?}");
        assert_eq!(refused.body, "401 Unauthorized\n");
        assert_eq!(
            refused.header("www-authenticate").as_deref(),
            Some("Bearer")
        );
        assert!(refused.set_cookies().is_empty(), "{:?}", refused.headers);
    }
    assert_eq!(b.hits(), 0, "no refused request reached the backend");

    let allowed = send(&proxy, "/", &[("Authorization", "Bearer token-b")]).await;
    assert_eq!((allowed.status, allowed.backend()), (200, "iis1"));
    assert!(
        allowed.cookie("ARRAffinity").is_some(),
        "affinity still applies"
    );
    assert_eq!(
        allowed.header("x-echo-authorization"),
        None,
        "the token is removed before the backend"
    );

    // The file is read for each request: a token removed from it no longer opens the door.
    std::fs::write(&tokens, "token-a\n").unwrap();
    let revoked = send(&proxy, "/", &[("Authorization", "Bearer token-b")]).await;
    assert_eq!(revoked.status, 401);
    let still = send(&proxy, "/", &[("Authorization", "Bearer token-a")]).await;
    assert_eq!(still.status, 200);
}

#[tokio::test]
async fn a_filter_changes_headers_both_ways_and_sees_the_affinity_decision() {
    let [b1, b2] = TestBackend::start_each(["iis1", "iis2"]).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(&section(&[&b1, &b2], "stamp", ""), &tokens_file(&dir, "")).await;

    let first = send(&proxy, "/", &[]).await;
    assert_eq!(first.header("x-affinity").as_deref(), Some("new"));
    let id = first
        .header("x-request-id")
        .expect("the response carries the id");
    assert_eq!(
        first.header("x-echo-request-id").as_deref(),
        Some(id.as_str()),
        "the backend got the id the filter added"
    );
    let cookie = format!("ARRAffinity={}", first.cookie("ARRAffinity").unwrap());

    let again = get(&client(), &proxy.url("/"), Some(&cookie)).await;
    assert_eq!(again.backend(), first.backend());
    assert_eq!(again.header("x-affinity").as_deref(), Some("sticky"));
    assert_ne!(
        again.header("x-request-id"),
        Some(id.clone()),
        "each request its own id"
    );

    let own = send(&proxy, "/", &[("X-Request-Id", "client-chosen-1")]).await;
    assert_eq!(
        own.header("x-request-id").as_deref(),
        Some("client-chosen-1")
    );

    // The backend opts out: the response hook runs after affinity saw it (no cookie).
    let opted = send(&proxy, "/disable-affinity", &[]).await;
    assert_eq!(opted.header("x-affinity").as_deref(), Some("opted_out"));
    assert!(opted.set_cookies().is_empty());

    // The log hook sees the decision (and the backend's name, which the client never does).
    let backend = again.backend().to_string();
    let logged = eventually(Duration::from_secs(5), || {
        let log = proxy.log();
        let line = format!("status=200 outcome=sticky backend={backend} answered_by=-");
        async move { log.contains(&line) }
    })
    .await;
    assert!(logged, "{}", proxy.log());
    assert!(!again
        .headers
        .values()
        .any(|v| v.as_bytes() == backend.as_bytes()));
}

#[tokio::test]
async fn a_listeners_filters_run_before_a_routes_in_the_listed_order() {
    let b = TestBackend::start("iis1").await;
    let dir = tempfile::tempdir().unwrap();
    let routes = "  routes:\n    - { match: { path_prefix: /private }, pool: web, filters: [auth] }\n    - { match: { path_prefix: /public }, pool: web }\n";
    let listener_then_route = section(&[&b], "stamp", routes);
    let proxy = start(&listener_then_route, &tokens_file(&dir, "t1\n")).await;

    let public = send(&proxy, "/public/x", &[]).await;
    assert_eq!(public.status, 200, "no auth on this route");
    assert!(
        public.header("x-affinity").is_some(),
        "the listener's filter ran"
    );
    let private = send(&proxy, "/private/x", &[]).await;
    assert_eq!(private.status, 401);
    let open = send(&proxy, "/private/x", &[("Authorization", "Bearer t1")]).await;
    assert_eq!(open.status, 200);
    // stamp ran before auth answered: it had given the refused request an id.
    let stamped = eventually(Duration::from_secs(5), || {
        let log = proxy.log();
        async move {
            log.lines().any(|l| {
                l.contains("stamp: id=")
                    && !l.contains("stamp: id=-")
                    && l.contains("status=401")
                    && l.contains("answered_by=auth")
            })
        }
    })
    .await;
    assert!(stamped, "{}", proxy.log());

    // The other order: auth answers before stamp's request hook runs (its log hook still does).
    let auth_first = section(&[&b], "auth, stamp", "");
    let proxy = start(&auth_first, &tokens_file(&dir, "t1\n")).await;
    assert_eq!(send(&proxy, "/", &[]).await.status, 401);
    let unstamped = eventually(Duration::from_secs(5), || {
        let log = proxy.log();
        async move { log.contains("stamp: id=- status=401 outcome=none backend=- answered_by=auth") }
    })
    .await;
    assert!(unstamped, "{}", proxy.log());
}

#[tokio::test]
async fn a_filter_that_fails_or_panics_gets_a_plain_500_is_logged_by_name_and_other_requests_are_served(
) {
    let b = TestBackend::start("iis1").await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(&section(&[&b], "chaos, stamp", ""), &tokens_file(&dir, "")).await;

    for (chaos, hook, reaches_backend) in [
        (
            "panic",
            "request hook: panicked: chaos asked for a panic",
            false,
        ),
        ("error", "request hook: chaos asked for an error", false),
        (
            "panic-response",
            "response hook: panicked: chaos asked for a panic in the response hook",
            true,
        ),
    ] {
        let hits = b.hits();
        let failed = send(&proxy, "/", &[("X-Chaos", chaos)]).await;
        assert_eq!(failed.status, 500, "{chaos}");
        assert_eq!(failed.body, "500 Internal Server Error\n", "{chaos}");
        assert_eq!(
            failed.header("content-type").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        let text = format!("{:?}", failed.headers).to_lowercase();
        for leak in ["chaos", "panic", "10.1.2.3", "iis1", &b.addr.to_string()] {
            assert!(!text.contains(leak), "{chaos}: {leak} in {text}");
        }
        assert!(failed.set_cookies().is_empty());
        assert_eq!(b.hits() - hits, usize::from(reaches_backend), "{chaos}");
        let line = format!("filter \"chaos\" failed in its {hook}");
        let logged = eventually(Duration::from_secs(5), || {
            let log = proxy.log();
            let line = line.clone();
            async move { log.contains(&line) }
        })
        .await;
        assert!(logged, "{line}\n{}", proxy.log());
    }

    // Requests in parallel with failing ones are served as usual.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let url = proxy.url("/");
        tasks.push(tokio::spawn(async move {
            let mut request = client().get(url);
            if i % 3 == 0 {
                request = request.header("X-Chaos", "panic");
            }
            (i, request.send().await.unwrap().status().as_u16())
        }));
    }
    for task in tasks {
        let (i, status) = task.await.unwrap();
        assert_eq!(status, if i % 3 == 0 { 500 } else { 200 }, "request {i}");
    }

    // A filter whose own resource fails (the tokens file is gone) fails the same way.
    let proxy = start(
        &section(&[&b], "auth", ""),
        &dir.path().join("no-such-file"),
    )
    .await;
    let failed = send(&proxy, "/", &[("Authorization", "Bearer t1")]).await;
    assert_eq!(
        (failed.status, failed.body.as_str()),
        (500, "500 Internal Server Error\n")
    );
    let logged = eventually(Duration::from_secs(5), || {
        let log = proxy.log();
        async move { log.contains("filter \"auth\" failed in its request hook: cannot read") }
    })
    .await;
    assert!(logged, "{}", proxy.log());
}

#[tokio::test]
async fn a_filter_name_nobody_registered_stops_the_start_with_exit_2_naming_the_field() {
    let b = TestBackend::start("iis1").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let routes = "  routes:\n    - { pool: web, filters: [stamp, tenant] }\n";
    let yaml = format!(
        "{}{}",
        pingora_keys(dir.path()),
        section(&[&b], "auth", routes).replace("{listen}", "127.0.0.1:0")
    );
    std::fs::write(&path, yaml).unwrap();
    let run = |binary: &std::path::Path| {
        let out = std::process::Command::new(binary)
            .args(["-c", path.to_str().unwrap()])
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The example registers auth and stamp, not tenant.
    let (code, stderr) = run(&example_binary("filters"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("sticky.routes[0].filters[1]: no filter registered as \"tenant\" (registered: [\"auth\", \"chaos\", \"noop\", \"stamp\"])"),
        "{stderr}"
    );
    // The stock binary registers none: the listener's is the first one named.
    let (code, stderr) = run(std::path::Path::new(env!("CARGO_BIN_EXE_sticky-proxy")));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("sticky.listeners[0].filters[0]: no filter registered as \"auth\""),
        "{stderr}"
    );
}
