//! A load client for many kept-alive HTTP/1.1 connections (benches/load/edge.sh and
//! idle-memory.sh): what wrk cannot do — hold thousands of connections idle, and send to
//! thousands of connections at a moderate, fixed rate while measuring latency from the time each
//! request was due (so a slow answer does not hide the requests queued behind it).
//!
//! ```text
//! many_connections ADDR CONNECTIONS [RATE DURATION_S] [--pids "PID..."] [--header "Name: v"]...
//!                  [--tls CA.pem] [--hold SECONDS] [--close-for SECONDS]
//! ```
//!
//! `--tls CA.pem`: HTTPS (rustls, server name `localhost`, verified against CA.pem); every
//! connection makes a full handshake (a fresh session cache each: no resumption).
//!
//! `--close-for SECONDS`: instead of the steps below, CONNECTIONS loops each open a connection,
//! send one request (add `--header "Connection: close"`), read the answer and drop the
//! connection, again and again for SECONDS: new connections (and full TLS handshakes) per
//! second, their latency (connect to the end of the answer) and the proxy's CPU per request.
//!
//! 1. Reads the resident memory (VmRSS, summed over each PID's process tree) before.
//! 2. Opens CONNECTIONS connections to ADDR (at most 256 opening at once), each sending one
//!    `GET /` and reading the whole answer (`Content-Length` bodies only), then keeps them open.
//! 3. Two seconds later reads the resident memory again: the growth divided by the
//!    connections is the cost of an idle kept-alive connection. With `--hold`, then keeps them
//!    idle that many seconds more (for a heap profiler's snapshot, `idle-massif.sh`).
//! 4. With RATE > 0: for DURATION_S seconds every connection sends one request each
//!    CONNECTIONS / RATE seconds, the connections spread evenly over that period; prints the
//!    latency distribution, the proxy's CPU time per request over that phase (user + system,
//!    every process of each PID's tree) and the resident memory at the end.
//! 5. Closes everything and reads the resident memory a last time.
//!
//! Output: `key=value` lines (`benches/load/benchlib.py` reads them). Loopback benchmarks only;
//! every phase is bounded in time (opening: 120 s; each answer: 10 s).

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A plain or TLS connection.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Conn = Box<dyn Io>;

const OPEN_AT_ONCE: usize = 256;
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

struct Args {
    addr: String,
    connections: usize,
    rate: f64,
    duration: Duration,
    pids: Vec<u32>,
    request: Vec<u8>,
    tls: Option<Arc<pingora_rustls::RootCertStore>>,
    hold: Duration,
    close_for: Duration,
}

fn usage() -> ! {
    eprintln!(
        "usage: many_connections ADDR CONNECTIONS [RATE DURATION_S] [--pids \"PID...\"] \
         [--header \"Name: value\"]... [--tls CA.pem] [--hold SECONDS] [--close-for SECONDS]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut positional = Vec::new();
    let mut pids = Vec::new();
    let mut headers = String::new();
    let mut tls = None;
    let mut hold = Duration::ZERO;
    let mut close_for = Duration::ZERO;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--pids" => {
                let list = it.next().unwrap_or_else(|| usage());
                for p in list.split_whitespace() {
                    pids.push(p.parse().unwrap_or_else(|_| usage()));
                }
            }
            "--header" => {
                headers.push_str(&it.next().unwrap_or_else(|| usage()));
                headers.push_str("\r\n");
            }
            "--tls" => tls = Some(tls_roots(&it.next().unwrap_or_else(|| usage()))),
            "--close-for" => close_for = seconds(it.next()),
            "--hold" => hold = seconds(it.next()),
            _ => positional.push(arg),
        }
    }
    if positional.len() != 2 && positional.len() != 4 {
        usage();
    }
    let addr = positional[0].clone();
    let connections = positional[1].parse().unwrap_or_else(|_| usage());
    let (rate, duration) = if positional.len() == 4 {
        let rate: f64 = positional[2].parse().unwrap_or_else(|_| usage());
        (rate, seconds(Some(positional[3].clone())))
    } else {
        (0.0, Duration::ZERO)
    };
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n").into_bytes();
    Args {
        addr,
        connections,
        rate,
        duration,
        pids,
        request,
        tls,
        hold,
        close_for,
    }
}

/// A duration argument in whole seconds, at most 600 (every phase is bounded).
fn seconds(arg: Option<String>) -> Duration {
    let secs: u64 = arg.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage());
    Duration::from_secs(secs.min(600))
}

fn tls_roots(ca: &str) -> Arc<pingora_rustls::RootCertStore> {
    pingora_rustls::install_default_crypto_provider();
    let mut roots = pingora_rustls::RootCertStore::empty();
    if let Err(e) = pingora_rustls::load_ca_file_into_store(ca, &mut roots) {
        eprintln!("many_connections: {ca}: {e}");
        std::process::exit(2);
    }
    Arc::new(roots)
}

/// A connector with a session cache of its own, used for one connection only: every
/// handshake is a full one (no session resumption), whatever the server offers.
fn fresh_connector(roots: &pingora_rustls::RootCertStore) -> pingora_rustls::TlsConnector {
    let config = pingora_rustls::ClientConfig::builder()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    pingora_rustls::TlsConnector::from(Arc::new(config))
}

/// The process and every descendant of each root (children found through /proc/*/stat).
fn tree(roots: &[u32]) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The command name may hold spaces and parentheses: split after the last ')'.
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// VmRSS in KiB summed over the process trees of `roots`.
fn rss_kib(roots: &[u32]) -> u64 {
    tree(roots)
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// CPU time (user + system) in seconds used so far by the process trees of `roots`.
fn cpu_seconds(roots: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: u64 = tree(roots)
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // utime and stime: fields 14 and 15, i.e. the 12th and 13th after the command name.
            let rest = &stat[stat.rfind(')')? + 2..];
            let mut fields = rest.split_whitespace().skip(11);
            let user: u64 = fields.next()?.parse().ok()?;
            let system: u64 = fields.next()?.parse().ok()?;
            Some(user + system)
        })
        .sum();
    ticks as f64 / per_second
}

/// Send one request and read its whole answer (a `Content-Length` body).
async fn exchange(stream: &mut Conn, request: &[u8], buf: &mut Vec<u8>) -> Result<(), String> {
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed by the proxy".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return Err(format!(
                "answer {}",
                head.lines().next().unwrap_or_default()
            ));
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or("no content-length")?;
        if buf.len() >= end + 4 + length {
            return Ok(());
        }
    }
}

async fn open(
    addr: String,
    request: Arc<Vec<u8>>,
    tls: Option<Arc<pingora_rustls::RootCertStore>>,
) -> Result<Conn, String> {
    let tcp = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
    let mut stream: Conn = match tls {
        None => Box::new(tcp),
        Some(roots) => {
            let connector = fresh_connector(&roots);
            let name = pingora_rustls::ServerName::try_from("localhost").expect("a valid name");
            let handshake = connector.connect(name, tcp);
            match tokio::time::timeout(ANSWER_TIMEOUT, handshake).await {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(e)) => return Err(format!("TLS: {e}")),
                Err(_) => return Err("TLS: timeout".into()),
            }
        }
    };
    let mut buf = Vec::new();
    tokio::time::timeout(ANSWER_TIMEOUT, exchange(&mut stream, &request, &mut buf))
        .await
        .map_err(|_| "timeout".to_string())??;
    Ok(stream)
}

/// `--close-for`: CONNECTIONS loops, each opening a connection (a full TLS handshake with
/// `--tls`), sending one request and reading the answer, then dropping it, for that long.
/// Latency: from the start of the connect to the end of the answer.
async fn close_each_time(args: &Args, request: Arc<Vec<u8>>) {
    let start = Instant::now();
    let end = start + args.close_for;
    let cpu_before = cpu_seconds(&args.pids);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let (addr, request, tls) = (args.addr.clone(), request.clone(), args.tls.clone());
        tasks.spawn(async move {
            let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0usize, None);
            while Instant::now() < end {
                let t0 = Instant::now();
                match open(addr.clone(), request.clone(), tls.clone()).await {
                    Ok(stream) => {
                        latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        drop(stream);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                        // A refused connection fails at once: do not spin on it.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (latencies, errors, first_error)
        });
    }
    let (mut all, mut errors, mut first_error) = (Vec::new(), 0, None);
    while let Some(Ok((latencies, e, first))) = tasks.join_next().await {
        all.extend(latencies);
        errors += e;
        if first_error.is_none() {
            first_error = first;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&args.pids) - cpu_before;
    all.sort_unstable();
    println!(
        "paced_requests={} paced_errors={errors} paced_wall_s={wall:.2} achieved_rate={:.0}",
        all.len(),
        all.len() as f64 / wall
    );
    if let Some(e) = first_error {
        println!("first_error={e:?}");
    }
    println!(
        "paced_cpu_s={cpu:.2} cpu_us_per_req={:.1}",
        cpu * 1e6 / all.len().max(1) as f64
    );
    println!(
        "p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3}",
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        percentile(&all, 1.0)
    );
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = parse_args();
    let request = Arc::new(args.request.clone());
    let before = rss_kib(&args.pids);
    println!("rss_before_kib={before}");
    if !args.close_for.is_zero() {
        return close_each_time(&args, request).await;
    }

    // Open the connections, at most OPEN_AT_ONCE at a time.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut streams = Vec::with_capacity(args.connections);
    let mut errors = 0usize;
    let mut first_error = None;
    let mut pending = tokio::task::JoinSet::new();
    let mut launched = 0;
    while streams.len() + errors < args.connections && Instant::now() < deadline {
        while launched < args.connections && pending.len() < OPEN_AT_ONCE {
            pending.spawn(open(args.addr.clone(), request.clone(), args.tls.clone()));
            launched += 1;
        }
        match tokio::time::timeout_at(deadline.into(), pending.join_next()).await {
            Ok(Some(Ok(Ok(stream)))) => streams.push(stream),
            Ok(Some(Ok(Err(e)))) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
            Ok(Some(Err(e))) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
            Ok(None) | Err(_) => break,
        }
    }
    pending.abort_all();
    println!(
        "opened={} of={} open_s={:.1} open_errors={errors}",
        streams.len(),
        args.connections,
        started.elapsed().as_secs_f64()
    );
    if let Some(e) = &first_error {
        println!("first_open_error={e:?}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(&args.pids);
    let per = (idle as f64 - before as f64) * 1024.0 / streams.len().max(1) as f64;
    println!("rss_idle_kib={idle} per_connection_bytes={per:.0}");
    if !args.hold.is_zero() {
        use std::io::Write;
        println!("holding_s={}", args.hold.as_secs());
        let _ = std::io::stdout().flush();
        tokio::time::sleep(args.hold).await;
    }

    if args.rate > 0.0 && !streams.is_empty() {
        let n = streams.len();
        let period = Duration::from_secs_f64(n as f64 / args.rate);
        let start = Instant::now() + Duration::from_millis(200);
        let end = start + args.duration;
        let cpu_before = cpu_seconds(&args.pids);
        let mut tasks = tokio::task::JoinSet::new();
        for (i, mut stream) in streams.drain(..).enumerate() {
            let request = request.clone();
            let offset = period.mul_f64(i as f64 / n as f64);
            tasks.spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0usize;
                let mut buf = Vec::with_capacity(512);
                let mut due = start + offset;
                while due < end {
                    tokio::time::sleep_until(due.into()).await;
                    match tokio::time::timeout(
                        ANSWER_TIMEOUT,
                        exchange(&mut stream, &request, &mut buf),
                    )
                    .await
                    {
                        Ok(Ok(())) => {
                            latencies.push(due.elapsed().as_micros().min(u32::MAX as u128) as u32)
                        }
                        _ => {
                            errors += 1;
                            break;
                        }
                    }
                    due += period;
                }
                (stream, latencies, errors)
            });
        }
        let mut all = Vec::new();
        let mut errors = 0;
        while let Some(done) = tasks.join_next().await {
            if let Ok((stream, latencies, e)) = done {
                all.extend(latencies);
                errors += e;
                streams.push(stream);
            }
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds(&args.pids) - cpu_before;
        all.sort_unstable();
        println!(
            "paced_requests={} paced_errors={errors} paced_wall_s={wall:.2} target_rate={} achieved_rate={:.0}",
            all.len(),
            args.rate,
            all.len() as f64 / args.duration.as_secs_f64()
        );
        println!(
            "paced_cpu_s={cpu:.2} cpu_us_per_req={:.1}",
            cpu * 1e6 / all.len().max(1) as f64
        );
        println!(
            "p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3}",
            percentile(&all, 0.50),
            percentile(&all, 0.90),
            percentile(&all, 0.99),
            percentile(&all, 0.999),
            percentile(&all, 1.0)
        );
        println!("rss_after_paced_kib={}", rss_kib(&args.pids));
    }

    drop(streams);
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("rss_closed_kib={}", rss_kib(&args.pids));
}
