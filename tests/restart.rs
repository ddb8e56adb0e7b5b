//! Restarting the proxy under load — stop the process, start a new one on the same config, as
//! `systemctl restart` does — with 60 busy sessions holding affinity cookies.
//!
//! A plain restart refuses connections in the gap between the two processes. With the listening
//! socket held by a service manager (systemd socket activation: the proxy takes it from
//! `LISTEN_FDS`) and `sticky.grace_ms`, nothing is refused or cut: the socket queues what arrives
//! between the processes, and the grace tells kept-alive clients to reconnect before the old
//! process drops idle connections. Either way, every cookie pins to its backend after.
//!
//! `cargo nextest run --test restart --no-capture` prints what each run saw.

mod common;
use common::*;
use futures_util::FutureExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The Pingora keys of the `conf/` examples (a 1 s grace period), unlike the harness's 0 s.
fn pingora_keys_with_grace(dir: &std::path::Path) -> String {
    pingora_keys(dir).replace("grace_period_seconds: 0", "grace_period_seconds: 1")
}

/// What the busy sessions saw during a restart.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    ok_after_restart: AtomicUsize,
    refused: AtomicUsize,
    cut: AtomicUsize,
    misrouted: AtomicUsize,
    http_errors: AtomicUsize,
}

/// Sessions (home backend, cookie) each sending a request every 10 ms on a kept-alive client
/// until stopped, checking every answer comes from its home backend with no new cookie.
struct Load {
    /// (home backend, `Cookie` header) of each session.
    sessions: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
    restarted: Arc<AtomicBool>,
    tally: Arc<Tally>,
    served_before: Arc<Mutex<Vec<bool>>>,
    served_after: Arc<Mutex<Vec<bool>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// 60 sessions opened through `url`, then kept busy.
    async fn start(url: &str) -> Load {
        let client = client();
        let mut sessions = Vec::new();
        for _ in 0..60 {
            let reply = get(&client, url, None).await;
            sessions.push((
                reply.backend().to_string(),
                format!("ARRAffinity={}", reply.cookie("ARRAffinity").unwrap()),
            ));
        }
        let load = Load {
            sessions: sessions.clone(),
            stop: Arc::default(),
            restarted: Arc::default(),
            tally: Arc::default(),
            served_before: Arc::new(Mutex::new(vec![false; sessions.len()])),
            served_after: Arc::new(Mutex::new(vec![false; sessions.len()])),
            workers: Vec::new(),
        };
        let workers = sessions
            .into_iter()
            .enumerate()
            .map(|(i, (home, cookie))| {
                let (client, url) = (client.clone(), url.to_string());
                let (stop, restarted, tally, served_before, served_after) = (
                    load.stop.clone(),
                    load.restarted.clone(),
                    load.tally.clone(),
                    load.served_before.clone(),
                    load.served_after.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Relaxed) {
                        let after = restarted.load(Relaxed);
                        let result = client.get(&url).header("Cookie", &cookie).send().await;
                        let answered_home = match result {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                let new_cookie = response.headers().contains_key("set-cookie");
                                match response.text().await {
                                    Ok(body) if status == 200 => {
                                        let home_answered =
                                            body.trim() == format!("hello {home}") && !new_cookie;
                                        if !home_answered {
                                            eprintln!("session of {home} answered by {body:?}");
                                            tally.misrouted.fetch_add(1, Relaxed);
                                        }
                                        home_answered
                                    }
                                    Ok(body) => {
                                        eprintln!("HTTP {status}: {body:?}");
                                        tally.http_errors.fetch_add(1, Relaxed);
                                        false
                                    }
                                    Err(e) => {
                                        eprintln!("cut while reading the body: {e:?}");
                                        tally.cut.fetch_add(1, Relaxed);
                                        false
                                    }
                                }
                            }
                            Err(e) if e.is_connect() => {
                                tally.refused.fetch_add(1, Relaxed);
                                false
                            }
                            Err(e) => {
                                eprintln!("cut: {e:?}");
                                tally.cut.fetch_add(1, Relaxed);
                                false
                            }
                        };
                        if answered_home {
                            tally.ok.fetch_add(1, Relaxed);
                            if after {
                                tally.ok_after_restart.fetch_add(1, Relaxed);
                                served_after.lock().unwrap()[i] = true;
                            } else {
                                served_before.lock().unwrap()[i] = true;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        Load { workers, ..load }
    }

    /// Wait until every session has been answered by its home backend (before the restart):
    /// the load runs on the old process. A hang guard, not a speed check.
    async fn wait_every_session_served(&self) {
        let all = || self.served_before.lock().unwrap().iter().all(|s| *s);
        let served = eventually(Duration::from_secs(30), || {
            let done = all();
            async move { done }
        })
        .await;
        assert!(
            served,
            "every session answered by its home before the restart"
        );
    }

    /// Send one request for each of the first `n` sessions on a fresh connection, now (between
    /// the two processes); the tasks answer with whether their home backend answered.
    fn requests_in_the_gap(&self, url: &str, n: usize) -> Vec<tokio::task::JoinHandle<bool>> {
        self.sessions[..n]
            .iter()
            .map(|(home, cookie)| {
                let (url, home, cookie) = (url.to_string(), home.clone(), cookie.clone());
                tokio::spawn(async move {
                    let reply = reqwest::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .unwrap()
                        .get(url)
                        .header("Cookie", cookie)
                        .send()
                        .await;
                    match reply {
                        Ok(r) => r
                            .text()
                            .await
                            .is_ok_and(|b| b.trim() == format!("hello {home}")),
                        Err(e) => {
                            eprintln!("a request sent in the gap: {e:?}");
                            false
                        }
                    }
                })
            })
            .collect()
    }

    /// Mark the new process as up, let the load run on it for 2 s (longer, up to 15 s, until
    /// every session has been answered after the restart), stop, and print the tally.
    ///
    /// Why longer: a session whose request was sent around the restart and got no answer waits
    /// for the client's 10 s timeout before trying again (counted as cut). Seen once in 8
    /// full-suite runs, never with this file alone; where that request went is not known.
    async fn finish(self, what: &str) -> Arc<Tally> {
        self.restarted.store(true, Relaxed);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let patience = Instant::now() + Duration::from_secs(13);
        while !self.served_after.lock().unwrap().iter().all(|s| *s) && Instant::now() < patience {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop.store(true, Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        let t = &self.tally;
        println!(
            "{what}: {} ok in all, {} after the restart; {} connects refused, {} requests cut, \
             {} HTTP errors, {} misrouted",
            t.ok.load(Relaxed),
            t.ok_after_restart.load(Relaxed),
            t.refused.load(Relaxed),
            t.cut.load(Relaxed),
            t.http_errors.load(Relaxed),
            t.misrouted.load(Relaxed),
        );
        assert_eq!(
            t.misrouted.load(Relaxed),
            0,
            "every cookie pins to the same backend before and after, with no new cookie"
        );
        assert_eq!(
            t.http_errors.load(Relaxed),
            0,
            "no error answer from either process"
        );
        assert!(
            self.served_after.lock().unwrap().iter().all(|s| *s),
            "every session is served by its own backend after the restart"
        );
        self.tally
    }
}

async fn three_backends() -> [TestBackend; 3] {
    TestBackend::start_each(["iis1", "iis2", "iis3"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_restart_under_load_refuses_connections_in_the_gap_and_every_earlier_cookie_pins_to_the_same_backend_after(
) {
    let b = three_backends().await;
    // The first process gets the socket and the test lets go of its copy: the process is
    // then the socket's only holder, as if it had bound it itself, and its listening socket
    // closes with it. The new process binds the address itself; in the gap the address is free
    // and another process could take it (an outgoing connection's ephemeral port): a small
    // window this one test accepts, since the gap is what it measures.
    let port = Port::new();
    let listen = port.addr();
    let section =
        one_pool(&[&b[0], &b[1], &b[2]], KEYED_AFFINITY).replace("{listen}", &listen.to_string());
    let yaml = |dir: &std::path::Path| format!("{}{section}", pingora_keys_with_grace(dir));
    let mut old = Proxy::start_full(yaml, vec![port]).await;
    drop(old.release_sockets());
    let load = Load::start(&old.url("/")).await;

    load.wait_every_session_served().await;
    let stopping = Instant::now();
    let status = old.terminate(Duration::from_secs(10)).await;
    assert!(status.is_some(), "SIGTERM stops the proxy:\n{}", old.log());
    let stopped_after = stopping.elapsed();
    // Between the processes nobody listens: a connect is refused.
    let refused = std::net::TcpStream::connect(listen)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused);
    assert!(refused, "a connect between the two processes is refused");
    let _new = Proxy::start_self_bound(yaml, listen).await;
    println!(
        "plain restart: SIGTERM → exit {stopped_after:?}, SIGTERM → new process accepting {:?}",
        stopping.elapsed()
    );
    let t = load.finish("plain restart").await;
    // Only a request sent on a kept-alive connection just as the old process closed it is cut
    // (reset, or closed before the answer): at most about one per connection.
    assert!(
        t.cut.load(Relaxed) <= 60,
        "{} requests cut",
        t.cut.load(Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_socket_held_by_the_service_manager_and_a_grace_loses_no_request_and_every_cookie_pins_after(
) {
    let b = three_backends().await;
    // Bound and kept by the test, as systemd keeps a `.socket` unit's socket.
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = socket.local_addr().unwrap().to_string();
    let section = one_pool(&[&b[0], &b[1], &b[2]], KEYED_AFFINITY)
        .replace("{listen}", &listen)
        .replace("sticky:\n", "sticky:\n  grace_ms: 1000\n");
    assert!(section.contains("grace_ms: 1000"), "{section}");
    let yaml = |dir: &std::path::Path| format!("{}{section}", pingora_keys_with_grace(dir));
    let mut old = Proxy::start_activated(yaml, &socket).await;
    assert!(
        old.log().contains(&format!(
            "listener {listen}: using the socket passed as descriptor 3"
        )),
        "{}",
        old.log()
    );
    // The proxy set `defer_accept` (on by default) on the very socket the test holds.
    assert!(defer_accept_on(&socket));
    let load = Load::start(&old.url("/")).await;

    load.wait_every_session_served().await;
    let stopping = Instant::now();
    let status = old.terminate(Duration::from_secs(10)).await;
    assert!(status.is_some(), "SIGTERM stops the proxy:\n{}", old.log());
    assert!(
        old.log().contains("SIGTERM: still accepting and serving"),
        "{}",
        old.log()
    );
    let stopped_after = stopping.elapsed();
    // Requests sent while no process runs wait in the held socket for the new one.
    let in_the_gap = load.requests_in_the_gap(&old.url("/"), 20);
    let _new = Proxy::start_activated(yaml, &socket).await;
    println!(
        "socket-activated restart: SIGTERM → exit {stopped_after:?} (grace 1 s + Pingora's 1 s), \
         SIGTERM → new process answering {:?}",
        stopping.elapsed()
    );
    let t = load.finish("socket-activated restart").await;
    assert_eq!(t.refused.load(Relaxed), 0, "no connect refused");
    assert_eq!(t.cut.load(Relaxed), 0, "no request cut");
    for request in in_the_gap {
        assert!(
            request.await.unwrap(),
            "a request sent between the processes is answered by its home backend"
        );
    }
}

#[test]
fn a_passed_socket_that_no_listener_uses_stops_the_start_with_a_message_naming_its_address() {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stray = socket.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.yaml");
    // Held, not passed: the start fails on the stray socket before it would bind this one.
    let listen = Port::new();
    std::fs::write(
        &config,
        format!(
            "{}sticky:\n  listeners: [{{ addr: \"{listen}\" }}]\n  pools:\n    - name: web\n      backends: [{{ name: iis1, addr: \"127.0.0.1:9\" }}]\n",
            pingora_keys(dir.path())
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sticky-proxy"));
    command.arg("-c").arg(&config).env("RUST_LOG", "off");
    let out = socket_activated(command, &[&socket]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("inherited socket {stray}")) && stderr.contains("no listener"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_grace_after_sigterm_the_proxy_still_serves_but_closes_connections_and_readyz_fails(
) {
    let b = TestBackend::start("iis1").await;
    let section = one_pool(&[&b], "").replace(
        "sticky:\n",
        "sticky:\n  grace_ms: 3000\n  admin: { addr: \"{admin}\" }\n",
    );
    let mut proxy = Proxy::start(&section).await;
    let client = client();
    let readyz = |client: reqwest::Client, url: String| async move {
        client.get(url).send().await.unwrap().status().as_u16()
    };
    assert_eq!(
        readyz(client.clone(), proxy.admin_url("/readyz")).await,
        200
    );
    let before = client.get(proxy.url("/")).send().await.unwrap();
    assert_ne!(
        before.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );

    let sent = std::process::Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // Once the SIGTERM is handled, readiness fails (polled: no assumption on how soon).
    let fresh = reqwest::Client::builder().build().unwrap();
    let not_ready = eventually(Duration::from_secs(10), || {
        readyz(fresh.clone(), proxy.admin_url("/readyz")).map(|status| status == 503)
    })
    .await;
    assert!(not_ready, "readyz fails during the grace:\n{}", proxy.log());
    // A new connection is still accepted and served, told not to come back on it.
    let during = fresh.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(during.status().as_u16(), 200);
    assert_eq!(
        during.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    assert_eq!(during.text().await.unwrap().trim(), "hello iis1");
    assert!(
        proxy.log().contains("sticky.grace_ms = 3000 ms"),
        "{}",
        proxy.log()
    );

    let status = proxy.terminate(Duration::from_secs(15)).await;
    assert!(status.is_some(), "stops after the grace:\n{}", proxy.log());
}

/// Whether the proxy left `TCP_DEFER_ACCEPT` on the socket the test holds (the same socket).
fn defer_accept_on(socket: &std::net::TcpListener) -> bool {
    use std::os::fd::AsRawFd;
    sticky_proxy::sockets::defer_accept(socket.as_raw_fd()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defer_accept_false_leaves_the_listening_socket_without_tcp_defer_accept() {
    let b = TestBackend::start("iis1").await;
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = socket.local_addr().unwrap().to_string();
    let section = one_pool(&[&b], "")
        .replace(
            "- addr: \"{listen}\"",
            "- defer_accept: false\n      addr: \"{listen}\"",
        )
        .replace("{listen}", &listen);
    assert!(section.contains("defer_accept: false"), "{section}");
    let _proxy =
        Proxy::start_activated(|dir| format!("{}{section}", pingora_keys(dir)), &socket).await;
    assert!(!defer_accept_on(&socket));
}
