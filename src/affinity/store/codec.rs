//! How a session is written in Redis: its key (the table's hash of the id, never the id) and
//! its value (when it was created, and the backend by its configured name).

use crate::affinity::sessions::SessionKey;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `<base><32 hex digits>`.
pub fn redis_key(base: &str, key: SessionKey) -> String {
    format!("{base}{key:032x}")
}

/// `<created unix seconds> <backend name>`.
pub fn encode_value(created_unix: u64, name: &str) -> String {
    format!("{created_unix} {name}")
}

/// The backend index a stored value names; `None` for an unknown name, a malformed value, or
/// an entry older than `max_lifetime`.
pub fn decode_value(
    value: &str,
    names: &[String],
    max_lifetime: Option<Duration>,
    now_unix: u64,
) -> Option<usize> {
    let (created, name) = value.split_once(' ')?;
    let created: u64 = created.parse().ok()?;
    if max_lifetime.is_some_and(|l| now_unix.saturating_sub(created) >= l.as_secs()) {
        return None;
    }
    names.iter().position(|n| n == name)
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_the_hash_not_the_id() {
        let key = crate::affinity::sessions::key_of(b"secret-session-id");
        let k = redis_key("sticky:web:learn:", key);
        assert!(k.starts_with("sticky:web:learn:"));
        assert_eq!(k.len(), "sticky:web:learn:".len() + 32);
        assert!(!k.contains("secret"));
    }

    #[test]
    fn values_name_the_backend_and_unknown_or_old_ones_are_misses() {
        let names = vec!["iis1".to_string(), "iis two".to_string()];
        let v = encode_value(1000, "iis two");
        assert_eq!(decode_value(&v, &names, None, 5000), Some(1));
        assert_eq!(decode_value("1000 iis1", &names, None, 1000), Some(0));
        assert_eq!(decode_value("1000 iis9", &names, None, 1000), None);
        assert_eq!(decode_value("iis1", &names, None, 1000), None);
        assert_eq!(decode_value("x iis1", &names, None, 1000), None);
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(
            decode_value("1000 iis1", &names, day, 1000 + 86_399),
            Some(0)
        );
        assert_eq!(decode_value("1000 iis1", &names, day, 1000 + 86_400), None);
    }
}
