//! Slow start (HAProxy `slowstart`, NGINX Plus `slow_start`): a backend that comes back —
//! healthy again after failing its checks, or set `active` again from `draining` or `disabled` —
//! takes a share of the new sessions it would get at full weight that grows linearly from
//! [`MIN_SHARE`] to 1 over the pool's `slow_start_seconds`. Not at process start (as HAProxy:
//! a proxy that restarts must not starve its running backends).
//!
//! The ramp is applied where the balancer offers a backend for a new session (the `accept` of
//! `select_with`): a ramping backend is accepted for a fraction `share` of its offers, and the
//! offer otherwise goes on to the next backend. Which offers are accepted is deterministic: the
//! pool's pick counter walks a Weyl sequence (golden-ratio steps), whose points are spread so
//! evenly over [0, 1) that the accepted fraction is within a few picks of `share` over any
//! window. Returning sessions (cookie, session tables, hash keys) never pass here.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The share a backend starts its ramp with (HAProxy starts at one unit of its weight scale).
pub const MIN_SHARE: f64 = 0.01;

/// The share of its full new-session share that a backend that became usable `elapsed` ago
/// takes during a slow start of `slow_start`: linear from [`MIN_SHARE`] to 1, then 1.
pub fn share(elapsed: Duration, slow_start: Duration) -> f64 {
    if slow_start.is_zero() || elapsed >= slow_start {
        return 1.0;
    }
    (elapsed.as_secs_f64() / slow_start.as_secs_f64()).clamp(MIN_SHARE, 1.0)
}

/// The Weyl point for pick `pick` and backend `index`, in [0, 1): consecutive picks step by
/// the golden ratio's fraction; backends start at different offsets so that two backends
/// ramping together are not accepted on the same picks.
pub fn point(pick: u64, index: usize) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    const SILVER: f64 = 0.414_213_562_373_095_1;
    // Reduced modulo 2^32 so that the product keeps its fractional precision.
    let p = (pick & 0xffff_ffff) as f64 * GOLDEN + (index as f64) * SILVER;
    p - p.floor()
}

/// Does a ramping backend at `share` accept the offer of pick `pick`?
pub fn admits(share: f64, pick: u64, index: usize) -> bool {
    share >= 1.0 || point(pick, index) < share
}

/// Milliseconds on a monotonic clock that starts at 1 with the first call (0 stays free to
/// mean "never").
pub fn monotonic_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_ramps_linearly_from_a_small_floor_to_one_and_stays_there() {
        let ramp = Duration::from_secs(100);
        assert_eq!(share(Duration::ZERO, ramp), MIN_SHARE);
        assert!((share(Duration::from_secs(25), ramp) - 0.25).abs() < 1e-9);
        assert!((share(Duration::from_secs(50), ramp) - 0.5).abs() < 1e-9);
        assert_eq!(share(Duration::from_secs(100), ramp), 1.0);
        assert_eq!(share(Duration::from_secs(1000), ramp), 1.0);
        assert_eq!(share(Duration::ZERO, Duration::ZERO), 1.0);
        let mut last = 0.0;
        for s in 0..=100 {
            let now = share(Duration::from_secs(s), ramp);
            assert!(now >= last, "never decreases");
            last = now;
        }
    }

    #[test]
    fn accepted_offers_follow_the_share_within_a_few_picks_over_any_window() {
        for index in [0, 1, 7] {
            for share in [0.01, 0.1, 0.25, 0.5, 0.9] {
                for (start, len) in [(0u64, 100u64), (12_345, 1000), (u32::MAX as u64 - 50, 200)] {
                    let accepted = (start..start + len)
                        .filter(|pick| admits(share, *pick, index))
                        .count() as f64;
                    let expected = share * len as f64;
                    assert!(
                        (accepted - expected).abs() <= 3.0,
                        "share {share}, backend {index}, picks {start}+{len}: {accepted} accepted"
                    );
                }
            }
        }
        assert!((0..1000).all(|pick| admits(1.0, pick, 3)));
    }

    #[test]
    fn offers_every_third_pick_are_accepted_at_the_share_too() {
        // Round robin over three backends offers a ramping one every third pick.
        let accepted = (0..3000u64)
            .map(|k| 3 * k + 2)
            .filter(|pick| admits(0.3, *pick, 2))
            .count();
        assert!((880..=920).contains(&accepted), "{accepted} of 3000");
    }

    #[test]
    fn the_monotonic_clock_starts_above_zero_and_never_goes_back() {
        let a = monotonic_ms();
        let b = monotonic_ms();
        assert!(a >= 1 && b >= a);
    }
}
