//! The admin API's status codes and authorization: 404 for a path it does not serve, 405 with
//! `Allow` for one it serves with another method; the `Bearer` scheme in any case (RFC 9110
//! §11.1); and a warning at start-up when the admin listener is bound beyond loopback.

mod common;
use common::*;
use std::time::Duration;

const TOKEN: &str = "admin-token-0123456789abcdef";

async fn start_with_token(backend: &TestBackend) -> (Proxy, tempfile::TempDir) {
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let section = one_pool(&[backend], "").replace(
        "sticky:\n",
        &format!(
            "sticky:\n  admin: {{ addr: \"{{admin}}\", token_file: \"{}\" }}\n",
            token_file.display()
        ),
    );
    (Proxy::start(&section).await, token_dir)
}

async fn call(method: reqwest::Method, url: String, authorization: Option<&str>) -> Reply {
    let mut request = client()
        .request(method, url)
        .body("{\"state\": \"draining\"}");
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    into_reply(request.send().await.unwrap()).await
}

#[tokio::test]
async fn an_unknown_path_is_404_and_a_known_path_with_the_wrong_method_is_405_with_allow() {
    let b = TestBackend::start("iis1").await;
    let (proxy, _token) = start_with_token(&b).await;
    let auth = format!("Bearer {TOKEN}");
    for (method, path) in [
        (reqwest::Method::GET, "/api/nope"),
        (reqwest::Method::GET, "/api"),
        (reqwest::Method::GET, "/api/pools/web/tables"),
        (reqwest::Method::GET, "/api/pools/web/tables/learn/nope"),
        (reqwest::Method::DELETE, "/api/nope"),
        (reqwest::Method::POST, "/api/pools/web/frobnicate"),
        (reqwest::Method::GET, "/nope"),
    ] {
        let reply = call(method.clone(), proxy.admin_url(path), Some(&auth)).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.body);
        assert_eq!(reply.header("allow"), None, "{method} {path}");
    }
    for (method, path, allow) in [
        (reqwest::Method::GET, "/api/pools/web/backends", "POST"),
        (
            reqwest::Method::GET,
            "/api/pools/web/backends/iis1",
            "DELETE",
        ),
        (
            reqwest::Method::POST,
            "/api/pools/web/backends/iis1",
            "DELETE",
        ),
        (reqwest::Method::POST, "/api/pools", "GET"),
        (reqwest::Method::DELETE, "/api/pools/web", "GET"),
        (reqwest::Method::POST, "/metrics", "GET"),
        (reqwest::Method::PUT, "/healthz", "GET"),
        (
            reqwest::Method::GET,
            "/api/pools/web/backends/iis1/state",
            "POST",
        ),
        (
            reqwest::Method::PUT,
            "/api/pools/web/backends/iis1/close-upgraded",
            "POST",
        ),
        (
            reqwest::Method::GET,
            "/api/pools/web/tables/learn/delete",
            "POST",
        ),
        (
            reqwest::Method::POST,
            "/api/pools/web/tables/learn/entries",
            "GET",
        ),
    ] {
        let reply = call(method.clone(), proxy.admin_url(path), Some(&auth)).await;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
        assert_eq!(
            reply.header("allow").as_deref(),
            Some(allow),
            "{method} {path}"
        );
    }
    let view = get(&client(), &proxy.admin_url("/api/pools/web"), None).await;
    assert!(
        !view.body.contains("draining"),
        "nothing changed: {}",
        view.body
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_accepted_in_any_case_and_a_wrong_token_is_still_refused() {
    let b = TestBackend::start("iis1").await;
    let (proxy, _token) = start_with_token(&b).await;
    let url = proxy.admin_url("/api/pools/web/backends/iis1/state");
    let post = |authorization: String| {
        let url = url.clone();
        async move { call(reqwest::Method::POST, url, Some(&authorization)).await }
    };
    for refused in [
        format!("Bearer {TOKEN}x"),
        format!("bearer {TOKEN}x"),
        format!("Basic {TOKEN}"),
        format!("Bearer{TOKEN}"),
        "Bearer".to_string(),
        "bearer ".to_string(),
        TOKEN.to_string(),
    ] {
        let status = post(refused.clone()).await.status;
        assert!(status == 401 || status == 403, "{refused:?}: {status}");
    }
    let view = get(&client(), &proxy.admin_url("/api/pools/web"), None).await;
    assert!(
        !view.body.contains("draining"),
        "nothing changed: {}",
        view.body
    );
    for accepted in [
        format!("bearer {TOKEN}"),
        format!("BEARER {TOKEN}"),
        format!("bEaReR {TOKEN}"),
        format!("Bearer   {TOKEN}"),
        format!("Bearer {TOKEN}"),
    ] {
        let reply = post(accepted.clone()).await;
        assert_eq!(reply.status, 200, "{accepted:?}: {}", reply.body);
    }
}

#[test]
fn an_admin_listener_bound_beyond_loopback_logs_a_warning_naming_the_risk_at_start() {
    // In a network namespace of its own (a new user namespace makes that possible without
    // privileges), where `0.0.0.0` reaches nothing but that namespace.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            "{}sticky:\n  admin: {{ addr: \"0.0.0.0:6189\" }}\n  listeners: [{{ addr: \"127.0.0.1:6188\" }}]\n  pools:\n    - name: web\n      backends: [{{ name: iis1, addr: \"127.0.0.1:9001\" }}]\n",
            pingora_keys(dir.path())
        ),
    )
    .unwrap();
    let log_path = dir.path().join("proxy.log");
    let mut child = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--"])
        .arg(env!("CARGO_BIN_EXE_sticky-proxy"))
        .arg("-c")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("unshare (util-linux) runs the proxy in a network namespace of its own");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // The start-up checks are logged before Pingora's "Server starting".
    while !log().contains("Server starting") {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the proxy stopped ({status}):\n{}", log());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not started:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = log();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("sticky.admin.addr"))
        .unwrap_or_else(|| panic!("no warning naming sticky.admin.addr:\n{log}"));
    for risk in [
        "0.0.0.0:6189",
        "not a loopback address",
        "other machines",
        "127.0.0.1",
    ] {
        assert!(warning.contains(risk), "{risk:?} in {warning}");
    }
    // `-t` says it too; a loopback address gives no warning.
    let (code, stdout, _) = run_binary(&["-t", "-c", config.to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("warning: sticky.admin.addr"), "{stdout}");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("0.0.0.0:6189", "127.0.0.1:6189"),
    )
    .unwrap();
    let (code, stdout, _) = run_binary(&["-t", "-c", config.to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    assert!(!stdout.contains("warning"), "{stdout}");
}
