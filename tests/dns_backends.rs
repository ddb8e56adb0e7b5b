//! DNS discovery end to end (issue #19 point 5; HAProxy `server-template` + `resolvers`, NGINX
//! Plus `resolve`): the real proxy with a pool whose backends come only from a real DNS server
//! in the test process (tests/common/dns_server.rs), real backends on one port at several
//! loopback addresses, and a real client. The records change under the running proxy: an added
//! address takes new sessions, a removed one's sessions move on with a new cookie, an address
//! that comes back gets its old cookies, and a DNS server that stops answering changes nothing.
//! A pool whose name does not resolve yet answers 503 until it does.

mod common;
use common::admin::Place;
use common::dns_server::DnsServer;
use common::*;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// How long an expected change may take to show (discovery every second, TTL 0).
const BOUND: Duration = Duration::from_secs(20);

/// The backend names `/api/pools/web` lists, sorted.
async fn listed(proxy: &Proxy) -> Vec<String> {
    let reply = get(&client(), &proxy.admin_url("/api/pools/web"), None).await;
    let pool: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let mut names: Vec<String> = pool["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

async fn wait_listed(proxy: &Proxy, want: &[&str]) {
    let shown = eventually(BOUND, || async { listed(proxy).await == want }).await;
    assert!(
        shown,
        "wanted {want:?}, have {:?}\n{}",
        listed(proxy).await,
        proxy.log()
    );
}

/// The proxy with an admin listener and pool `web`, whose only backends are the addresses of
/// DNS name `app` (port `port`) as `dns` answers, asked every second.
async fn start(place: &Place, dns: &DnsServer, app: &str, port: u16) -> Proxy {
    let section = format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  admin: {{ addr: \"{{admin}}\", token_file: \"{}\" }}\n  pools:\n    - name: web\n      backends: []\n      discovery: {{ type: dns, name: \"{app}\", port: {port}, interval_seconds: 1, nameservers: [\"{}\"] }}\n{KEYED_AFFINITY}",
        place.token_file().display(),
        dns.addr,
    );
    let proxy = Proxy::start(&section).await;
    common::admin::wait_for_admin(&proxy).await;
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_follows_its_dns_name_as_the_records_change_and_keeps_serving_when_dns_fails() {
    let ip = |last: u8| Ipv4Addr::new(127, 0, 0, last);
    let backends =
        TestBackend::start_on_one_port(&[("app-a", ip(2)), ("app-b", ip(3)), ("app-c", ip(4))])
            .await;
    let port = backends[0].addr.port();
    let name_of = |i: usize| backends[i].addr.to_string();
    let (a, b, c) = (name_of(0), name_of(1), name_of(2));
    let mut dns = DnsServer::start("test.").await;
    let app = dns.name("app");
    dns.set(&app, &[IpAddr::V4(ip(2))]).await;
    let place = Place::new();
    let proxy = start(&place, &dns, &app, port).await;
    wait_listed(&proxy, &[&a]).await;
    let client = client();
    let first = get(&client, &proxy.url("/"), None).await;
    assert_eq!(first.backend(), "app-a");
    let on_a = format!("ARRAffinity={}", first.cookie("ARRAffinity").unwrap());

    // A second address: new sessions reach it, the session on the first stays.
    dns.set(&app, &[IpAddr::V4(ip(2)), IpAddr::V4(ip(3))]).await;
    wait_listed(&proxy, &[&a, &b]).await;
    let on_b = format!(
        "ARRAffinity={}",
        cookie_for(&client, &proxy, "/", "app-b").await
    );
    for _ in 0..4 {
        assert_eq!(
            get(&client, &proxy.url("/"), Some(&on_a)).await.backend(),
            "app-a"
        );
    }

    // The first address gone: its session moves on with a new cookie; nothing reaches it.
    dns.set(&app, &[IpAddr::V4(ip(3)), IpAddr::V4(ip(4))]).await;
    wait_listed(&proxy, &[&b, &c]).await;
    let hits = backends[0].hits();
    let moved = get(&client, &proxy.url("/"), Some(&on_a)).await;
    assert_ne!(moved.backend(), "app-a");
    assert!(moved.cookie("ARRAffinity").is_some(), "{moved:?}");
    for _ in 0..8 {
        assert_ne!(get(&client, &proxy.url("/"), None).await.backend(), "app-a");
    }
    assert_eq!(backends[0].hits(), hits);

    // Back in the answer: the old cookie pins to it again (named after its address).
    dns.set(
        &app,
        &[IpAddr::V4(ip(2)), IpAddr::V4(ip(3)), IpAddr::V4(ip(4))],
    )
    .await;
    wait_listed(&proxy, &[&a, &b, &c]).await;
    let back = get(&client, &proxy.url("/"), Some(&on_a)).await;
    assert_eq!(back.backend(), "app-a");
    assert!(back.set_cookies().is_empty(), "{back:?}");

    // The DNS server stops: the last set stays, said in the log and counted.
    dns.stop().await;
    let said = eventually(BOUND, || async {
        proxy.log().contains("DNS discovery of app.test. failed")
            && get(&client, &proxy.admin_url("/metrics"), None)
                .await
                .body
                .lines()
                .any(|l| {
                    l.starts_with("sticky_discovery_failures_total{pool=\"web\"}")
                        && !l.ends_with(" 0")
                })
    })
    .await;
    assert!(said, "{}", proxy.log());
    assert_eq!(listed(&proxy).await, [a.as_str(), b.as_str(), c.as_str()]);
    assert_eq!(
        get(&client, &proxy.url("/"), Some(&on_b)).await.backend(),
        "app-b"
    );
    assert!(
        proxy.log().contains(&format!("DNS discovery: backend {c}")),
        "{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_with_only_discovery_answers_503_until_its_name_resolves_and_then_serves() {
    let backends = TestBackend::start_on_one_port(&[("app-a", Ipv4Addr::new(127, 0, 0, 2))]).await;
    let port = backends[0].addr.port();
    let dns = DnsServer::start("test.").await;
    let app = dns.name("app");
    let place = Place::new();
    // The name has no records yet: the proxy starts, and answers 503 (no backend named).
    let proxy = start(&place, &dns, &app, port).await;
    let client = client();
    let empty = get(&client, &proxy.url("/"), None).await;
    assert_eq!(empty.status, 503, "{empty:?}");
    assert!(!empty.body.contains("127.0.0.2"), "{empty:?}");
    assert!(listed(&proxy).await.is_empty());

    // Once it resolves, the address is a backend and takes sessions.
    dns.set(&app, &[IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))])
        .await;
    wait_listed(&proxy, &[&backends[0].addr.to_string()]).await;
    let served = get(&client, &proxy.url("/"), None).await;
    assert_eq!(served.status, 200, "{served:?}");
    assert_eq!(served.backend(), "app-a");
    assert!(served.cookie("ARRAffinity").is_some(), "{served:?}");
}
