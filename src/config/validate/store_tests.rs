//! Unit tests of the store's validation: defaults, each mode's keys, and messages naming the
//! field and the value.

use super::*;

fn learn(store: &str, table: &str) -> std::result::Result<Option<RedisStoreConfig>, String> {
    let yaml = format!(
        "sticky:\n  listeners: [{{ addr: \"127.0.0.1:1\" }}]\n  pools:\n    - name: web\n      \
         backends: [{{ name: a, addr: \"127.0.0.1:2\" }}]\n      \
         affinity: {{ learn: {{ presets: [j2ee], table: {table}, store: {store} }} }}\n"
    );
    crate::config::load_str(&yaml)
        .map(|c| {
            c.pools[0]
                .affinity
                .as_ref()
                .unwrap()
                .learn
                .clone()
                .unwrap()
                .store
        })
        .map_err(|e| e.to_string())
}

fn at(host: &str, port: u16) -> HostPort {
    HostPort {
        host: host.into(),
        port,
    }
}

#[test]
fn a_redis_store_gets_its_defaults_and_local_takes_no_redis_keys() {
    let c = learn("{ type: redis, address: \"127.0.0.1:6379\" }", "{}")
        .unwrap()
        .unwrap();
    assert_eq!(c.topology, RedisTopology::Standalone(at("127.0.0.1", 6379)));
    assert_eq!(c.database, 0);
    assert_eq!(c.key_prefix, "sticky:");
    assert_eq!(c.lookup_timeout, Duration::from_millis(20));
    assert_eq!(c.connect_timeout, Duration::from_millis(1000));
    assert_eq!(
        c.refresh_interval,
        Duration::from_secs(60),
        "1800 s / 4, at most 60"
    );
    assert_eq!(c.write_queue, 10_000);
    let short = learn(
        "{ type: redis, address: \"h:1\" }",
        "{ idle_timeout_seconds: 20 }",
    );
    assert_eq!(
        short.unwrap().unwrap().refresh_interval,
        Duration::from_secs(5)
    );
    assert!(learn("{}", "{}").unwrap().is_none());
    assert!(learn("{ type: local }", "{}").unwrap().is_none());
    for key in [
        "key_prefix: x",
        "mode: cluster",
        "sentinels: []",
        "nodes: [\"h:1\"]",
    ] {
        let err = learn(&format!("{{ type: local, {key} }}"), "{}").unwrap_err();
        let name = key.split(':').next().unwrap();
        assert!(
            err.contains(&format!("learn.store.{name}: not used by type \"local\"")),
            "{err}"
        );
    }
    let err = learn("{ type: redis }", "{}").unwrap_err();
    assert!(err.contains("learn.store.address: required"), "{err}");
    let err = learn("{ type: redis, address: \"h:1\", username: u }", "{}").unwrap_err();
    assert!(
        err.contains("learn.store.username: \"u\" needs a password"),
        "{err}"
    );
}

#[test]
fn sentinel_mode_takes_sentinels_a_service_and_its_own_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sentinel-password");
    std::fs::write(&file, "s3cret\n").unwrap();
    let c = learn(
        &format!(
            "{{ type: redis, mode: sentinel, sentinels: [\"10.0.0.5:26379\", \"[::1]:26380\"], \
             service: mymaster, sentinel_username: watcher, \
             sentinel_password_file: \"{}\", database: 2 }}",
            file.display()
        ),
        "{}",
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        c.topology,
        RedisTopology::Sentinel {
            sentinels: vec![at("10.0.0.5", 26379), at("::1", 26380)],
            service: "mymaster".into(),
            username: Some("watcher".into()),
            password: Some("s3cret".into()),
        }
    );
    assert_eq!((c.database, c.password.as_deref()), (2, None));
    let cases = [
        (
            "{ type: redis, mode: sentinel, service: m }",
            "learn.store.sentinels: required",
        ),
        (
            "{ type: redis, mode: sentinel, sentinels: [], service: m }",
            "learn.store.sentinels: needs at least one host:port: []",
        ),
        (
            "{ type: redis, mode: sentinel, sentinels: [\"h:1\", \"h\"], service: m }",
            "learn.store.sentinels[1]: not host:port: \"h\"",
        ),
        (
            "{ type: redis, mode: sentinel, sentinels: [\"h:1\", \"h:1\"], service: m }",
            "learn.store.sentinels[1]: duplicate address \"h:1\" (also sentinels[0])",
        ),
        (
            "{ type: redis, mode: sentinel, sentinels: [\"h:1\"] }",
            "learn.store.service: required with mode \"sentinel\"",
        ),
        (
            "{ type: redis, mode: sentinel, sentinels: [\"h:1\"], service: \"my master\" }",
            "learn.store.service: 1 to 128 bytes without spaces or control characters: \"my master\"",
        ),
        (
            "{ type: redis, mode: sentinel, sentinels: [\"h:1\"], service: m, address: \"h:2\" }",
            "learn.store.address: not used by mode \"sentinel\" (the sentinels name the primary",
        ),
        (
            "{ type: redis, mode: sentinel, sentinels: [\"h:1\"], service: m, sentinel_username: w }",
            "learn.store.sentinel_username: \"w\" needs a password (sentinel_password_env or sentinel_password_file)",
        ),
        (
            "{ type: redis, mode: sentinel, sentinels: [\"h:1\"], service: m, \
             sentinel_password_env: A, sentinel_password_file: B }",
            "learn.store.sentinel_password_env: give one of sentinel_password_env, sentinel_password_file, not both",
        ),
        (
            "{ type: redis, mode: sentinel, sentinels: [\"h:1\"], service: m, \
             sentinel_password_env: STICKY_TEST_UNSET_VARIABLE }",
            "learn.store.sentinel_password_env: environment variable \"STICKY_TEST_UNSET_VARIABLE\" is not set",
        ),
        (
            "{ type: redis, address: \"h:1\", sentinels: [\"h:2\"] }",
            "learn.store.sentinels: not used by mode \"standalone\" (did you mean mode: sentinel?)",
        ),
        (
            "{ type: redis, mode: primary, address: \"h:1\" }",
            "unknown variant `primary`",
        ),
    ];
    for (store, want) in cases {
        let err = learn(store, "{}").unwrap_err();
        assert!(err.contains(want), "{store}:\n{err}\nwanted {want}");
    }
}

#[test]
fn cluster_mode_takes_nodes_database_zero_and_no_hash_tag_in_the_prefix() {
    let c = learn(
        "{ type: redis, mode: cluster, nodes: [\"127.0.0.1:7000\", \"redis-1.internal:7001\"], \
         username: u, password_file: /dev/null }",
        "{}",
    );
    assert!(
        c.as_ref()
            .unwrap_err()
            .contains("learn.store.password_file: the password is empty"),
        "{c:?}"
    );
    let c = learn(
        "{ type: redis, mode: cluster, nodes: [\"127.0.0.1:7000\", \"redis-1.internal:7001\"] }",
        "{}",
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        c.topology,
        RedisTopology::Cluster {
            nodes: vec![at("127.0.0.1", 7000), at("redis-1.internal", 7001)]
        }
    );
    let cases = [
        (
            "{ type: redis, mode: cluster }",
            "learn.store.nodes: required",
        ),
        (
            "{ type: redis, mode: cluster, nodes: [\"h:1\", \"h:0\"] }",
            "learn.store.nodes[1]: not host:port: \"h:0\"",
        ),
        (
            "{ type: redis, mode: cluster, nodes: [\"h:1\"], database: 3 }",
            "learn.store.database: a cluster has only database 0: 3",
        ),
        (
            "{ type: redis, mode: cluster, nodes: [\"h:1\"], key_prefix: \"{s}:\" }",
            "learn.store.key_prefix: no braces with mode \"cluster\"",
        ),
        (
            "{ type: redis, mode: cluster, nodes: [\"h:1\"], address: \"h:1\" }",
            "learn.store.address: not used by mode \"cluster\" (list the cluster's nodes in nodes)",
        ),
        (
            "{ type: redis, mode: cluster, nodes: [\"h:1\"], service: m }",
            "learn.store.service: not used by mode \"cluster\"",
        ),
        (
            "{ type: redis, address: \"h:1\", nodes: [\"h:2\"] }",
            "learn.store.nodes: not used by mode \"standalone\" (did you mean mode: cluster?)",
        ),
    ];
    for (store, want) in cases {
        let err = learn(store, "{}").unwrap_err();
        assert!(err.contains(want), "{store}:\n{err}\nwanted {want}");
    }
}

#[test]
fn addresses_are_host_and_port() {
    let p = |s: &str| parse_host_port(s).map(|a| (a.host, a.port));
    assert_eq!(p("127.0.0.1:6379"), Some(("127.0.0.1".into(), 6379)));
    assert_eq!(
        p("redis.internal:6380"),
        Some(("redis.internal".into(), 6380))
    );
    assert_eq!(p("[::1]:6379"), Some(("::1".into(), 6379)));
    for bad in [
        "localhost",
        ":6379",
        "host:0",
        "host:99999",
        "::1:6379",
        "a b:1",
        "[x]:1",
    ] {
        assert_eq!(p(bad), None, "{bad}");
    }
}
