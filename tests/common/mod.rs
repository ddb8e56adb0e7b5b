//! Test harness: real demo backends on `127.0.0.1:0`, the real `sticky-proxy` binary as a child
//! process on a loopback port with a generated config, and a real HTTP client.
#![allow(dead_code)]

pub mod raw_backend;
pub mod redis_server;
pub mod tls;

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
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

/// A free loopback port for a proxy listener, chosen below Linux's ephemeral range
/// (32768–60999) so that backends bound to port 0 can never take it between our check and the
/// proxy's bind. Never the same port twice in one test process: a listener and an admin
/// address picked one after the other were once the same port (the first was free again when
/// the second was checked), and the config was refused.
pub fn free_port() -> u16 {
    use rand::Rng;
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut rng = rand::thread_rng();
    loop {
        let port = rng.gen_range(20_000..32_000);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) && StdListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
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
    /// Where `{admin}` in the config pointed (a free port, used or not).
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Proxy {
    /// Start the proxy with this `sticky:` section; `{listen}` in it is replaced by the proxy's
    /// address. Waits until the proxy accepts connections.
    pub async fn start(sticky_section: &str) -> Proxy {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        Self::start_on(sticky_section, &listen).await
    }

    /// Like [`Proxy::start`] on a given address.
    pub async fn start_on(sticky_section: &str, listen: &str) -> Proxy {
        Self::start_bin(
            std::path::Path::new(env!("CARGO_BIN_EXE_sticky-proxy")),
            sticky_section,
            listen,
        )
        .await
    }

    /// Like [`Proxy::start_on`] with another binary built on the library (an example).
    pub async fn start_bin(binary: &std::path::Path, sticky_section: &str, listen: &str) -> Proxy {
        let admin = format!("127.0.0.1:{}", free_port());
        let mut proxy = Self::start_full_bin(
            binary,
            |dir| {
                format!(
                    "{}{}",
                    pingora_keys(dir),
                    sticky_section
                        .replace("{listen}", listen)
                        .replace("{admin}", &admin)
                )
            },
            listen,
        )
        .await;
        proxy.admin = admin.parse().unwrap();
        if sticky_section.contains("{admin}") {
            // Each listener is bound by its own service: the admin one may come up later.
            let deadline = Instant::now() + Duration::from_secs(20);
            while TcpStream::connect(proxy.admin).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "admin listener not up:\n{}",
                    proxy.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        proxy
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Start with a whole YAML file (Pingora keys included), made from the proxy's temp dir;
    /// `listen` is where it will accept connections.
    pub async fn start_full(
        make_yaml: impl FnOnce(&std::path::Path) -> String,
        listen: &str,
    ) -> Proxy {
        Self::start_full_bin(
            std::path::Path::new(env!("CARGO_BIN_EXE_sticky-proxy")),
            make_yaml,
            listen,
        )
        .await
    }

    async fn start_full_bin(
        binary: &std::path::Path,
        make_yaml: impl FnOnce(&std::path::Path) -> String,
        listen: &str,
    ) -> Proxy {
        let mut proxy = Self::spawn(binary, make_yaml, listen, |command| command);
        proxy.wait_ready().await;
        proxy
    }

    /// Start the proxy the way systemd socket activation does: `socket` (bound by the caller,
    /// who keeps it, as systemd does) becomes descriptor 3 of the child, with `LISTEN_FDS=1`
    /// and `LISTEN_PID` set to the child's pid. Ready once a request through the socket is
    /// answered (connects succeed even before the proxy runs: the socket queues them).
    pub async fn start_activated(
        make_yaml: impl FnOnce(&std::path::Path) -> String,
        socket: &StdListener,
    ) -> Proxy {
        let listen = socket.local_addr().unwrap().to_string();
        let mut proxy = Self::spawn(
            std::path::Path::new(env!("CARGO_BIN_EXE_sticky-proxy")),
            make_yaml,
            &listen,
            |command| socket_activated(command, socket),
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let probe = client.get(proxy.url("/")).send().await;
        if let Some(status) = proxy.child.try_wait().unwrap() {
            panic!("proxy exited early ({status}):\n{}", proxy.log());
        }
        assert!(
            probe.is_ok(),
            "no answer through the socket:\n{}",
            proxy.log()
        );
        proxy
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
        }
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("proxy exited early ({status}):\n{}", self.log());
            }
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "proxy not ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
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

/// `command` as systemd socket activation runs it: `socket` (which the caller keeps open, as
/// systemd does) becomes the child's descriptor 3, with `LISTEN_FDS=1` and `LISTEN_PID` the
/// child's pid (through `/bin/sh`: `$$` is the shell's pid, which `exec` keeps).
pub fn socket_activated(command: Command, socket: &StdListener) -> Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = socket.as_raw_fd();
    let mut shell = Command::new("/bin/sh");
    shell
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(command.get_program())
        .args(command.get_args())
        .env("LISTEN_FDS", "1");
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        shell.pre_exec(move || {
            let moved = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if moved < 0 {
                return Err(std::io::Error::last_os_error());
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
