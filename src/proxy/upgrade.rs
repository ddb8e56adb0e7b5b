//! Upgrade (WebSocket) requests on the hooks' side: their peer is gated
//! ([`crate::pool::upgrade_gate`]) in `upstream_peer`, the gate armed in
//! `connected_to_upstream`; and a test-only delay of the upgrade request's end.
//!
//! The delay: with `STICKY_PROXY_TEST_UPGRADE_BODY_DELAY_MS=<ms>` in the environment at
//! start-up, `request_body_filter` waits that long before the end of an upgrade request's body
//! is passed to Pingora's relay. The backend's `101` is then always read before that end, the
//! order in which Pingora 0.9.1 closes the tunnel right after the `101`: the tests use it to
//! show that the gate prevents it every time, not by chance. It slows every WebSocket opening
//! and is for tests only; unset (always in production), nothing is delayed.

use crate::pool::upgrade_gate::Gate;
use std::os::fd::RawFd;
use std::time::Duration;

/// The environment variable of the test-only delay (milliseconds).
pub const TEST_BODY_DELAY_ENV: &str = "STICKY_PROXY_TEST_UPGRADE_BODY_DELAY_MS";

/// The test-only delay from the environment (read once, at start-up); warns when set.
pub fn test_body_delay_from_env() -> Option<Duration> {
    let value = std::env::var(TEST_BODY_DELAY_ENV).ok();
    let delay = parse_test_body_delay(value.as_deref());
    if let Some(delay) = delay {
        log::warn!(
            "{TEST_BODY_DELAY_ENV}={}: every WebSocket opening is delayed (a test aid)",
            delay.as_millis()
        );
    }
    delay
}

/// A whole number of milliseconds above 0, else no delay.
pub fn parse_test_body_delay(value: Option<&str>) -> Option<Duration> {
    let ms: u64 = value?.trim().parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// In `connected_to_upstream`: arm the upgrade's gate; the socket to register for closing
/// (Pingora reports -1 for our connector's socket, the gate knows the real one).
pub fn connected(gate: &Gate, reported_fd: RawFd) -> RawFd {
    gate.arm();
    gate.fd().unwrap_or(reported_fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_delay_is_a_positive_number_of_milliseconds_or_nothing() {
        assert_eq!(
            parse_test_body_delay(Some("5")),
            Some(Duration::from_millis(5))
        );
        assert_eq!(
            parse_test_body_delay(Some(" 20 ")),
            Some(Duration::from_millis(20))
        );
        for nothing in [
            None,
            Some(""),
            Some("0"),
            Some("-3"),
            Some("5ms"),
            Some("x"),
        ] {
            assert_eq!(parse_test_body_delay(nothing), None, "{nothing:?}");
        }
    }

    #[test]
    fn an_armed_gate_gives_the_socket_it_knows_or_the_reported_one() {
        let gate = Gate::new(Duration::from_secs(1));
        assert_eq!(connected(&gate, -1), -1, "not connected by the gate");
    }
}
