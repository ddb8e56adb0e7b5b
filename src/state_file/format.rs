//! The state file's format and its atomic write. A versioned JSON document:
//! `{"version": 1, "pools": {"web": {"backends": {"iis2": {"state": "draining"}}}}}` — per pool,
//! per backend name, what the admin API set; a backend added through the API also has its
//! `addr` and `weight`, one removed through it `"removed": true`. Unknown keys inside a version
//! are ignored (room for what later versions of version 1 add); another `version` is refused as
//! a whole.

use crate::config::BackendState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The version this proxy writes and reads.
pub const VERSION: u64 = 1;

/// The whole file.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub version: u64,
    #[serde(default)]
    pub pools: BTreeMap<String, PoolEntry>,
}

/// One pool's backends, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolEntry {
    #[serde(default)]
    pub backends: BTreeMap<String, BackendEntry>,
}

/// One backend's recorded state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendEntry {
    pub state: BackendState,
    /// Added (or re-added elsewhere) through the admin API: where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<std::net::SocketAddr>,
    /// Added through the admin API: its weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Removed through the admin API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

impl BackendEntry {
    /// An entry that only records a state.
    pub fn state(state: BackendState) -> Self {
        BackendEntry {
            state,
            addr: None,
            weight: None,
            removed: false,
        }
    }
}

/// Parse a file's text: the document, or why it cannot be used (one line).
pub fn parse(text: &str) -> Result<Document, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("not a JSON object".into());
    };
    match object.get("version") {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
        Some(other) => {
            return Err(format!(
                "version {other} is not one this proxy reads (it reads version {VERSION})"
            ))
        }
        None => {
            return Err(format!(
                "no \"version\" (this proxy reads version {VERSION})"
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| format!("not a version {VERSION} state file: {e}"))
}

/// Write `document` to `path` atomically: a temporary file in the same directory (named after
/// the file and this process, so two processes never share one), written, flushed to disk,
/// renamed over `path`, and the directory flushed so that the rename itself survives a crash.
pub fn write_atomically(path: &Path, document: &Document) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(document).map_err(std::io::Error::other)?;
    text.push(b'\n');
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
        return written;
    }
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_survives_its_own_write_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut document = Document {
            version: VERSION,
            ..Document::default()
        };
        document
            .pools
            .entry("web".into())
            .or_default()
            .backends
            .insert("iis2".into(), BackendEntry::state(BackendState::Draining));
        write_atomically(&path, &document).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(parse(&text).unwrap(), document);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_file_that_is_not_version_1_json_is_refused_with_the_reason() {
        for (text, expected) in [
            ("not json", "not JSON"),
            ("[1]", "not a JSON object"),
            ("{}", "no \"version\""),
            ("{\"version\": 2, \"pools\": {}}", "version 2 is not one"),
            ("{\"version\": \"1\"}", "version \"1\" is not one"),
            (
                "{\"version\": 1, \"pools\": {\"web\": {\"backends\": {\"a\": {\"state\": \"gone\"}}}}}",
                "not a version 1 state file",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
        }
        let extra = "{\"version\": 1, \"later\": true, \"pools\": {\"web\": {\"backends\": {\"a\": {\"state\": \"disabled\", \"note\": \"x\"}}}}}";
        assert!(
            parse(extra).is_ok(),
            "unknown keys inside version 1 are ignored"
        );
    }
}
