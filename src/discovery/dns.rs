//! One pool's DNS discovery as a Pingora background service: a hickory resolver (the
//! configured nameservers, or the system's), one round per interval asking A and AAAA, the
//! outcome given to the [`Tracker`](super::tracker::Tracker), changes to the sink.
//!
//! TTL: hickory's cache answers a round while the records' TTL lasts, so the nameserver is
//! asked at most once per TTL and a change in DNS shows at most TTL + interval later (NGINX's
//! `resolve` without `valid=`). Negative answers (NXDOMAIN, no records) are cached at most one
//! interval, so a name that comes back is seen on the next round.

use super::tracker::Tracker;
use super::DiscoveredBackends;
use crate::config::DiscoveryConfig;
use async_trait::async_trait;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::TokioResolver;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_prometheus::prometheus::IntCounter;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest a nameserver is waited for in one attempt (shorter with a shorter interval).
const MAX_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// A round that takes longer than this (every attempt on every nameserver) failed.
const MAX_ROUND: Duration = Duration::from_secs(30);

/// One pool's DNS discovery (a [`BackgroundService`]): resolves on every interval until the
/// shutdown watch says stop.
pub struct DnsDiscovery {
    pool: String,
    config: DiscoveryConfig,
    sink: Arc<dyn DiscoveredBackends>,
    tracker: Mutex<Tracker>,
}

impl DnsDiscovery {
    /// Discovery for `pool` as `config` says, telling `sink` each changed answer and counting
    /// failed rounds in `failures`.
    pub fn new(
        pool: &str,
        config: DiscoveryConfig,
        sink: Arc<dyn DiscoveredBackends>,
        failures: IntCounter,
    ) -> Self {
        DnsDiscovery {
            pool: pool.to_string(),
            tracker: Mutex::new(Tracker::new(pool, &config.name, failures)),
            config,
            sink,
        }
    }

    /// One round: the addresses of the name with the configured port, or why there are none.
    async fn round(&self, resolver: &TokioResolver) -> Result<Vec<SocketAddr>, String> {
        let name = self.config.name.as_str();
        let (v4, v6) = tokio::join!(resolver.ipv4_lookup(name), resolver.ipv6_lookup(name));
        let mut ips = Vec::new();
        let mut no_records = None;
        for result in [v4, v6] {
            match result {
                Ok(lookup) => ips.extend(lookup.answers().iter().filter_map(|r| r.data.ip_addr())),
                Err(e) if e.is_no_records_found() => no_records = Some(e),
                // A timeout, SERVFAIL or REFUSED on either type fails the round: a partial
                // answer would remove the other type's backends.
                Err(e) => return Err(e.to_string()),
            }
        }
        if ips.is_empty() {
            return Err(no_records.map_or_else(|| "an empty answer".to_string(), describe));
        }
        Ok(ips
            .into_iter()
            .map(|ip: IpAddr| SocketAddr::new(ip, self.config.port))
            .collect())
    }

    fn answered(&self, result: Result<Vec<SocketAddr>, String>) {
        let changed = self
            .tracker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .answered(result);
        if let Some(addrs) = changed {
            self.sink.replace(&self.pool, &addrs, self.config.weight);
        }
    }
}

fn describe(e: NetError) -> String {
    if e.is_nx_domain() {
        "NXDOMAIN".to_string()
    } else {
        format!("no A or AAAA records ({e})")
    }
}

/// A resolver that asks `config.nameservers` (UDP, then TCP for truncated answers), or the
/// system's (`/etc/resolv.conf`) when none are given. `/etc/hosts` is not read: the answer is
/// the DNS's.
fn resolver(config: &DiscoveryConfig) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match &config.nameservers {
        Some(servers) => {
            let servers = servers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        }
        None => TokioResolver::builder(provider)
            .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?,
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.use_hosts_file = ResolveHosts::Never;
    options.timeout = config.interval.min(MAX_ATTEMPT_TIMEOUT);
    options.negative_max_ttl = Some(config.interval);
    builder
        .build()
        .map_err(|e| format!("cannot set up the resolver: {e}"))
}

/// Wait until the watch says stop (or its sender is gone).
async fn stopped(shutdown: &mut ShutdownWatch) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

#[async_trait]
impl BackgroundService for DnsDiscovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut resolver = None;
        let mut ticks = tokio::time::interval(self.config.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped(&mut shutdown) => return,
            }
            if resolver.is_none() {
                match self::resolver(&self.config) {
                    Ok(built) => resolver = Some(built),
                    Err(why) => {
                        self.answered(Err(why));
                        continue;
                    }
                }
            }
            let Some(resolver) = &resolver else { continue };
            let round = tokio::time::timeout(MAX_ROUND, self.round(resolver));
            let result = tokio::select! {
                result = round => result.unwrap_or_else(|_| {
                    Err(format!("no answer within {} s", MAX_ROUND.as_secs()))
                }),
                _ = stopped(&mut shutdown) => return,
            };
            self.answered(result);
        }
    }
}
