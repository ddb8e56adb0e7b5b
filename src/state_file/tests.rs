//! Unit tests of the state file: what is written, what a restore applies and ignores.

use super::*;
use pingora_prometheus::prometheus::IntCounter;

fn state_file(path: &Path) -> Arc<StateFile> {
    let config = crate::config::load_str(
        "sticky:\n  listeners: [{ addr: \"127.0.0.1:1\" }]\n  pools:\n    - name: web\n      backends: [{ name: a, addr: \"127.0.0.1:2\" }, { name: b, addr: \"127.0.0.1:3\", state: disabled }]\n",
    )
    .unwrap();
    let pools = vec![Pool::new(&config.pools[0], None).0];
    let counters = WriteCounters {
        written: IntCounter::new("w", "w").unwrap(),
        failed: IntCounter::new("f", "f").unwrap(),
    };
    StateFile::new(path, &config, pools, counters)
}

#[test]
fn only_states_that_differ_from_the_configured_ones_are_written_and_they_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let first = state_file(&path);
    assert!(first.write_now());
    assert_eq!(
        first.snapshot().pools.len(),
        0,
        "nothing set through the API yet"
    );
    first.pools[0].slots()[0].set_state(BackendState::Draining);
    first.pools[0].slots()[1].set_state(BackendState::Active);
    assert!(first.write_now());
    assert_eq!(first.counters.written.get(), 2);

    let second = state_file(&path);
    let restored = second.restore();
    assert_eq!(restored.applied, ["web/a draining", "web/b active"]);
    assert!(restored.stale.is_empty() && restored.unusable.is_none());
    assert_eq!(second.pools[0].slots()[0].state(), BackendState::Draining);
    assert_eq!(second.pools[0].slots()[1].state(), BackendState::Active);
    assert_eq!(
        second.pools[0].slots()[1].ramp_share(Some(std::time::Duration::from_secs(60))),
        1.0,
        "restored at start: no slow start"
    );
}

#[test]
fn stale_entries_are_ignored_and_named_and_a_corrupt_or_missing_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let file = state_file(&path);
    assert_eq!(
        file.restore(),
        Restored::default(),
        "missing: nothing to do"
    );

    std::fs::write(
        &path,
        r#"{"version":1,"pools":{"web":{"backends":{"a":{"state":"disabled"},"gone":{"state":"draining"}}},"old":{"backends":{}}}}"#,
    )
    .unwrap();
    let restored = file.restore();
    assert_eq!(restored.applied, ["web/a disabled"]);
    assert_eq!(restored.stale, ["pool old", "web/gone"]);

    for corrupt in ["{\"version\":1,", "{\"version\":9,\"pools\":{}}"] {
        std::fs::write(&path, corrupt).unwrap();
        let file = state_file(&path);
        let restored = file.restore();
        assert!(restored.unusable.is_some(), "{corrupt}");
        assert_eq!(file.pools[0].slots()[1].state(), BackendState::Disabled);
    }
}

#[test]
fn a_write_that_fails_is_counted_and_changes_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = state_file(&dir.path().join("missing-dir").join("state.json"));
    file.pools[0].slots()[0].set_state(BackendState::Draining);
    assert!(!file.write_now());
    assert_eq!(file.counters.failed.get(), 1);
    assert_eq!(file.pools[0].slots()[0].state(), BackendState::Draining);
}
