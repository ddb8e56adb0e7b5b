//! Test harness: real demo backends on `127.0.0.1:0`, the real `sticky-proxy` binary as a child
//! process on a loopback port with a generated config, and a real HTTP client.
#![allow(dead_code)]

pub mod admin;
pub mod browser;
pub mod dns_server;
pub mod raw_backend;
pub mod redis_server;
pub mod redis_store;
pub mod redis_topology;
pub mod tls;
pub mod ws;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A demo backend (same answers as `make run`'s) that can be stopped and started again on the
/// same address, counting the requests it served.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestBackend {
    pub async fn start(name: &str) -> TestBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut backend = TestBackend {
            name: name.to_string(),
            addr,
            hits: Arc::new(AtomicUsize::new(0)),
            task: None,
        };
        backend.serve(listener);
        backend
    }

    /// Backends on one port at several loopback addresses (as DNS discovery finds them: one
    /// `port`, an address each): one per `(name, ip)`, all on the port the first one's bind got.
    /// Retries with another port if one of the addresses has it taken.
    pub async fn start_on_one_port(backends: &[(&str, std::net::Ipv4Addr)]) -> Vec<TestBackend> {
        'port: for _ in 0..20 {
            let mut listeners = Vec::new();
            for (i, (_, ip)) in backends.iter().enumerate() {
                let port = listeners.first().map_or(0, |l: &tokio::net::TcpListener| {
                    l.local_addr().map_or(0, |a| a.port())
                });
                match tokio::net::TcpListener::bind((*ip, port)).await {
                    Ok(l) => listeners.push(l),
                    Err(_) if i > 0 => continue 'port,
                    Err(e) => panic!("cannot bind {ip}: {e}"),
                }
            }
            return backends
                .iter()
                .zip(listeners)
                .map(|((name, _), listener)| {
                    let mut backend = TestBackend {
                        name: name.to_string(),
                        addr: listener.local_addr().unwrap(),
                        hits: Arc::new(AtomicUsize::new(0)),
                        task: None,
                    };
                    backend.serve(listener);
                    backend
                })
                .collect();
        }
        panic!("no port free on every address of {backends:?}");
    }

    /// One backend per name, in order.
    pub async fn start_each<const N: usize>(names: [&str; N]) -> [TestBackend; N] {
        let mut started = Vec::with_capacity(N);
        for name in names {
            started.push(TestBackend::start(name).await);
        }
        started
            .try_into()
            .unwrap_or_else(|_| unreachable!("one backend per name"))
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let name: Arc<str> = self.name.clone().into();
        let hits = self.hits.clone();
        let counter = Arc::new(AtomicU64::new(0));
        self.task = Some(tokio::spawn(async move {
            // Connections live in this set, so stopping the backend closes them all.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (name, hits, counter) = (name.clone(), hits.clone(), counter.clone());
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (name, hits, counter) = (name.clone(), hits.clone(), counter.clone());
                        async move {
                            hits.fetch_add(1, Relaxed);
                            Ok::<_, std::convert::Infallible>(
                                sticky_proxy::demo::handle(&name, &counter, req).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }

    /// Stop listening and close every open connection: connects are refused from now on.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listen again on the same address.
    pub async fn restart(&mut self) {
        self.stop().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot re-bind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Relaxed)
    }

    /// `{ name: .., addr: .. }` for a config's backend list.
    pub fn yaml(&self) -> String {
        format!("{{ name: {}, addr: \"{}\" }}", self.name, self.addr)
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A loopback listening socket bound to port 0 by the test and handed to the proxy the way
/// systemd socket activation does (`LISTEN_FDS`): the address is the test's from the start, so
/// no other test can take it between a check and a bind. Whoever holds the `Port` keeps the
/// socket open (as systemd does): connects wait in its queue while no proxy runs.
#[derive(Debug)]
pub struct Port(StdListener);

impl Port {
    pub fn new() -> Port {
        Port(StdListener::bind("127.0.0.1:0").unwrap())
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.local_addr().unwrap()
    }

    pub fn socket(&self) -> &StdListener {
        &self.0
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.addr())
    }
}

/// The Pingora keys every test config starts with.
pub fn pingora_keys(dir: &std::path::Path) -> String {
    format!(
        "version: 1\nthreads: 2\npid_file: {dir}/proxy.pid\nupgrade_sock: {dir}/upgrade.sock\n\
         grace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1\n",
        dir = dir.display()
    )
}

/// The running proxy binary.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    /// Where `{admin}` in the config pointed (`127.0.0.1:0` when the config had none).
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// The listening sockets handed to the process, kept open by the test as systemd would.
    sockets: Vec<Port>,
}

impl Proxy {
    /// Start the proxy with this `sticky:` section; `{listen}` in it is replaced by the proxy's
    /// address (and `{admin}` by an admin address). Waits until the proxy answers.
    pub async fn start(sticky_section: &str) -> Proxy {
        Self::start_on(sticky_section, Port::new()).await
    }

    /// Like [`Proxy::start`] on a given socket (a restart on the address of a stopped proxy:
    /// [`Proxy::release_sockets`]).
    pub async fn start_on(sticky_section: &str, listen: Port) -> Proxy {
        Self::start_bin(
            std::path::Path::new(env!("CARGO_BIN_EXE_sticky-proxy")),
            sticky_section,
            listen,
        )
        .await
    }

    /// Like [`Proxy::start_on`] with another binary built on the library (an example).
    pub async fn start_bin(binary: &std::path::Path, sticky_section: &str, listen: Port) -> Proxy {
        let listen_addr = listen.to_string();
        let mut sockets = vec![listen];
        let admin = sticky_section.contains("{admin}").then(Port::new);
        let admin_addr = admin
            .as_ref()
            .map_or_else(|| "127.0.0.1:0".to_string(), Port::to_string);
        sockets.extend(admin);
        let mut proxy = Self::start_full_bin(
            binary,
            |dir| {
                format!(
                    "{}{}",
                    pingora_keys(dir),
                    sticky_section
                        .replace("{listen}", &listen_addr)
                        .replace("{admin}", &admin_addr)
                )
            },
            sockets,
        )
        .await;
        proxy.admin = admin_addr.parse().unwrap();
        proxy
    }

    /// Like [`Proxy::start_bin`] with `env` set in the process's environment; `{listen}` may
    /// also appear in `env`'s values.
    pub async fn start_bin_with_env(
        binary: &std::path::Path,
        sticky_section: &str,
        listen: Port,
        env: &[(&str, &str)],
    ) -> Proxy {
        let listen_addr = listen.to_string();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.replace("{listen}", &listen_addr)))
            .collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let section = sticky_section.replace("{listen}", &listen_addr);
        Self::start_full_bin_env(
            binary,
            |dir| format!("{}{section}", pingora_keys(dir)),
            vec![listen],
            &env,
        )
        .await
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Start with a whole YAML file (Pingora keys included), made from the proxy's temp dir.
    /// `sockets` are every listener address the file names (the first is where clients
    /// connect), handed to the process.
    pub async fn start_full(
        make_yaml: impl FnOnce(&std::path::Path) -> String,
        sockets: Vec<Port>,
    ) -> Proxy {
        Self::start_full_bin(
            std::path::Path::new(env!("CARGO_BIN_EXE_sticky-proxy")),
            make_yaml,
            sockets,
        )
        .await
    }

    /// Like [`Proxy::start_full`], with `env` set in the proxy's environment.
    pub async fn start_full_with_env(
        make_yaml: impl FnOnce(&std::path::Path) -> String,
        sockets: Vec<Port>,
        env: &[(&str, &str)],
    ) -> Proxy {
        let binary = std::path::Path::new(env!("CARGO_BIN_EXE_sticky-proxy"));
        Self::start_full_bin_env(binary, make_yaml, sockets, env).await
    }

    async fn start_full_bin(
        binary: &std::path::Path,
        make_yaml: impl FnOnce(&std::path::Path) -> String,
        sockets: Vec<Port>,
    ) -> Proxy {
        Self::start_full_bin_env(binary, make_yaml, sockets, &[]).await
    }

    async fn start_full_bin_env(
        binary: &std::path::Path,
        make_yaml: impl FnOnce(&std::path::Path) -> String,
        sockets: Vec<Port>,
        env: &[(&str, &str)],
    ) -> Proxy {
        let fds: Vec<&StdListener> = sockets.iter().map(Port::socket).collect();
        let listen = sockets[0].to_string();
        let wrap = |mut command: Command| {
            command.envs(env.iter().copied());
            socket_activated(command, &fds)
        };
        let mut proxy = Self::spawn(binary, make_yaml, &listen, wrap);
        drop(fds);
        proxy.sockets = sockets;
        proxy.wait_ready().await;
        proxy
    }

    /// Start the proxy on `socket`, which the caller keeps (as systemd does across restarts).
    pub async fn start_activated(
        make_yaml: impl FnOnce(&std::path::Path) -> String,
        socket: &StdListener,
    ) -> Proxy {
        let listen = socket.local_addr().unwrap().to_string();
        let mut proxy = Self::spawn(
            std::path::Path::new(env!("CARGO_BIN_EXE_sticky-proxy")),
            make_yaml,
            &listen,
            |command| socket_activated(command, &[socket]),
        );
        proxy.wait_ready().await;
        proxy
    }

    /// Start a proxy that binds `listen` itself (no socket handed over): only for the test of a
    /// plain restart, where the gap between two processes is what is measured.
    pub async fn start_self_bound(
        make_yaml: impl FnOnce(&std::path::Path) -> String,
        listen: SocketAddr,
    ) -> Proxy {
        let binary = std::path::Path::new(env!("CARGO_BIN_EXE_sticky-proxy"));
        let mut proxy = Self::spawn(binary, make_yaml, &listen.to_string(), |command| command);
        proxy.wait_ready().await;
        proxy
    }

    /// The listening sockets of a stopped proxy, to start the next one on the same addresses.
    pub fn release_sockets(&mut self) -> Vec<Port> {
        std::mem::take(&mut self.sockets)
    }

    /// Write the config and start `binary -c <config>` (through `wrap`, which may replace the
    /// command), logging to the proxy's temp dir. Not yet waited for.
    fn spawn(
        binary: &std::path::Path,
        make_yaml: impl FnOnce(&std::path::Path) -> String,
        listen: &str,
        wrap: impl FnOnce(Command) -> Command,
    ) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let yaml = make_yaml(dir.path());
        let config_path = dir.path().join("proxy.yaml");
        std::fs::write(&config_path, yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
        let mut command = Command::new(binary);
        command.arg("-c").arg(&config_path).env(
            "RUST_LOG",
            std::env::var("STICKY_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let child = wrap(command)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Proxy {
            child,
            addr: listen.parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
            dir,
            config_path,
            sockets: Vec::new(),
        }
    }

    /// Wait until the process serves its first listener. Connects to a handed-over socket
    /// succeed before the process runs (the kernel queues them), so readiness is an answer:
    /// a request line Pingora itself refuses (`400`, before any hook: no backend sees it, no
    /// decision is logged), or the connection closed by a TLS listener.
    async fn wait_ready(&mut self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("proxy exited early ({status}):\n{}", self.log());
            }
            if let Ok(mut stream) = tokio::net::TcpStream::connect(self.addr).await {
                let _ = stream
                    .write_all(b"GET / HTTP/1.1\r\nnot a header\r\n\r\n")
                    .await;
                let mut byte = [0u8; 1];
                let answer =
                    tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte));
                if answer.await.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "proxy not ready:\n{}",
                self.log()
            );
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// What the proxy wrote to stderr so far (its log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// The proxy process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The access-log outcome of the last request for `path` (`outcome=...`).
    pub fn outcome_of(&self, path: &str) -> Option<String> {
        let needle = format!(" {path} ");
        self.log()
            .lines()
            .rev()
            .find(|l| l.contains("sticky_proxy::access") && l.contains(&needle))
            .and_then(|l| l.split("outcome=").nth(1))
            .map(|o| o.split_whitespace().next().unwrap_or("").to_string())
    }

    /// A plain stop (not the graceful upgrade): SIGTERM, then wait up to `timeout` for the
    /// process to exit. Its exit status, or `None` if it had to be killed.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.stop();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The path of an example program built beside the tests (`cargo test` builds examples).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "example {name} not built at {}",
        path.display()
    );
    path
}

/// An HTTP client without a cookie jar, redirects or proxies: every cookie is explicit.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A finished response, reduced to what tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The backend that answered, from the demo body `hello <name>`.
    pub fn backend(&self) -> &str {
        self.body.trim().strip_prefix("hello ").unwrap_or("")
    }

    /// Every `Set-Cookie` line.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The value the proxy set for cookie `name`, if any.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|line| {
            let pair = line.split(';').next()?;
            let (n, v) = pair.split_once('=')?;
            (n.trim() == name).then(|| v.trim().to_string())
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

/// Request `path` without a cookie until `want` answers; return the `ARRAffinity` value it got.
pub async fn cookie_for(client: &reqwest::Client, proxy: &Proxy, path: &str, want: &str) -> String {
    for _ in 0..10 {
        let reply = get(client, &proxy.url(path), None).await;
        if reply.backend() == want {
            return reply.cookie("ARRAffinity").unwrap();
        }
    }
    panic!("never balanced to {want}");
}

/// Run the `sticky-proxy` binary with `args` (log off); exit code, stdout, stderr.
pub fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sticky-proxy"));
    command
        .args(args)
        .env("RUST_LOG", "off")
        .env_remove("STICKY_TEST_UNSET_SECRET");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `command` as systemd socket activation runs it: `sockets` (which the caller keeps open, as
/// systemd does) become the child's descriptors 3, 4, …, with `LISTEN_FDS` their count and
/// `LISTEN_PID` the child's pid (through `/bin/sh`: `$$` is the shell's pid, which `exec` keeps).
pub fn socket_activated(command: Command, sockets: &[&StdListener]) -> Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    const MAX_PASSED: usize = 16;
    assert!(sockets.len() <= MAX_PASSED);
    let fds: Vec<i32> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let mut shell = Command::new("/bin/sh");
    shell
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(command.get_program())
        .args(command.get_args())
        .env("LISTEN_FDS", fds.len().to_string());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    // SAFETY: only async-signal-safe calls (fcntl, dup2, close) between fork and exec. Each
    // socket is first copied above every target number, so that moving one into place can
    // never overwrite another that is still to be moved.
    unsafe {
        shell.pre_exec(move || {
            let mut copies = [0i32; MAX_PASSED];
            for (i, fd) in fds.iter().enumerate() {
                copies[i] = libc::fcntl(*fd, libc::F_DUPFD, 100);
                if copies[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, copy) in copies[..fds.len()].iter().enumerate() {
                if libc::dup2(*copy, 3 + i as i32) < 0 || libc::close(*copy) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    shell
}

/// GET `url` with an optional `Cookie` header.
pub async fn get(client: &reqwest::Client, url: &str, cookie: Option<&str>) -> Reply {
    let mut request = client.get(url);
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    into_reply(request.send().await.unwrap()).await
}

pub async fn into_reply(response: reqwest::Response) -> Reply {
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// Send raw bytes as one HTTP/1.1 request on a fresh connection; return the raw response text
/// (read until the response is complete, the server closes, or 3 s pass). Async, so that the
/// test's own backends keep running on the same runtime.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut out = Vec::new();
    if stream.write_all(request).await.is_err() {
        // The proxy may refuse a huge request before reading all of it; read its answer.
    }
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if response_complete(&out) {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response with a `Content-Length` body fully read.
fn response_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let head = text[..end].to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => bytes.len() >= end + 4 + n,
        None => false,
    }
}

/// The status code of a raw response (0 if there is none).
pub fn raw_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A proxy process a test started itself (for `-u` upgrades and the like), killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `command` with `RUST_LOG=info`, its log (stderr) written to `log`.
pub fn spawn_logged(mut command: Command, log: &std::path::Path) -> Process {
    Process(
        command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// Poll `check` until it is true or `timeout` passes; returns whether it became true.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `sticky:` section with one pool of these backends and cookie affinity (keyed, test secret),
/// plus `extra_pool` lines appended to the pool (indented 6 spaces).
pub fn one_pool(backends: &[&TestBackend], extra_pool: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| b.yaml()).collect();
    format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  hide_headers: [X-ServerName, X-Powered-By]\n  pools:\n    - name: web\n      backends: [{}]\n{}",
        list.join(", "),
        extra_pool
    )
}

/// The affinity block most tests use (keyed format with a fixed secret).
pub const KEYED_AFFINITY: &str =
    "      affinity:\n        cookie:\n          secret: test-secret-0123456789abcdef\n";
