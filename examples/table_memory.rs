//! Measures the memory of the learned-session table: fills it with 1,000,000 entries and reports
//! the growth of the process's resident set per entry. `cargo run --release --example
//! table_memory` (figures go to benches/README.md).

use std::time::Duration;
use sticky_proxy::affinity::sessions::{key_of, SessionTable};
use sticky_proxy::config::TableConfig;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let entries: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let table = SessionTable::new(TableConfig {
        capacity: entries,
        idle_timeout: Duration::from_secs(3600),
        max_lifetime: None,
    });
    let before = rss_kib();
    for i in 0..entries {
        // A realistic 32-character session id; the table stores only its 16-byte hash.
        let id = format!("{i:032X}");
        table.insert(key_of(id.as_bytes()), (i % 3) as usize);
    }
    let after = rss_kib();
    let stats = table.stats();
    let per_entry = (after.saturating_sub(before) as f64 * 1024.0) / stats.entries.max(1) as f64;
    println!(
        "entries: {}  rss before: {before} KiB  after: {after} KiB  growth per entry: {per_entry:.0} bytes (a 32-byte id itself is not stored; its key is 16 bytes)",
        stats.entries
    );
}
