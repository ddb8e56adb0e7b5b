//! The README's walkthrough, on the real `conf/demo.yaml` and the real `demo-backend` binary,
//! with `curl` as the client. Only the ports and file paths are moved so that the test can run
//! beside a `make run`.

mod common;
use common::*;
use std::process::{Child, Command, Stdio};

struct Backends(Child);
impl Drop for Backends {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl is installed by make test");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_config_shows_stickiness_alternation_and_opt_out_as_the_readme_says() {
    // Port 0: the backends say where they listen, the proxy's sockets are handed over.
    let mut backends = Backends(
        Command::new(env!("CARGO_BIN_EXE_demo-backend"))
            .args(["iis1=127.0.0.1:0", "iis2=127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(backends.0.stdout.take().unwrap()));
    let mut bound = |name: &str| {
        let line = lines.next().unwrap().unwrap();
        let prefix = format!("demo backend {name} listening on http://");
        line.strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line}"))
            .to_string()
    };
    let (b1, b2) = (bound("iis1"), bound("iis2"));
    let (listen, admin) = (Port::new(), Port::new());
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.yaml")).unwrap();
    let (listen_addr, admin_addr) = (listen.to_string(), admin.to_string());
    let proxy = Proxy::start_full(
        |dir| {
            demo.replace("127.0.0.1:9001", &b1)
                .replace("127.0.0.1:9002", &b2)
                .replace("127.0.0.1:6188", &listen_addr)
                .replace("127.0.0.1:6189", &admin_addr)
                .replace("/tmp/sticky-proxy-demo", &format!("{}/demo", dir.display()))
        },
        vec![listen, admin],
    )
    .await;
    // Wait until both backends answer through the proxy: under load the backends can start
    // after the proxy's first health probes, and a backend marked down needs `rise` good probes.
    let answered = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let both_up = eventually(std::time::Duration::from_secs(15), || async {
        let body = curl(&[&proxy.url("/")]);
        if body.starts_with("hello") {
            answered.borrow_mut().insert(body.trim().to_string());
        }
        answered.borrow().len() == 2
    })
    .await;
    assert!(both_up, "backends seen through the proxy: {answered:?}");

    let first = curl(&["-i", &proxy.url("/")]);
    let cookie = first
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: ARRAffinity="))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no ARRAffinity cookie in:\n{first}"))
        .to_string();
    let pinned = first.lines().last().unwrap().to_string();
    assert!(pinned.starts_with("hello iis"), "{first}");
    for _ in 0..5 {
        assert_eq!(
            curl(&["-b", &format!("ARRAffinity={cookie}"), &proxy.url("/")]).trim(),
            pinned
        );
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(curl(&[&proxy.url("/")]).trim().to_string());
    }
    assert_ne!(seen[0], seen[1], "{seen:?}");
    assert_ne!(seen[1], seen[2], "{seen:?}");
    let opt_out = curl(&["-i", &proxy.url("/disable-affinity")]);
    assert!(opt_out.contains("hello iis"), "{opt_out}");
    assert!(!opt_out.contains("ARRAffinity"), "{opt_out}");
    assert!(
        !opt_out
            .to_ascii_lowercase()
            .contains("arr-disable-session-affinity"),
        "{opt_out}"
    );
    assert!(
        !opt_out.contains("X-ServerName") && !opt_out.contains("X-Powered-By"),
        "{opt_out}"
    );
    // The admin listener of the demo answers too.
    let metrics = curl(&[&format!("http://{admin_addr}/metrics")]);
    assert!(metrics.contains("sticky_requests_total"), "{metrics}");
    drop(backends);
}
