//! Criterion micro-benchmarks of the request hot path: cookie parse + verify (date-less, and
//! dated under lifetimes, with the dated Set-Cookie line), the affinity
//! decision for a returning session, hash-key extraction per source, and ring lookup with 3, 16
//! and 128 backends. Run with `make bench` (or `cargo bench --bench hot_path`).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::sync::Arc;
use sticky_proxy::affinity::decision::{decide, Mechanisms};
use sticky_proxy::affinity::key::{self, RequestView};
use sticky_proxy::affinity::persistence::Affinity;
use sticky_proxy::affinity::Pin;
use sticky_proxy::config::{load_str, KeySourceConfig};
use sticky_proxy::pool::Pool;

fn pool_yaml(backends: usize, affinity: &str) -> String {
    let list: Vec<String> = (0..backends)
        .map(|i| format!("{{ name: app{i}, addr: \"127.0.0.1:{}\" }}", 10_000 + i))
        .collect();
    format!(
        "sticky:\n  listeners: [{{ addr: \"127.0.0.1:6188\" }}]\n  pools:\n    - name: web\n      backends: [{}]\n      affinity:\n{affinity}",
        list.join(", ")
    )
}

const COOKIE: &str = "        cookie: { secret: bench-secret-0123456789abcdef }\n";
const HASH: &str = "        hash: { sources: [{ type: cookie, name: CUserID }] }\n";

/// A pool of `backends` with the `affinity` section, and that affinity built for it.
fn pool(backends: usize, affinity: &str) -> (Arc<Pool>, Affinity) {
    let config = load_str(&pool_yaml(backends, affinity)).expect("bench config");
    let pool = Pool::new(&config.pools[0], None).0;
    let section = config.pools[0]
        .affinity
        .as_ref()
        .expect("an affinity section");
    let affinity = Affinity::new(
        section,
        None,
        &pool,
        &sticky_proxy::extension::Extensions::default(),
    );
    (pool, affinity)
}

fn cookie_value(cookie: &sticky_proxy::affinity::CookieAffinity, backend: usize) -> String {
    let format = &cookie.config.format;
    sticky_proxy::affinity::cookie::value_text(format, "web", &format!("app{backend}"))
}

fn bench_cookie(c: &mut Criterion) {
    let (pool, affinity) = pool(3, COOKIE);
    let cookie = affinity.cookie.as_ref().expect("cookie affinity");
    let header = format!(
        "_ga=GA1.2.3; theme=dark; ARRAffinity={}; CUserID=42",
        cookie_value(cookie, 1)
    );
    let forged = format!("_ga=GA1.2.3; ARRAffinity={}", "0".repeat(64));
    let mut group = c.benchmark_group("cookie");
    group.bench_function("pinned: valid value among 4 cookies", |b| {
        b.iter(|| cookie.pinned(std::iter::once(black_box(header.as_bytes()))))
    });
    group.bench_function("pinned: forged value", |b| {
        b.iter(|| cookie.pinned(std::iter::once(black_box(forged.as_bytes()))))
    });
    group.bench_function(
        "decision: returning session (parse, verify, lookup, select)",
        |b| {
            b.iter(|| {
                let pin = cookie.pinned(std::iter::once(black_box(header.as_bytes())));
                let slots = pool.slots();
                let decision = decide(
                    pin,
                    Mechanisms {
                        cookie: true,
                        tables: false,
                        keeps_sessions: false,
                    },
                    &[],
                    |i| slots[i].is_usable(),
                    |_| None,
                    |failed| pool.select_new(&slots, failed),
                );
                assert_eq!(decision.backend(), Some(1));
                decision
            })
        },
    );
    group.bench_function("decision: new session (round robin pick)", |b| {
        b.iter(|| {
            let slots = pool.slots();
            decide(
                Pin::Absent,
                Mechanisms {
                    cookie: true,
                    tables: false,
                    keeps_sessions: false,
                },
                &[],
                |i| slots[i].is_usable(),
                |_| None,
                |failed| pool.select_new(&slots, failed),
            )
        })
    });
    group.finish();
}

/// Cookie lifetimes: reading a dated value (parse, HMAC of the dates, id lookup, clock, rules),
/// and writing the dated `Set-Cookie` lines of a new or refreshed session.
fn bench_lifetimes(c: &mut Criterion) {
    use sticky_proxy::affinity::lifetime::{unix_now, DatedIds, Dates};
    const DATED: &str = "        cookie: { secret: bench-secret-0123456789abcdef, max_idle_seconds: 3600, max_life_seconds: 86400 }\n";
    let names = ["app0", "app1", "app2"];
    let (_pool, affinity) = pool(3, DATED);
    let cookie = affinity.cookie.as_ref().expect("cookie affinity");
    let ids = DatedIds::new(b"bench-secret-0123456789abcdef", "web", names);
    let value = ids
        .codec
        .encode(ids.id(1).expect("app1"), Dates::new_at(unix_now()));
    let value = String::from_utf8_lossy(&value);
    let header = format!("_ga=GA1.2.3; theme=dark; ARRAffinity={value}; CUserID=42");
    let undated = format!(
        "_ga=GA1.2.3; theme=dark; ARRAffinity={}; CUserID=42",
        cookie_value(cookie, 1)
    );
    let mut group = c.benchmark_group("lifetimes");
    group.bench_function("read: dated value among 4 cookies", |b| {
        b.iter(|| cookie.read(std::iter::once(black_box(header.as_bytes()))))
    });
    group.bench_function("read: date-less value (re-issued with dates)", |b| {
        b.iter(|| cookie.read(std::iter::once(black_box(undated.as_bytes()))))
    });
    group.bench_function("issue: dated Set-Cookie line", |b| {
        b.iter(|| cookie.issue(black_box(1), false, None))
    });
    group.finish();
}

fn bench_keys(c: &mut Criterion) {
    let uri: http::Uri = "/shop/cart?uid=123&region=eu&page=2".parse().unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "cookie",
        "_ga=GA1.2.3; CUserID=sdk-user-42; theme=dark"
            .parse()
            .unwrap(),
    );
    headers.insert("x-tenant", "tenant-17".parse().unwrap());
    headers.insert("host", "shop.example".parse().unwrap());
    let view = RequestView {
        uri: &uri,
        headers: &headers,
        client_ip: Some("198.51.100.77".parse().unwrap()),
    };
    let sources = [
        (
            "cookie",
            KeySourceConfig::Cookie {
                name: "CUserID".into(),
                regex: None,
            },
        ),
        (
            "cookie + regex",
            KeySourceConfig::Cookie {
                name: "CUserID".into(),
                regex: Some(regex::bytes::Regex::new("^([0-9.A-Za-z-]+)").unwrap()),
            },
        ),
        (
            "header",
            KeySourceConfig::Header {
                name: http::HeaderName::from_static("x-tenant"),
            },
        ),
        (
            "query (2 params)",
            KeySourceConfig::Query {
                params: vec!["uid".into(), "region".into()],
            },
        ),
        (
            "query (1 param)",
            KeySourceConfig::Query {
                params: vec!["uid".into()],
            },
        ),
        ("path", KeySourceConfig::Path),
        ("path_and_query", KeySourceConfig::PathAndQuery),
        ("host", KeySourceConfig::Host),
        (
            "client_ip /24",
            KeySourceConfig::ClientIp {
                ipv4_prefix: 24,
                ipv6_prefix: 64,
            },
        ),
    ];
    let mut group = c.benchmark_group("key extraction");
    for (name, config) in sources {
        let source =
            key::from_config(&config, &sticky_proxy::extension::Extensions::default()).unwrap();
        assert!(source.key(&view).is_some(), "{name} finds its key");
        group.bench_function(name, |b| {
            b.iter(|| source.key(black_box(&view)).map(|k| k.len()))
        });
    }
    group.finish();
}

fn bench_ring(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring lookup");
    for n in [3usize, 16, 128] {
        let (pool, affinity) = pool(n, HASH);
        let hash = affinity.hash.as_ref().expect("hash affinity");
        let keys: Vec<String> = (0..1024).map(|i| format!("user-{i}")).collect();
        let mut i = 0;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 1023;
                hash.select(black_box(keys[i].as_bytes()), &pool.slots(), &[])
            })
        });
    }
    group.finish();
}

fn bench_table(c: &mut Criterion) {
    use sticky_proxy::affinity::sessions::{key_of, SessionTable};
    use sticky_proxy::config::TableConfig;
    let mut group = c.benchmark_group("session table");
    for entries in [1u64, 1_000_000] {
        let table = SessionTable::new(TableConfig {
            capacity: entries,
            idle_timeout: std::time::Duration::from_secs(3600),
            max_lifetime: None,
        });
        let keys: Vec<u128> = (0..entries)
            .map(|i| key_of(format!("{i:032X}").as_bytes()))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            table.insert(*key, i % 3);
        }
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::new("get hit", entries), &entries, |b, _| {
            b.iter(|| {
                i = (i + 7919) % keys.len();
                table.get(black_box(keys[i]))
            })
        });
        group.bench_with_input(BenchmarkId::new("get miss", entries), &entries, |b, _| {
            b.iter(|| table.get(black_box(0xdead_beef)))
        });
        let mut n = 0u64;
        group.bench_with_input(
            BenchmarkId::new("insert (full table)", entries),
            &entries,
            |b, _| {
                b.iter(|| {
                    n += 1;
                    table.insert(black_box(key_of(&n.to_le_bytes())), 1)
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("hash a 32-byte id", entries),
            &entries,
            |b, _| b.iter(|| key_of(black_box(b"0123456789ABCDEF0123456789ABCDEF"))),
        );
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_cookie,
    bench_lifetimes,
    bench_keys,
    bench_ring,
    bench_table
);
criterion_main!(benches);
