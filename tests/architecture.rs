//! The layers of `src/` import in one direction only, as docs/architecture.md's table says:
//! this test reads every source file's `crate::…` paths (outside comments and unit-test
//! modules) and fails on a path a layer may not use, naming the file and the line. It also
//! keeps the layout's house rules: every file starts with a `//!` line saying what it owns,
//! and no file reaches 450 lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module, and the modules it may import (besides itself). The same table as
/// docs/architecture.md.
const LAYERS: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("headers", &[]),
    ("demo", &[]),
    ("access_log", &["config"]),
    ("lifecycle", &["config"]),
    ("sockets", &["config"]),
    ("tls", &["config"]),
    ("pool", &["config", "headers", "tls"]),
    ("affinity", &["config", "headers", "pool"]),
    ("state_file", &["config", "pool"]),
    ("metrics", &["config", "affinity", "pool"]),
    ("filter", &["affinity"]),
    ("extension", &["config", "affinity", "filter"]),
    ("discovery", &["config"]),
    (
        "membership",
        &["config", "pool", "affinity", "metrics", "state_file"],
    ),
    (
        "proxy",
        &[
            "config",
            "headers",
            "tls",
            "access_log",
            "lifecycle",
            "pool",
            "affinity",
            "metrics",
            "filter",
        ],
    ),
    (
        "admin",
        &[
            "config",
            "lifecycle",
            "pool",
            "affinity",
            "metrics",
            "state_file",
            "membership",
        ],
    ),
    (
        "server",
        &[
            "config",
            "headers",
            "tls",
            "access_log",
            "lifecycle",
            "sockets",
            "pool",
            "state_file",
            "affinity",
            "metrics",
            "extension",
            "filter",
            "proxy",
            "admin",
            "membership",
            "discovery",
        ],
    ),
    (
        "embed",
        &[
            "config",
            "headers",
            "tls",
            "pool",
            "affinity",
            "metrics",
            "extension",
            "filter",
            "proxy",
            "server",
        ],
    ),
];

/// Files that may import anything: the crate root and the binaries.
const ROOTS: &[&str] = &["lib.rs", "main.rs", "bin"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`src/pool/ring.rs` → `pool`).
fn module_of(relative: &Path) -> String {
    let first = relative.components().next().unwrap();
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// The code of a file without its unit-test modules (test files under a `tests.rs` are
/// skipped whole by the caller) and without comments.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or_default();
        lines.push((number + 1, code.to_string()));
    }
    lines
}

fn imported_modules(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        found.push(name);
    }
    found
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap();
        let module = module_of(relative);
        if ROOTS.contains(&module.as_str()) || ROOTS.contains(&format!("{module}.rs").as_str()) {
            continue;
        }
        if relative.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let Some(may) = allowed.get(module.as_str()) else {
            wrong.push(format!(
                "{}: module `{module}` has no row in the layer table",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (number, code) in code_lines(&text) {
            for used in imported_modules(&code) {
                if used != module && !may.contains(&used.as_str()) {
                    wrong.push(format!(
                        "{}:{number}: `{module}` may not import `crate::{used}`",
                        relative.display()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_source_file_says_what_it_owns_and_stays_under_450_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        if !text.starts_with("//!") {
            wrong.push(format!("{name}: no `//!` line saying what it owns"));
        }
        let lines = text.lines().count();
        if lines >= 450 {
            wrong.push(format!("{name}: {lines} lines"));
        }
        // One module style: `foo/mod.rs`, never `foo.rs` beside `foo/`.
        if file.extension().is_some_and(|e| e == "rs") && file.with_extension("").is_dir() {
            wrong.push(format!(
                "{name}: beside a directory of the same name (use mod.rs)"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
