//! Checks `sticky.state_file`: a file name in a directory that exists, made absolute against the
//! working directory at start (a daemonized process runs in `/`).

use super::Result;
use crate::config::ConfigError;
use std::path::{Path, PathBuf};

const FIELD: &str = "sticky.state_file";

pub(super) fn validate(raw: &str) -> Result<PathBuf> {
    let error = |what: String| Err(ConfigError::new(FIELD, what));
    if raw.trim().is_empty() {
        return error("must not be empty (leave the key out to keep no state file)".into());
    }
    if raw.contains('\0') {
        return error(format!("{raw:?}: not a path (contains a NUL byte)"));
    }
    let path = Path::new(raw);
    let named_file = path
        .file_name()
        .is_some_and(|name| name != "." && name != "..")
        && !raw.ends_with('/');
    if !named_file {
        return error(format!("{raw:?}: names a directory, not a file"));
    }
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(dir) => dir.join(path),
            Err(e) => {
                return error(format!(
                    "{raw:?}: relative, and the working directory is unknown: {e}"
                ))
            }
        }
    };
    if path.is_dir() {
        return error(format!("{raw:?}: is a directory, not a file"));
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return error(format!(
            "{raw:?}: its directory {:?} does not exist",
            dir.display().to_string()
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn a_state_file_must_name_a_file_in_a_directory_that_exists() {
        assert!(validate("/tmp/sticky-state.json").is_ok());
        let relative = validate("sticky-state.json").unwrap();
        assert!(relative.is_absolute(), "{relative:?}");
        for (raw, expected) in [
            ("", "must not be empty"),
            ("/tmp/", "names a directory"),
            ("/tmp/..", "names a directory"),
            ("/tmp", "is a directory"),
            ("/nonexistent-dir/state.json", "does not exist"),
        ] {
            let e = validate(raw).unwrap_err();
            assert_eq!(e.field, "sticky.state_file");
            assert!(e.message.contains(expected), "{raw:?}: {}", e.message);
        }
    }
}
