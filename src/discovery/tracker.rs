//! What one pool's discovery knows between rounds: the last delivered set and whether the
//! resolver is failing. Decides what reaches the sink, what is logged and what is counted;
//! no I/O, so the rules are unit-tested here.

use pingora_prometheus::prometheus::IntCounter;
use std::net::SocketAddr;

/// The state of one pool's discovery across rounds.
pub struct Tracker {
    pool: String,
    name: String,
    failures: IntCounter,
    last: Option<Vec<SocketAddr>>,
    /// Failed rounds in the current streak (0: answering).
    streak: u64,
}

impl Tracker {
    /// Nothing known yet about `name` (the DNS name) for `pool`.
    pub fn new(pool: &str, name: &str, failures: IntCounter) -> Self {
        Tracker {
            pool: pool.to_string(),
            name: name.to_string(),
            failures,
            last: None,
            streak: 0,
        }
    }

    /// One round's outcome: the addresses found (any order, duplicates allowed; empty counts
    /// as a failure) or why the round failed. Returns the set to deliver when it differs from
    /// the last one delivered; `None` otherwise (unchanged, or failed).
    pub fn answered(&mut self, result: Result<Vec<SocketAddr>, String>) -> Option<Vec<SocketAddr>> {
        let mut addrs = match result {
            Ok(addrs) if addrs.is_empty() => return self.failed("an empty answer".into()),
            Ok(addrs) => addrs,
            Err(why) => return self.failed(why),
        };
        addrs.sort();
        addrs.dedup();
        if self.streak > 0 {
            log::info!(
                "pool {}: DNS discovery of {} answers again after {} failed round(s): {} address(es)",
                self.pool,
                self.name,
                self.streak,
                addrs.len()
            );
            self.streak = 0;
        }
        if self.last.as_ref() == Some(&addrs) {
            return None;
        }
        log::info!(
            "pool {}: DNS discovery of {}: {} backend(s): {}",
            self.pool,
            self.name,
            addrs.len(),
            addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.last = Some(addrs.clone());
        Some(addrs)
    }

    fn failed(&mut self, why: String) -> Option<Vec<SocketAddr>> {
        self.failures.inc();
        self.streak += 1;
        let kept = match &self.last {
            Some(last) => format!("keeping the last known {} backend(s)", last.len()),
            None => "no backend discovered yet".to_string(),
        };
        if self.streak == 1 {
            log::warn!(
                "pool {}: DNS discovery of {} failed: {why}; {kept}",
                self.pool,
                self.name
            );
        } else {
            log::debug!(
                "pool {}: DNS discovery of {} failed again ({}): {why}",
                self.pool,
                self.name,
                self.streak
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn tracker() -> Tracker {
        Tracker::new("web", "app.internal", IntCounter::new("f", "f").unwrap())
    }

    #[test]
    fn the_first_answer_is_delivered_sorted_without_duplicates() {
        let mut t = tracker();
        let got = t.answered(Ok(addrs(&[
            "10.0.0.2:80",
            "[::1]:80",
            "10.0.0.1:80",
            "10.0.0.2:80",
        ])));
        assert_eq!(
            got,
            Some(addrs(&["10.0.0.1:80", "10.0.0.2:80", "[::1]:80"]))
        );
    }

    #[test]
    fn an_unchanged_answer_in_another_order_is_not_delivered_again() {
        let mut t = tracker();
        assert!(t
            .answered(Ok(addrs(&["10.0.0.1:80", "10.0.0.2:80"])))
            .is_some());
        assert_eq!(t.answered(Ok(addrs(&["10.0.0.2:80", "10.0.0.1:80"]))), None);
        assert_eq!(
            t.answered(Ok(addrs(&["10.0.0.2:80"]))),
            Some(addrs(&["10.0.0.2:80"]))
        );
    }

    #[test]
    fn failures_and_empty_answers_keep_the_last_set_and_are_counted() {
        let mut t = tracker();
        let first = addrs(&["10.0.0.1:80"]);
        assert!(t.answered(Ok(first.clone())).is_some());
        assert_eq!(t.answered(Err("timed out".into())), None);
        assert_eq!(t.answered(Ok(Vec::new())), None);
        assert_eq!(t.failures.get(), 2);
        assert_eq!(t.last.as_deref(), Some(&first[..]));
        // The same answer after the streak: nothing to deliver, the streak is over.
        assert_eq!(t.answered(Ok(first.clone())), None);
        assert_eq!(t.streak, 0);
        assert!(t.answered(Ok(addrs(&["10.0.0.3:80"]))).is_some());
    }
}
