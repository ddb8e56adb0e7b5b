//! Start-up validation through the real binary: every file under `tests/invalid_configs/` is
//! rejected with exit status 2 and a one-line message naming the field (the file's first line,
//! `# expect: ...`, is the text the message must contain); every `conf/` example passes `-t`.

mod common;
use common::run_binary;
use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    run_binary(args, &[])
}

#[test]
fn every_invalid_config_stops_the_start_with_exit_2_and_a_message_naming_the_field() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid_configs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "at least 20 invalid configs, found {}",
        files.len()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks its '# expect: ' line", file.display()));
        for args in [vec!["-t", "-c"], vec!["-c"]] {
            let mut args = args.clone();
            let path = file.to_str().unwrap();
            args.push(path);
            let (code, _, stderr) = run(&args);
            assert_eq!(code, 2, "{} with {args:?}: {stderr}", file.display());
            assert!(
                stderr.contains(expect),
                "{}: expected {expect:?} in:\n{stderr}",
                file.display()
            );
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(
                lines.len(),
                1,
                "{}: one line, got:\n{stderr}",
                file.display()
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

#[test]
fn every_conf_example_passes_the_config_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let (code, stdout, stderr) = run(&["-t", "-c", path.to_str().unwrap()]);
            assert_eq!(code, 0, "{}: {stderr}", path.display());
            assert!(stdout.contains("configuration OK"), "{stdout}");
            count += 1;
        }
    }
    assert!(count >= 1);
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let (code, _, stderr) = run(&["-c", "/nonexistent/sticky.yaml"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("cannot read \"/nonexistent/sticky.yaml\""),
        "{stderr}"
    );
    let (code, _, stderr) = run(&[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("-c"), "{stderr}");
}

#[test]
fn a_secret_can_come_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "file-secret-0123456789abcdef\n").unwrap();
    let config = |cookie: &str| {
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            format!(
                "version: 1\nsticky:\n  listeners: [{{ addr: 127.0.0.1:6188 }}]\n  pools:\n    - name: web\n      backends: [{{ name: iis1, addr: \"127.0.0.1:9001\" }}]\n      affinity: {{ cookie: {cookie} }}\n"
            ),
        )
        .unwrap();
        path
    };
    let from_file = config(&format!("{{ secret_file: \"{}\" }}", secret.display()));
    let (code, _, stderr) = run(&["-t", "-c", from_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");

    let from_env = config("{ secret_env: STICKY_TEST_SECRET }");
    let out = Command::new(env!("CARGO_BIN_EXE_sticky-proxy"))
        .args(["-t", "-c", from_env.to_str().unwrap()])
        .env("STICKY_TEST_SECRET", "env-secret-0123456789abcdef")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start the binary on `yaml`; it must stop with exit 2, a message containing `expected` and
/// no panic.
fn assert_start_refused(yaml: &str, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (code, _, stderr) = run(&["-c", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// 192.0.2.1 (TEST-NET-1) is no address of this machine: it cannot be bound.
#[test]
fn a_listener_address_that_cannot_be_bound_stops_the_start_with_a_message_naming_the_field() {
    assert_start_refused(
        "version: 1\nsticky:\n  listeners: [{ addr: \"192.0.2.1:6188\" }]\n  pools:\n    - name: web\n      backends: [{ name: iis1, addr: \"127.0.0.1:9001\" }]\n",
        "sticky.listeners[0].addr: cannot listen on 192.0.2.1:6188",
    );
}

#[test]
fn an_admin_address_that_cannot_be_bound_stops_the_start_with_a_message_naming_the_field() {
    // The proxy listener itself can be bound (port 0: the kernel picks a free one).
    assert_start_refused(
        "version: 1\nsticky:\n  listeners: [{ addr: \"127.0.0.1:0\" }]\n  admin: { addr: \"192.0.2.1:6189\" }\n  pools:\n    - name: web\n      backends: [{ name: iis1, addr: \"127.0.0.1:9001\" }]\n",
        "sticky.admin.addr: cannot listen on 192.0.2.1:6189",
    );
}
