//! `sticky.state_file` (HAProxy `server-state-file`): backend states set through the admin API
//! (and backends it added: also tests/run_time_backends.rs) are written to the file and applied
//! at the next start — after a plain restart and after a
//! graceful upgrade (`-u`); a corrupt or stale file is one warning naming it, never a failed
//! start; a write that fails is a warning and a counter, never a failed state change.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

use common::admin::{Place, ADMIN_TOKEN as TOKEN};

impl Place {
    /// One pool `web` of three backends (`iis3` disabled in the configuration), the keyed
    /// cookie, an admin listener with the token, and the state file.
    fn section(&self, b: &[TestBackend; 3]) -> String {
        format!(
            "sticky:\n  state_file: \"{}\"\n  listeners:\n    - addr: \"{{listen}}\"\n  admin: {{ addr: \"{{admin}}\", token_file: \"{}\" }}\n  hide_headers: [X-ServerName, X-Powered-By]\n  pools:\n    - name: web\n      backends: [{}, {}, {{ name: iis3, addr: \"{}\", state: disabled }}]\n{KEYED_AFFINITY}",
            self.state_file().display(),
            self.dir.path().join("token").display(),
            b[0].yaml(),
            b[1].yaml(),
            b[2].addr,
        )
    }
}

async fn start(section: &str) -> Proxy {
    let proxy = Proxy::start(section).await;
    common::admin::wait_for_admin(&proxy).await;
    proxy
}

async fn set_state(admin: &str, backend: &str, state: &str) -> u16 {
    client()
        .post(format!(
            "http://{admin}/api/pools/web/backends/{backend}/state"
        ))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(format!("{{\"state\": \"{state}\"}}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The state of `backend` in `/api/pools/web` of the admin listener at `admin`.
async fn state_at(admin: &str, backend: &str) -> String {
    let reply = get(&client(), &format!("http://{admin}/api/pools/web"), None).await;
    let pool: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let found = pool["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == backend)
        .unwrap_or_else(|| panic!("no {backend} in {pool}"))
        .clone();
    found["state"].as_str().unwrap().to_string()
}

/// Wait until the state file says `backend` of `web` is `state` (it is written by a task of
/// its own, after the API's answer).
async fn wait_for_file(path: &std::path::Path, backend: &str, state: &str) {
    let written = eventually(Duration::from_secs(10), || {
        let found = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["pools"]["web"]["backends"][backend]["state"] == state);
        async move { found }
    })
    .await;
    assert!(
        written,
        "the state file says {backend} is {state}: {:?}",
        std::fs::read_to_string(path)
    );
}

/// A draining backend as the clients see it through `url`: a returning cookie of its own still
/// reaches it (no new cookie), new sessions never do.
async fn routed_as_draining(url: &str, cookie: &str, backend: &str) {
    let client = client();
    let returning = get(&client, url, Some(cookie)).await;
    assert_eq!(returning.backend(), backend, "the returning session");
    assert!(returning.set_cookies().is_empty(), "{returning:?}");
    for _ in 0..12 {
        let new = get(&client, url, None).await;
        assert_eq!(new.status, 200);
        assert_ne!(new.backend(), backend, "a new session never goes there");
        assert_ne!(new.backend(), "iis3", "disabled in the configuration");
    }
}

/// The log lines that name the state file at `warn`.
fn warnings_naming(log: &str, path: &std::path::Path) -> Vec<String> {
    let named = format!("state file {}", path.display());
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains(&named))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_drained_through_the_api_is_still_draining_after_a_restart() {
    let b = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let place = Place::new();
    let section = place.section(&b);
    let mut old = start(&section).await;
    let client = client();
    let cookie = format!(
        "ARRAffinity={}",
        cookie_for(&client, &old, "/", "iis2").await
    );
    assert_eq!(
        set_state(&old.admin.to_string(), "iis2", "draining").await,
        200
    );
    wait_for_file(&place.state_file(), "iis2", "draining").await;

    let status = old.terminate(Duration::from_secs(10)).await;
    assert!(status.is_some(), "SIGTERM stops the proxy:\n{}", old.log());
    let new = start_on_same_socket(&mut old, &section).await;
    assert_eq!(state_at(&new.admin.to_string(), "iis2").await, "draining");
    assert_eq!(state_at(&new.admin.to_string(), "iis3").await, "disabled");
    routed_as_draining(&new.url("/"), &cookie, "iis2").await;
    assert!(
        new.log()
            .contains("backend states restored over the configured ones: web/iis2 draining"),
        "{}",
        new.log()
    );

    // Enabled again: back to its configured state, the file holds nothing for it.
    assert_eq!(
        set_state(&new.admin.to_string(), "iis2", "active").await,
        200
    );
    let emptied = eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(place.state_file()).unwrap_or_default();
        async move { text.contains("\"version\": 1") && !text.contains("iis2") }
    })
    .await;
    assert!(emptied, "{:?}", std::fs::read_to_string(place.state_file()));
}

async fn start_on_same_socket(old: &mut Proxy, section: &str) -> Proxy {
    let listen = old.release_sockets().into_iter().next().unwrap();
    let proxy = Proxy::start_on(section, listen).await;
    common::admin::wait_for_admin(&proxy).await;
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_drained_through_the_api_is_still_draining_after_a_graceful_upgrade() {
    let b = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let place = Place::new();
    let (listen_port, admin_port) = (Port::new(), Port::new());
    let (listen, admin) = (listen_port.to_string(), admin_port.to_string());
    let dir = place.dir.path();
    let config = dir.join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nthreads: 2\npid_file: {d}/proxy.pid\nupgrade_sock: {d}/upgrade.sock\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\n{}",
            place
                .section(&b)
                .replace("{listen}", &listen)
                .replace("{admin}", &admin),
            d = dir.display()
        ),
    )
    .unwrap();
    // The old process: its sockets handed over by the test, as in tests/reload.rs.
    let mut command = Command::new(env!("CARGO_BIN_EXE_sticky-proxy"));
    command.arg("-c").arg(&config);
    let sockets = [listen_port.socket(), admin_port.socket()];
    let mut old = spawn_logged(socket_activated(command, &sockets), &dir.join("old.log"));
    let up = eventually(Duration::from_secs(20), || async {
        client()
            .get(format!("http://{admin}/healthz"))
            .send()
            .await
            .is_ok()
    });
    assert!(up.await, "old process up");
    let url = format!("http://{listen}/");
    let client = client();
    let mut cookie = None;
    for _ in 0..10 {
        let reply = get(&client, &url, None).await;
        if reply.backend() == "iis2" {
            cookie = reply.cookie("ARRAffinity");
            break;
        }
    }
    let cookie = format!("ARRAffinity={}", cookie.expect("a session on iis2"));
    assert_eq!(set_state(&admin, "iis2", "draining").await, 200);
    wait_for_file(&place.state_file(), "iis2", "draining").await;
    // A backend added through the API comes along too.
    let iis4 = TestBackend::start("iis4").await;
    let added = client
        .post(format!("http://{admin}/api/pools/web/backends"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(format!(
            "{{\"name\": \"iis4\", \"addr\": \"{}\"}}",
            iis4.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    wait_for_file(&place.state_file(), "iis4", "active").await;

    // The upgrade: a new process with `-u` on the same config, SIGQUIT to the old one.
    let mut command = Command::new(env!("CARGO_BIN_EXE_sticky-proxy"));
    command.arg("-c").arg(&config).arg("-u");
    let mut new = spawn_logged(command, &dir.join("new.log"));
    let sock = dir.join("upgrade.sock");
    let waiting = eventually(Duration::from_secs(30), || {
        let exists = sock.exists();
        async move { exists }
    });
    assert!(waiting.await, "the new process waits for the sockets");
    let _ = Command::new("kill")
        .args(["-QUIT", &old.0.id().to_string()])
        .status();
    let exited = eventually(Duration::from_secs(15), || {
        let gone = matches!(old.0.try_wait(), Ok(Some(_)));
        async move { gone }
    });
    assert!(exited.await, "the old process finishes");
    let new_log = || std::fs::read_to_string(dir.join("new.log")).unwrap_or_default();
    let restored = eventually(Duration::from_secs(20), || {
        let log = new_log();
        async move { log.contains("restored over the configured ones: web/iis2 draining") }
    });
    assert!(restored.await, "{}", new_log());
    assert_eq!(state_at(&admin, "iis2").await, "draining");
    assert_eq!(state_at(&admin, "iis4").await, "active");
    let mut reached = false;
    for _ in 0..12 {
        reached |= get(&client, &url, None).await.backend() == "iis4";
    }
    assert!(
        reached,
        "new sessions reach the added backend after the upgrade"
    );
    routed_as_draining(&url, &cookie, "iis2").await;
    assert!(matches!(new.0.try_wait(), Ok(None)), "the new process runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_is_one_warning_naming_it_and_the_configured_states_apply() {
    let b = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    for corrupt in [
        "{\"version\": 1, \"pools\": {",
        "{\"version\": 2, \"pools\": {\"web\": {\"backends\": {\"iis2\": {\"state\": \"disabled\"}}}}}",
        "",
    ] {
        let place = Place::new();
        std::fs::write(place.state_file(), corrupt).unwrap();
        let proxy = start(&place.section(&b)).await;
        let warnings = warnings_naming(&proxy.log(), &place.state_file());
        assert_eq!(warnings.len(), 1, "{corrupt:?}: {}", proxy.log());
        assert!(warnings[0].contains("cannot be used"), "{warnings:?}");
        let admin = proxy.admin.to_string();
        assert_eq!(state_at(&admin, "iis2").await, "active");
        assert_eq!(state_at(&admin, "iis3").await, "disabled");
        assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_entries_are_one_warning_naming_them_and_the_others_apply() {
    let b = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let place = Place::new();
    std::fs::write(
        place.state_file(),
        r#"{"version": 1, "pools": {"web": {"backends": {"iis2": {"state": "draining"}, "iis9": {"state": "disabled"}}}, "api": {"backends": {"a1": {"state": "disabled"}}}}}"#,
    )
    .unwrap();
    let proxy = start(&place.section(&b)).await;
    let warnings = warnings_naming(&proxy.log(), &place.state_file());
    assert_eq!(warnings.len(), 1, "{}", proxy.log());
    assert!(
        warnings[0].contains("(stale): pool api, web/iis9"),
        "{warnings:?}"
    );
    assert_eq!(state_at(&proxy.admin.to_string(), "iis2").await, "draining");
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_state_file_is_fine_and_the_configured_states_apply() {
    let b = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let place = Place::new();
    let proxy = start(&place.section(&b)).await;
    assert!(warnings_naming(&proxy.log(), &place.state_file()).is_empty());
    assert!(proxy
        .log()
        .contains("none yet; the configured backend states apply"));
    assert_eq!(state_at(&proxy.admin.to_string(), "iis3").await, "disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_that_cannot_be_written_is_a_warning_and_a_count_and_the_state_change_stands()
{
    let b = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let place = Place::new();
    // The state file's directory disappears after the start.
    let inner = place.dir.path().join("gone");
    std::fs::create_dir(&inner).unwrap();
    let section = place.section(&b).replace(
        &place.state_file().display().to_string(),
        &inner.join("state.json").display().to_string(),
    );
    let proxy = start(&section).await;
    std::fs::remove_dir(&inner).unwrap();
    let admin = proxy.admin.to_string();
    assert_eq!(set_state(&admin, "iis1", "disabled").await, 200);
    assert_eq!(state_at(&admin, "iis1").await, "disabled");
    let counted = eventually(Duration::from_secs(10), || async {
        get(&client(), &proxy.admin_url("/metrics"), None)
            .await
            .body
            .contains("sticky_state_file_writes_total{result=\"failed\"} 1")
    })
    .await;
    assert!(counted, "the failed write is counted");
    let warnings = warnings_naming(&proxy.log(), &inner.join("state.json"));
    assert_eq!(warnings.len(), 1, "{}", proxy.log());
    assert!(warnings[0].contains("cannot write it"), "{warnings:?}");
    // The proxy serves on, without the disabled backend.
    for _ in 0..6 {
        let reply = get(&client(), &proxy.url("/"), None).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.backend(), "iis2");
    }
}
