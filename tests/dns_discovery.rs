//! DNS discovery against a real DNS server in the test process (tests/common/dns_server.rs):
//! a pool's discovery service (`sticky_proxy::discovery`) runs as Pingora would run it, with
//! the server as its only nameserver, while the test changes the records, makes the server
//! fail or stops it. What the service hands to its sink, logs and counts is checked; waits are
//! bounded waits for an expected event, never timings.

mod common;
use common::dns_server::{DnsServer, Mode};
use pingora_core::services::background::BackgroundService;
use pingora_prometheus::prometheus::IntCounter;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use sticky_proxy::config::{DiscoveryConfig, DiscoveryKind};
use sticky_proxy::discovery::{backend_name, DiscoveredBackends, DnsDiscovery};
use tokio::sync::mpsc;

/// How long an expected event may take before the test fails.
const BOUND: Duration = Duration::from_secs(15);
const PORT: u16 = 8080;
const WEIGHT: u32 = 3;

/// Every log line of the process (the tests filter them by their own pool's name).
struct Capture(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("sticky_proxy")
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = record.args().to_string();
            self.0.lock().unwrap().push((record.level(), line));
        }
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(capture).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
        capture
    })
}

/// The lines at `level` that name `pool`.
fn logged(pool: &str, level: log::Level) -> Vec<String> {
    let needle = format!("pool {pool}:");
    capture()
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, line)| *l == level && line.contains(&needle))
        .map(|(_, line)| line.clone())
        .collect()
}

/// The sink: every `replace` call, in order.
struct Sink(mpsc::UnboundedSender<(String, Vec<SocketAddr>, u32)>);

impl DiscoveredBackends for Sink {
    fn replace(&self, pool: &str, addrs: &[SocketAddr], weight: u32) {
        let _ = self.0.send((pool.to_string(), addrs.to_vec(), weight));
    }
}

/// One pool's discovery running against `dns`.
struct Running {
    pool: String,
    calls: mpsc::UnboundedReceiver<(String, Vec<SocketAddr>, u32)>,
    failures: IntCounter,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(dns: &DnsServer, pool: &str) -> Running {
        capture();
        let config = DiscoveryConfig {
            kind: DiscoveryKind::Dns,
            name: dns.name(pool),
            port: PORT,
            interval: Duration::from_millis(100),
            weight: WEIGHT,
            nameservers: Some(vec![dns.addr]),
        };
        let (send, calls) = mpsc::unbounded_channel();
        let failures = IntCounter::new("failures", "failed rounds").unwrap();
        let discovery = DnsDiscovery::new(pool, config, Arc::new(Sink(send)), failures.clone());
        let (shutdown, watch) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move { discovery.start(watch).await });
        Running {
            pool: pool.to_string(),
            calls,
            failures,
            shutdown,
            task,
        }
    }

    /// The next set handed to the sink (checking the pool and the weight).
    async fn next(&mut self) -> Vec<SocketAddr> {
        let (pool, addrs, weight) = tokio::time::timeout(BOUND, self.calls.recv())
            .await
            .expect("a replace call within the bound")
            .expect("the service is running");
        assert_eq!(pool, self.pool);
        assert_eq!(weight, WEIGHT);
        addrs
    }

    fn no_call_yet(&mut self) {
        if let Ok(call) = self.calls.try_recv() {
            panic!("unexpected replace call: {call:?}");
        }
    }
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited in vain for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_answer_is_delivered_as_the_whole_set_sorted_with_the_port() {
    let dns = DnsServer::start("test.").await;
    dns.set(
        &dns.name("first"),
        &ips(&["10.0.0.7", "10.0.0.5", "10.0.0.6"]),
    )
    .await;
    let mut running = Running::start(&dns, "first");
    let got = running.next().await;
    assert_eq!(
        got,
        addrs(&["10.0.0.5:8080", "10.0.0.6:8080", "10.0.0.7:8080"])
    );
    let info = logged("first", log::Level::Info);
    assert!(
        info.iter()
            .any(|l| l.contains("first.test.") && l.contains("10.0.0.5:8080")),
        "{info:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_record_is_delivered_as_a_bigger_set_and_a_removed_one_as_a_smaller_set() {
    let dns = DnsServer::start("test.").await;
    let name = dns.name("grow");
    dns.set(&name, &ips(&["10.0.0.1"])).await;
    let mut running = Running::start(&dns, "grow");
    assert_eq!(running.next().await, addrs(&["10.0.0.1:8080"]));
    dns.set(&name, &ips(&["10.0.0.1", "10.0.0.2"])).await;
    assert_eq!(
        running.next().await,
        addrs(&["10.0.0.1:8080", "10.0.0.2:8080"])
    );
    dns.set(&name, &ips(&["10.0.0.2"])).await;
    assert_eq!(running.next().await, addrs(&["10.0.0.2:8080"]));
    assert_eq!(running.failures.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_records_are_backends_too_beside_a_records_and_named_in_brackets() {
    let dns = DnsServer::start("test.").await;
    let name = dns.name("dual");
    dns.set(&name, &ips(&["::1", "10.0.0.1"])).await;
    let mut running = Running::start(&dns, "dual");
    let got = running.next().await;
    assert_eq!(got, addrs(&["10.0.0.1:8080", "[::1]:8080"]));
    let names: Vec<String> = got.into_iter().map(backend_name).collect();
    assert_eq!(names, ["10.0.0.1:8080", "[::1]:8080"]);
    // Only AAAA left: the A records' backend goes.
    dns.set(&name, &ips(&["::1", "::2"])).await;
    assert_eq!(running.next().await, addrs(&["[::1]:8080", "[::2]:8080"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_answer_is_not_delivered_twice() {
    let dns = DnsServer::start("test.").await;
    dns.set(&dns.name("same"), &ips(&["10.0.0.1", "10.0.0.2"]))
        .await;
    let mut running = Running::start(&dns, "same");
    running.next().await;
    // Several more rounds (each asks A and AAAA), all with the same answer.
    let seen = dns.queries();
    until("three more rounds", || dns.queries() >= seen + 6).await;
    running.no_call_yet();
    assert_eq!(running.failures.get(), 0);
}

/// A failure streak (`break_it` makes the server fail, `mend_it` ends it): no `replace`,
/// failures counted, one warning naming the pool and the DNS name; after it, a changed answer
/// is delivered again and the recovery is logged.
async fn failure_keeps_the_last_set(pool: &str, mode: Option<Mode>) {
    let mut dns = DnsServer::start("test.").await;
    let name = dns.name(pool);
    dns.set(&name, &ips(&["10.0.0.1"])).await;
    let mut running = Running::start(&dns, pool);
    assert_eq!(running.next().await, addrs(&["10.0.0.1:8080"]));
    match mode {
        Some(mode) => dns.set_mode(mode),
        None => dns.stop().await,
    }
    until("three failed rounds", || running.failures.get() >= 3).await;
    running.no_call_yet();
    let warnings = logged(pool, log::Level::Warn);
    assert_eq!(warnings.len(), 1, "one warning per streak: {warnings:?}");
    assert!(
        warnings[0].contains(&name) && warnings[0].contains("keeping the last known 1 backend"),
        "{warnings:?}"
    );
    // Back, with a changed answer.
    dns.set(&name, &ips(&["10.0.0.1", "10.0.0.3"])).await;
    match mode {
        Some(_) => dns.set_mode(Mode::Answer),
        None => dns.restart().await,
    }
    assert_eq!(
        running.next().await,
        addrs(&["10.0.0.1:8080", "10.0.0.3:8080"])
    );
    let info = logged(pool, log::Level::Info);
    assert!(info.iter().any(|l| l.contains("answers again")), "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_dns_server_keeps_the_last_set_counted_and_logged_until_it_is_back() {
    failure_keeps_the_last_set("stopped", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_keeps_the_last_set_counted_and_logged_until_it_answers_again() {
    failure_keeps_the_last_set("servfail", Some(Mode::ServFail)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_dns_server_times_out_and_keeps_the_last_set_until_it_answers_again() {
    failure_keeps_the_last_set("silent", Some(Mode::Silent)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_aaaa_lookup_beside_a_good_a_answer_keeps_the_whole_last_set() {
    let dns = DnsServer::start("test.").await;
    let name = dns.name("halfway");
    dns.set(&name, &ips(&["10.0.0.1", "::1"])).await;
    let mut running = Running::start(&dns, "halfway");
    assert_eq!(
        running.next().await,
        addrs(&["10.0.0.1:8080", "[::1]:8080"])
    );
    dns.set_mode(Mode::ServFailAaaa);
    dns.set(&name, &ips(&["10.0.0.2", "::1"])).await;
    until("two failed rounds", || running.failures.get() >= 2).await;
    // Not [10.0.0.2:8080] alone: the IPv6 backend is not dropped for a failed AAAA lookup.
    running.no_call_yet();
    dns.set_mode(Mode::Answer);
    assert_eq!(
        running.next().await,
        addrs(&["10.0.0.2:8080", "[::1]:8080"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_records_keeps_the_last_set_and_counts_as_a_failure() {
    let dns = DnsServer::start("test.").await;
    let name = dns.name("emptied");
    dns.set(&name, &ips(&["10.0.0.1"])).await;
    let mut running = Running::start(&dns, "emptied");
    assert_eq!(running.next().await, addrs(&["10.0.0.1:8080"]));
    dns.set(&name, &[]).await;
    until("two failed rounds", || running.failures.get() >= 2).await;
    running.no_call_yet();
    let warnings = logged("emptied", log::Level::Warn);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    dns.set(&name, &ips(&["10.0.0.9"])).await;
    assert_eq!(running.next().await, addrs(&["10.0.0.9:8080"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_ends_with_the_shutdown_watch() {
    let dns = DnsServer::start("test.").await;
    dns.set(&dns.name("ends"), &ips(&["10.0.0.1"])).await;
    let mut running = Running::start(&dns, "ends");
    running.next().await;
    running.shutdown.send(true).unwrap();
    tokio::time::timeout(BOUND, &mut running.task)
        .await
        .expect("the service ended")
        .unwrap();
}
