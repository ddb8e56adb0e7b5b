//! Zero-downtime reload: Pingora's graceful upgrade (`-u` + SIGQUIT) to a new process with a
//! changed config, under a steady stream of requests from a real client.

mod common;
use common::*;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// The old process: its listening sockets handed over by the test (kept open, as systemd
/// keeps them), which it passes on to the new process at the upgrade.
fn spawn_old(config: &std::path::Path, sockets: &[&Port], log: &std::path::Path) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sticky-proxy"));
    command.arg("-c").arg(config);
    let sockets: Vec<&std::net::TcpListener> = sockets.iter().map(|p| p.socket()).collect();
    spawn_logged(socket_activated(command, &sockets), log)
}

/// The new process of a graceful upgrade (`-u`): it takes the sockets from the old one.
fn spawn_new(config: &std::path::Path, log: &std::path::Path) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sticky-proxy"));
    command.arg("-c").arg(config).arg("-u");
    spawn_logged(command, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_upgrade_to_a_changed_config_loses_no_request_and_keeps_cookies_pinning() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let port = Port::new();
    let listen = port.to_string();
    let base = format!(
        "version: 1\nthreads: 2\npid_file: {d}/proxy.pid\nupgrade_sock: {d}/upgrade.sock\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 2\n",
        d = dir.path().display()
    );
    let section = one_pool(&[&b1, &b2], KEYED_AFFINITY).replace("{listen}", &listen);
    let old_config = dir.path().join("old.yaml");
    std::fs::write(&old_config, format!("{base}{section}")).unwrap();
    // The new config hides one more response header, so we can tell which process answered.
    let new_config = dir.path().join("new.yaml");
    std::fs::write(
        &new_config,
        format!(
            "{base}{}",
            section.replace(
                "hide_headers: [X-ServerName, X-Powered-By]",
                "hide_headers: [X-ServerName, X-Powered-By, X-Echo-Forwarded-Host]"
            )
        ),
    )
    .unwrap();

    let mut old = spawn_old(&old_config, &[&port], &dir.path().join("old.log"));
    let client = client();
    let url = format!("http://{listen}/");
    let first = get(&client, &url, None).await;
    let cookie = format!("ARRAffinity={}", first.cookie("ARRAffinity").unwrap());
    let home = first.backend().to_string();
    assert!(
        first.header("x-echo-forwarded-host").is_some(),
        "the old config shows it"
    );

    // A steady stream: 4 clients, each request carrying the cookie.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, new_process) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, url, cookie, home) =
            (client.clone(), url.clone(), cookie.clone(), home.clone());
        let (stop, ok, failed, new_process) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            new_process.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Relaxed) {
                match client.get(&url).header("Cookie", &cookie).send().await {
                    Ok(response) => {
                        let hidden = !response.headers().contains_key("x-echo-forwarded-host");
                        let status = response.status().as_u16();
                        let body = response.text().await.unwrap_or_default();
                        if status == 200 && body.trim() == format!("hello {home}") {
                            ok.fetch_add(1, Relaxed);
                            if hidden {
                                new_process.fetch_add(1, Relaxed);
                            }
                        } else {
                            eprintln!("bad answer: {status} {body:?}");
                            failed.fetch_add(1, Relaxed);
                        }
                    }
                    Err(e) => {
                        eprintln!("request error: {e:?}");
                        failed.fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    // The stream runs on the old process first (polled: no assumption on how soon).
    let running = eventually(Duration::from_secs(30), || {
        let ok = ok.load(Relaxed);
        async move { ok > 0 }
    })
    .await;
    assert!(running, "the old process answers the stream");

    // The upgrade: the new process waits for the listening sockets, the old one hands them over
    // on SIGQUIT and finishes its in-flight requests.
    let _new = spawn_new(&new_config, &dir.path().join("new.log"));
    wait_for_upgrade_socket(dir.path()).await;
    let _ = Command::new("kill")
        .args(["-QUIT", &old.0.id().to_string()])
        .status();
    let exited = eventually(Duration::from_secs(10), || {
        let gone = matches!(old.0.try_wait(), Ok(Some(_)));
        async move { gone }
    })
    .await;
    assert!(
        exited,
        "the old process finishes:\n{}",
        std::fs::read_to_string(dir.path().join("old.log")).unwrap_or_default()
    );
    // Then the stream runs on the new process.
    let on_new = eventually(Duration::from_secs(30), || {
        let n = new_process.load(Relaxed);
        async move { n > 0 }
    })
    .await;
    stop.store(true, Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let logs = || {
        format!(
            "old:\n{}\nnew:\n{}",
            std::fs::read_to_string(dir.path().join("old.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("new.log")).unwrap_or_default()
        )
    };
    assert_eq!(
        failed.load(Relaxed),
        0,
        "no request lost ({} ok)\n{}",
        ok.load(Relaxed),
        logs()
    );
    assert!(on_new, "the new process served part of it\n{}", logs());

    // After the reload the cookie issued before still pins, now answered by the new config.
    let after = get(&client, &url, Some(&cookie)).await;
    assert_eq!(after.backend(), home);
    assert!(after.header("x-echo-forwarded-host").is_none());
    assert!(after.set_cookies().is_empty());
}

/// Wait until the new process (`-u`) listens on `upgrade.sock` in `dir` for the sockets.
async fn wait_for_upgrade_socket(dir: &std::path::Path) {
    let path = dir.join("upgrade.sock");
    let listening = eventually(Duration::from_secs(30), || {
        let exists = path.exists();
        async move { exists }
    })
    .await;
    assert!(listening, "the new process waits for the sockets");
}

/// Send `GET path` on an open keep-alive connection and return the status.
async fn get_on(stream: &mut tokio::net::TcpStream, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            }
        }
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return 0,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_from_the_old_process_once_an_upgrade_begins() {
    let b1 = TestBackend::start("iis1").await;
    let dir = tempfile::tempdir().unwrap();
    let (listen_port, admin_port) = (Port::new(), Port::new());
    let (listen, admin) = (listen_port.to_string(), admin_port.to_string());
    let config = dir.path().join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nthreads: 1\npid_file: {d}/proxy.pid\nupgrade_sock: {d}/upgrade.sock\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\n{}",
            one_pool(&[&b1], KEYED_AFFINITY)
                .replace("{listen}", &listen)
                .replace("  pools:", &format!("  admin: {{ addr: \"{admin}\" }}\n  pools:")),
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut old = spawn_old(
        &config,
        &[&listen_port, &admin_port],
        &dir.path().join("old.log"),
    );
    let admin_addr = admin_port.addr();
    // Connects queue on the handed-over socket until the process serves: wait for an answer.
    let up = eventually(Duration::from_secs(20), || async {
        let url = format!("http://{admin}/readyz");
        client().get(url).send().await.is_ok()
    });
    assert!(up.await, "old proxy up");
    // One kept-alive connection to the old process.
    let mut to_old = tokio::net::TcpStream::connect(admin_addr).await.unwrap();
    assert_eq!(get_on(&mut to_old, "/readyz").await, 200);
    assert_eq!(get_on(&mut to_old, "/healthz").await, 200);

    let _new = spawn_new(&config, &dir.path().join("new.log"));
    wait_for_upgrade_socket(dir.path()).await;
    let _ = Command::new("kill")
        .args(["-QUIT", &old.0.id().to_string()])
        .status();
    let mut statuses = Vec::new();
    // (A hang guard of 10 s: polled, no assumption on how soon.)
    for _ in 0..200 {
        let status = get_on(&mut to_old, "/readyz").await;
        statuses.push(status);
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        statuses.last(),
        Some(&503),
        "the old process reports not ready: {statuses:?}"
    );
    assert_eq!(
        get_on(&mut to_old, "/healthz").await,
        200,
        "while still alive"
    );
    // New connections reach the new process, which is ready.
    let mut ready = false;
    for _ in 0..200 {
        if matches!(old.0.try_wait(), Ok(Some(_))) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the old process exits");
    assert_eq!(
        get(&client(), &format!("http://{admin}/readyz"), None)
            .await
            .status,
        200
    );
}
