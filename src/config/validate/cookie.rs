//! Validation of an affinity section's `cookie:`: name and attributes, the value format and
//! its secret, and the lifetimes the proxy enforces (`keyed` only).

use super::super::raw::{RawCookie, RawCookieFormat, RawSameSite};
use super::super::{
    ConfigError, CookieConfig, CookieFormat, CookieLifetimes, SameSite, MAX_LIFETIME_SECONDS,
};
use super::{check_attribute_value, check_cookie_name, Result, MIN_SECRET_LEN};
use std::time::Duration;

pub(super) fn validate_cookie(field: &str, raw: RawCookie) -> Result<CookieConfig> {
    check_cookie_name(&format!("{field}.name"), &raw.name)?;
    if let Some(twin) = &raw.same_site_none_twin {
        check_cookie_name(&format!("{field}.same_site_none_twin"), twin)?;
        if twin == &raw.name {
            return Err(ConfigError::new(
                format!("{field}.same_site_none_twin"),
                format!("must differ from the cookie name: {twin:?}"),
            ));
        }
    }
    check_attribute_value(&format!("{field}.path"), &raw.path)?;
    if !raw.path.starts_with('/') {
        return Err(ConfigError::new(
            format!("{field}.path"),
            format!("must start with '/': {:?}", raw.path),
        ));
    }
    if let Some(domain) = &raw.domain {
        check_attribute_value(&format!("{field}.domain"), domain)?;
        if domain.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.domain"),
                "must not be empty",
            ));
        }
    }
    let same_site = raw.same_site.map(|s| match s {
        RawSameSite::Lax => SameSite::Lax,
        RawSameSite::Strict => SameSite::Strict,
        RawSameSite::None => SameSite::None,
    });
    if same_site == Some(SameSite::None) && raw.secure == Some(false) {
        return Err(ConfigError::new(
            format!("{field}.same_site"),
            "\"none\" requires Secure: remove secure: false (browsers drop SameSite=None cookies without Secure)",
        ));
    }
    if raw.max_age_seconds == Some(0) {
        return Err(ConfigError::new(
            format!("{field}.max_age_seconds"),
            "0 would delete the cookie at once; leave it out for a session cookie",
        ));
    }
    let format = match raw.format {
        RawCookieFormat::Arr => {
            if raw.secret.is_some() || raw.secret_file.is_some() || raw.secret_env.is_some() {
                return Err(ConfigError::new(
                    format!("{field}.format"),
                    "\"arr\" takes no secret; remove secret/secret_file/secret_env or use \"keyed\"",
                ));
            }
            CookieFormat::Arr
        }
        RawCookieFormat::Keyed => CookieFormat::Keyed {
            secret: load_secret(field, &raw)?,
        },
    };
    let lifetimes = validate_lifetimes(field, &raw)?;
    Ok(CookieConfig {
        lifetimes,
        name: raw.name,
        format,
        path: raw.path,
        domain: raw.domain,
        http_only: raw.http_only,
        secure: raw.secure,
        same_site,
        max_age: raw.max_age_seconds.map(Duration::from_secs),
        twin_name: raw.same_site_none_twin,
        indirect: raw.indirect,
        nocache: raw.nocache,
    })
}

/// `max_idle_seconds`, `max_life_seconds`, `accept_undated`: only with `keyed` (an `arr` value
/// is ARR's fixed hash and cannot carry dates), each lifetime 1 s to 3650 days, `max_life` at
/// least `max_idle` (else the idle limit could never apply).
fn validate_lifetimes(field: &str, raw: &RawCookie) -> Result<Option<CookieLifetimes>> {
    let seconds = |key: &str, value: Option<u64>| -> Result<Option<Duration>> {
        let Some(value) = value else {
            return Ok(None);
        };
        if raw.format == RawCookieFormat::Arr {
            return Err(ConfigError::new(
                format!("{field}.{key}"),
                "needs format \"keyed\": an \"arr\" value is ARR's fixed hash of the name and cannot carry dates",
            ));
        }
        if value == 0 || value > MAX_LIFETIME_SECONDS {
            return Err(ConfigError::new(
                format!("{field}.{key}"),
                format!("must be between 1 and {MAX_LIFETIME_SECONDS} (3650 days): {value}"),
            ));
        }
        Ok(Some(Duration::from_secs(value)))
    };
    let max_idle = seconds("max_idle_seconds", raw.max_idle_seconds)?;
    let max_life = seconds("max_life_seconds", raw.max_life_seconds)?;
    if let (Some(idle), Some(life)) = (max_idle, max_life) {
        if life < idle {
            return Err(ConfigError::new(
                format!("{field}.max_life_seconds"),
                format!(
                    "{} is shorter than max_idle_seconds ({}): the idle limit could never apply",
                    life.as_secs(),
                    idle.as_secs()
                ),
            ));
        }
    }
    if max_idle.is_none() && max_life.is_none() {
        if raw.accept_undated.is_some() {
            return Err(ConfigError::new(
                format!("{field}.accept_undated"),
                "only with max_idle_seconds or max_life_seconds (without them no value carries dates)",
            ));
        }
        return Ok(None);
    }
    Ok(Some(CookieLifetimes {
        max_idle,
        max_life,
        accept_undated: raw.accept_undated.unwrap_or(true),
    }))
}

fn load_secret(field: &str, raw: &RawCookie) -> Result<Vec<u8>> {
    let given = [
        raw.secret.is_some(),
        raw.secret_file.is_some(),
        raw.secret_env.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        return Err(ConfigError::new(
            format!("{field}.secret"),
            "format \"keyed\" needs exactly one of secret, secret_file, secret_env",
        ));
    }
    let (secret_field, secret) = if let Some(s) = &raw.secret {
        (format!("{field}.secret"), s.clone())
    } else if let Some(path) = &raw.secret_file {
        let f = format!("{field}.secret_file");
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&f, format!("cannot read {path:?}: {e}")))?;
        (f, text.trim_end_matches(['\r', '\n']).to_string())
    } else {
        let var = raw.secret_env.as_deref().unwrap_or_default();
        let f = format!("{field}.secret_env");
        let value = std::env::var(var).map_err(|_| {
            ConfigError::new(&f, format!("environment variable {var:?} is not set"))
        })?;
        (f, value)
    };
    if secret.len() < MIN_SECRET_LEN {
        // The value itself is not echoed: it is a secret.
        return Err(ConfigError::new(
            secret_field,
            format!(
                "secret too short: {} bytes, at least {MIN_SECRET_LEN} required",
                secret.len()
            ),
        ));
    }
    Ok(secret.into_bytes())
}
