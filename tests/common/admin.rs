//! The set-up of the dashboard's tests: the demo's three backends behind a proxy with an admin
//! listener and its token, and reading `/api/pools/web`.
#![allow(dead_code)]

use super::*;
use serde_json::Value;
use std::time::Duration;

/// The admin token of [`start_with_admin`].
pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

/// A directory with the admin token ([`ADMIN_TOKEN`], in `token`) and room for a state file
/// (`state.json`): outlives the proxy processes of a test.
pub struct Place {
    pub dir: tempfile::TempDir,
}

impl Place {
    pub fn new() -> Place {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{ADMIN_TOKEN}\n")).unwrap();
        Place { dir }
    }

    pub fn token_file(&self) -> std::path::PathBuf {
        self.dir.path().join("token")
    }

    pub fn state_file(&self) -> std::path::PathBuf {
        self.dir.path().join("state.json")
    }
}

/// One pool of three backends (`iis3` disabled in the file) with the keyed cookie and a learned
/// `JSESSIONID` table whose Redis store is down (nothing listens on port 1), and an admin
/// listener whose token is in a file.
pub fn admin_section(backends: &[TestBackend; 3], token_file: &std::path::Path) -> String {
    let [b1, b2, b3] = backends;
    format!(
        "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n  admin: {{ addr: \"{{admin}}\", token_file: \"{}\" }}\n  pools:\n    - name: web\n      backends: [{}, {}, {{ name: {}, addr: \"{}\", state: disabled }}]\n      affinity:\n        cookie: {{ secret: test-secret-0123456789abcdef }}\n        learn: {{ presets: [j2ee], store: {{ type: redis, address: \"127.0.0.1:1\" }} }}\n",
        token_file.display(),
        b1.yaml(),
        b2.yaml(),
        b3.name,
        b3.addr
    )
}

/// The demo's three backends and a proxy with the admin token; waits for the admin listener.
pub async fn start_with_admin() -> ([TestBackend; 3], Proxy, tempfile::TempDir) {
    let backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let proxy = Proxy::start(&admin_section(&backends, &token_file)).await;
    wait_for_admin(&proxy).await;
    (backends, proxy, token_dir)
}

pub async fn wait_for_admin(proxy: &Proxy) {
    let client = client();
    let up = eventually(Duration::from_secs(10), || async {
        client.get(proxy.admin_url("/healthz")).send().await.is_ok()
    })
    .await;
    assert!(up, "admin listener up:\n{}", proxy.log());
}

/// `/api/pools/web` as JSON.
pub async fn pool_view(proxy: &Proxy) -> Value {
    let reply = get(&client(), &proxy.admin_url("/api/pools/web"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

/// The state of `backend` in `/api/pools/web`.
pub async fn state_of(proxy: &Proxy, backend: &str) -> String {
    let pool = pool_view(proxy).await;
    let found = pool["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == backend)
        .unwrap_or_else(|| panic!("no {backend} in {pool}"));
    found["state"].as_str().unwrap().to_string()
}
