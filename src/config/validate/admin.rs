//! Checks `sticky.admin` (address, token) and says, as a start-up warning, when the admin
//! listener is bound beyond loopback.

use super::{parse_addr, Result};
use crate::config::raw::RawAdmin;
use crate::config::{AdminConfig, ConfigError};

/// The shortest accepted admin token, in bytes.
const MIN_TOKEN_LEN: usize = 16;

pub(super) fn validate_admin(raw: RawAdmin) -> Result<AdminConfig> {
    let addr = parse_addr("sticky.admin.addr", &raw.addr)?;
    let token = match (&raw.token_file, &raw.token_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "sticky.admin.token_file",
                "give token_file or token_env, not both",
            ))
        }
        (Some(path), None) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    "sticky.admin.token_file",
                    format!("cannot read {path:?}: {e}"),
                )
            })?;
            Some(("sticky.admin.token_file", text.trim().to_string()))
        }
        (None, Some(var)) => {
            let value = std::env::var(var).map_err(|_| {
                ConfigError::new(
                    "sticky.admin.token_env",
                    format!("environment variable {var:?} is not set"),
                )
            })?;
            Some(("sticky.admin.token_env", value.trim().to_string()))
        }
        (None, None) => None,
    };
    if let Some((field, token)) = &token {
        if token.len() < MIN_TOKEN_LEN {
            return Err(ConfigError::new(
                *field,
                format!(
                    "token too short: {} bytes, at least {MIN_TOKEN_LEN} required",
                    token.len()
                ),
            ));
        }
    }
    Ok(AdminConfig {
        addr,
        token: token.map(|(_, t)| t),
        allow_remote: raw.allow_remote,
    })
}

/// The warning for an admin listener bound to an address other machines may reach (any but
/// loopback, `0.0.0.0` and `[::]` included): what it exposes, and what guards it.
pub(super) fn exposure_warning(admin: &AdminConfig) -> Option<String> {
    if admin.addr.ip().to_canonical().is_loopback() {
        return None;
    }
    let guard = if admin.allow_remote {
        "with allow_remote: true, other machines holding the token can read it and drain or \
         disable backends (without a token, only /healthz and /readyz): keep the port behind a \
         firewall"
    } else {
        "other machines get 403 (allow_remote: false), but only a firewall keeps them from \
         the port"
    };
    Some(format!(
        "sticky.admin.addr: \"{}\" is not a loopback address: the admin API (backend \
         addresses, session tables, backend states) listens for other machines; {guard}. Bind \
         127.0.0.1 unless it must be reached from elsewhere",
        admin.addr
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_admin_listener_beyond_loopback_gets_a_warning() {
        let admin = |addr: &str, allow_remote: bool| AdminConfig {
            addr: addr.parse().unwrap(),
            token: None,
            allow_remote,
        };
        for quiet in [
            "127.0.0.1:6189",
            "127.0.0.2:6189",
            "[::1]:6189",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert_eq!(exposure_warning(&admin(quiet, false)), None, "{quiet}");
        }
        for exposed in [
            "0.0.0.0:6189",
            "[::]:6189",
            "10.0.0.5:6189",
            "[2001:db8::1]:6189",
        ] {
            for allow_remote in [false, true] {
                let warning = exposure_warning(&admin(exposed, allow_remote)).unwrap();
                assert!(warning.starts_with("sticky.admin.addr: "), "{warning}");
                assert!(warning.contains(exposed), "{warning}");
                assert!(warning.contains("other machines"), "{warning}");
                assert!(
                    warning.contains(&format!("allow_remote: {allow_remote}")),
                    "{warning}"
                );
            }
        }
    }
}
