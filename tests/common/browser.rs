//! A real headless Chromium (Debian's `chromium`, installed by `scripts/setup.sh`) driven over
//! the DevTools protocol on a WebSocket (tokio-tungstenite): navigate, evaluate, wait for a
//! condition, click at an element's position, type. A missing `chromium` fails the test.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long one DevTools command may take (a hang guard, not a timing assertion).
const COMMAND_PATIENCE: Duration = Duration::from_secs(30);

/// A headless Chromium with one page, killed on drop.
pub struct Browser {
    child: Child,
    profile: tempfile::TempDir,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    /// Script exceptions and console / log errors the page produced (CSP refusals among them).
    pub errors: Vec<String>,
}

impl Browser {
    /// Start `chromium` (or `$STICKY_TEST_CHROMIUM`) headless with a fresh profile and open
    /// one blank page. Panics, failing the test, when the browser cannot be started.
    pub async fn launch() -> Browser {
        let program = std::env::var("STICKY_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(profile.path().join("chromium.log")).unwrap();
        let child = Command::new(&program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--window-size=1280,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {program:?} ({e}): the dashboard tests need Debian's chromium \
                     (scripts/setup.sh installs it)"
                )
            });
        let mut browser_child = BrowserChild(Some(child));
        // Chromium writes its DevTools port and path here once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            if let Some(status) = browser_child.try_wait() {
                panic!(
                    "{program} exited at start ({status}):\n{}",
                    read_log(profile.path())
                );
            }
            assert!(
                Instant::now() < deadline,
                "{program} never opened its DevTools port:\n{}",
                read_log(profile.path())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .unwrap_or_else(|e| panic!("DevTools connection to {endpoint}: {e}"));
        let mut browser = Browser {
            child: browser_child.0.take().unwrap(),
            profile,
            ws,
            session: String::new(),
            next_id: 0,
            errors: Vec::new(),
        };
        let target = browser
            .command("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = browser
            .command(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.command(domain, json!({})).await;
        }
        browser
    }

    /// Send one DevTools command (to the page once attached) and return its result; events that
    /// arrive meanwhile are scanned for errors. Panics on a protocol error.
    pub async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .unwrap_or_else(|e| panic!("DevTools {method}: {e}"));
        let deadline = tokio::time::Instant::now() + COMMAND_PATIENCE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await;
            let frame = match next {
                Ok(Some(Ok(frame))) => frame,
                Ok(other) => panic!("DevTools {method}: connection ended: {other:?}"),
                Err(_) => panic!("DevTools {method}: no answer in {COMMAND_PATIENCE:?}"),
            };
            let Message::Text(text) = frame else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["id"].as_u64() == Some(id) {
                if let Some(error) = value.get("error") {
                    panic!("DevTools {method} failed: {error}");
                }
                return value["result"].clone();
            }
            self.note_event(&value);
        }
    }

    /// Keep script exceptions and error-level console and log entries.
    fn note_event(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => self.errors.push(format!(
                "exception: {}",
                params["exceptionDetails"]["exception"]["description"]
                    .as_str()
                    .or(params["exceptionDetails"]["text"].as_str())
                    .unwrap_or("?")
            )),
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => self
                .errors
                .push(format!("console.error: {}", params["args"])),
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                self.errors.push(format!(
                    "log ({}): {} {}",
                    params["entry"]["source"].as_str().unwrap_or("?"),
                    params["entry"]["text"].as_str().unwrap_or("?"),
                    params["entry"]["url"].as_str().unwrap_or("")
                ))
            }
            _ => {}
        }
    }

    /// Open `url` and wait until its document has loaded.
    pub async fn goto(&mut self, url: &str) {
        self.command("Page.navigate", json!({ "url": url })).await;
        let loaded = self
            .wait_for(
                "document.readyState === 'complete'",
                Duration::from_secs(30),
            )
            .await;
        assert!(loaded, "{url} never finished loading");
    }

    /// Evaluate `expression` in the page (awaiting a promise) and return its value. Panics on a
    /// script exception.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!("{expression}: {details}");
        }
        result["result"]["value"].clone()
    }

    /// Poll `expression` until it is `true` or `timeout` passes; whether it became true.
    pub async fn wait_for(&mut self, expression: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(expression).await == Value::Bool(true) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the first element matching `selector` (`None` when there is none).
    pub async fn text(&mut self, selector: &str) -> Option<String> {
        let expression = format!(
            "(() => {{ const e = document.querySelector({}); return e ? e.textContent : null; }})()",
            json!(selector)
        );
        self.eval(&expression).await.as_str().map(str::to_string)
    }

    /// Click the middle of the element matching `selector` with the mouse, as a user does
    /// (the browser decides what is under the pointer: a disabled button takes no click).
    pub async fn click(&mut self, selector: &str) {
        let expression = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2]; }})()",
            json!(selector)
        );
        let at = self.eval(&expression).await;
        let (Some(x), Some(y)) = (at[0].as_f64(), at[1].as_f64()) else {
            panic!("nothing to click at {selector}");
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.command(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )
            .await;
        }
    }

    /// Click into the field `selector` and type `text` into it.
    pub async fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector).await;
        self.command("Input.insertText", json!({ "text": text }))
            .await;
    }

    /// Events that arrived since the last command, scanned for errors.
    pub async fn drain_events(&mut self) {
        self.command("Runtime.evaluate", json!({ "expression": "0" }))
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser process until the DevTools connection is made: killed if the start fails.
struct BrowserChild(Option<Child>);

impl BrowserChild {
    fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for BrowserChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_log(profile: &std::path::Path) -> String {
    std::fs::read_to_string(profile.join("chromium.log")).unwrap_or_default()
}
