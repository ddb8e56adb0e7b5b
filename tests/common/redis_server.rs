//! A real `redis-server` on a free loopback port for the shared-session-store tests: started
//! with persistence off, killed on drop, restartable on the same port. Also as a replica, a
//! cluster node (extra arguments) or a sentinel (`redis-server <conf> --sentinel`):
//! `redis_topology.rs` builds Sentinel and Cluster set-ups from these.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    binary: PathBuf,
    dir: tempfile::TempDir,
    /// TLS only (`--tls-port`): the server's certificate.
    tls: Option<super::tls::TestCert>,
    /// More `redis-server` arguments (`--replicaof …`, `--cluster-enabled yes`, …).
    extra: Vec<String>,
    /// A sentinel: these lines of its configuration file (`sentinel monitor …`), written
    /// with the port before each launch (a sentinel rewrites its file).
    sentinel: Option<String>,
    /// `--requirepass` (or a sentinel's `requirepass` line): the tests' own connections log in.
    password: Option<String>,
}

/// A loopback port in 10000–19999 that was free a moment ago. Redis cannot take a handed-over
/// socket, so another process may take the port before the server binds it: the server then
/// exits and [`RedisServer::start`] tries another (it never talks to a server not its own).
fn redis_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    loop {
        let port = rng.gen_range(10_000..20_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `redis-server` on PATH, else `/usr/bin/redis-server`.
pub fn redis_server_binary() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-server"))
        .chain(std::iter::once(PathBuf::from("/usr/bin/redis-server")))
        .find(|p| p.is_file())
}

impl RedisServer {
    /// Start one. A missing `redis-server` fails the test (`make test` installs it through
    /// `scripts/setup.sh`): a test whose server is missing never passes.
    pub async fn start() -> RedisServer {
        Self::start_with(false, Vec::new(), None).await
    }

    /// Like [`RedisServer::start`] with more `redis-server` arguments.
    pub async fn start_with_args(extra: &[&str]) -> RedisServer {
        let extra = extra.iter().map(|a| a.to_string()).collect();
        Self::start_with(false, extra, None).await
    }

    /// A sentinel (`redis-server --sentinel`) with these configuration lines.
    pub async fn start_sentinel(lines: &str) -> RedisServer {
        Self::start_with(false, Vec::new(), Some(lines.to_string())).await
    }

    /// Like [`RedisServer::start`], speaking only TLS, with a certificate for `127.0.0.1`
    /// generated now ([`RedisServer::tls_cert`]).
    pub async fn start_tls() -> RedisServer {
        Self::start_with(true, Vec::new(), None).await
    }

    /// The TLS server's certificate (its own CA: trust it to connect).
    pub fn tls_cert(&self) -> Option<&super::tls::TestCert> {
        self.tls.as_ref()
    }

    async fn start_with(tls: bool, extra: Vec<String>, sentinel: Option<String>) -> RedisServer {
        let binary = redis_server_binary().expect(
            "redis-server not found on PATH or at /usr/bin/redis-server: \
             scripts/setup.sh (run by make test) installs the Debian package redis-server",
        );
        let password = extra
            .windows(2)
            .find(|w| w[0] == "--requirepass")
            .map(|w| w[1].clone())
            .or_else(|| {
                let lines = sentinel.as_deref().unwrap_or_default();
                lines
                    .lines()
                    .find_map(|l| l.strip_prefix("requirepass "))
                    .map(str::to_string)
            });
        let dir = tempfile::tempdir().unwrap();
        let tls = tls.then(|| super::tls::TestCert::generate(dir.path(), "redis", &["127.0.0.1"]));
        let mut server = RedisServer {
            child: None,
            port: 0,
            binary,
            dir,
            tls,
            extra,
            sentinel,
            password,
        };
        // Another test may take the same free port before this server binds it: then the
        // server exits, and another port is tried.
        for _ in 0..5 {
            server.port = redis_port();
            if server.launch().await {
                return server;
            }
        }
        panic!("redis-server could not bind a port");
    }

    /// Start on `self.port`; `false` if the server exited (the port was taken).
    async fn launch(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let mut command = Command::new(&self.binary);
        if let Some(lines) = &self.sentinel {
            let conf = self.dir.path().join("sentinel.conf");
            let text = format!(
                "port {}\nbind 127.0.0.1\ndir {}\n{lines}\n",
                self.port,
                self.dir.path().display()
            );
            std::fs::write(&conf, text).unwrap();
            command.arg(&conf).arg("--sentinel");
        } else {
            command.args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]);
            command.args(&self.extra);
        }
        match &self.tls {
            None if self.sentinel.is_some() => &mut command,
            None => command.arg("--port").arg(self.port.to_string()),
            Some(cert) => command
                .args(["--port", "0", "--tls-auth-clients", "no"])
                .arg("--tls-port")
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(&cert.cert_file)
                .arg("--tls-key-file")
                .arg(&cert.key_file)
                .arg("--tls-ca-cert-file")
                .arg(&cert.cert_file),
        };
        let child = command
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().unwrap().is_some());
            if exited {
                self.child = None;
                return false;
            }
            if let Ok(mut c) = self.try_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    // Ours, not another test's server on the same port.
                    let ours = self
                        .child
                        .as_mut()
                        .is_some_and(|c| c.try_wait().unwrap().is_none());
                    if ours {
                        return true;
                    }
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client connection, or the error (the server is gone).
    pub async fn try_connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let client = match &self.tls {
            None => {
                let login = self
                    .password
                    .as_ref()
                    .map(|p| format!(":{p}@"))
                    .unwrap_or_default();
                redis::Client::open(format!("redis://{login}127.0.0.1:{}/", self.port))?
            }
            Some(cert) => {
                pingora_rustls::install_default_crypto_provider();
                redis::Client::build_with_tls(
                    format!("rediss://127.0.0.1:{}/", self.port),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(cert.cert_pem.clone().into_bytes()),
                    },
                )?
            }
        };
        client.get_multiplexed_async_connection().await
    }

    /// A client connection (for checks with `EXISTS`, `TTL`, `SET`).
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.try_connection().await.unwrap()
    }

    /// What the server logged (its standard output).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether this server was started and not killed.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: gone at once, data lost (persistence is off).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP / SIGCONT: a Redis that accepts nothing and answers nothing (a hung server).
    pub fn pause(&self, paused: bool) {
        if let Some(child) = &self.child {
            let signal = if paused { "-STOP" } else { "-CONT" };
            let status = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    /// Start again, empty, on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(self.launch().await, "port {} taken meanwhile", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
