//! Backend pools at run time: each backend's live state, health checks, and the choice of a
//! backend for a new session.
//!
//! Selection goes through `pingora-load-balancing`'s `LoadBalancer::select_with`, whose `accept`
//! callback is where our own per-backend state (health mirrored from the health checker,
//! admin state, the backends a request already failed on, a returning backend's slow start)
//! is applied. `least_requests`, which
//! the crate lacks, is built on the same call. The hot path reads one list of our own
//! [`BackendSlot`]s per request ([`members`]: it changes when backends are added or removed at
//! run time) and their atomics: no locks, no maps.

mod backend;
mod health;
pub mod members;
pub mod ring;
pub mod slow_start;
pub mod upgrade_gate;
pub mod upgraded;

pub use backend::BackendSlot;
pub use members::{ChangeError, Changed, NewBackend, Origin, Slots};

use crate::config::{Balance, HealthCheckConfig, PoolConfig};
use crate::tls::UpstreamTls;
use members::{slot_index, SharedSlots, SlotTemplate, SlotsDiscovery};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::selection::{Random, RoundRobin};
use pingora_load_balancing::{Backend, LoadBalancer};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

enum Balancer {
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    Random(Arc<LoadBalancer<Random>>),
    LeastRequests(Arc<LoadBalancer<RoundRobin>>),
}

impl Balancer {
    /// Take the pool's current members (its discovery reads them). Completes at once.
    fn update(&self, pool: &str) {
        let updated = match self {
            Balancer::RoundRobin(lb) | Balancer::LeastRequests(lb) => futures_now(lb.update()),
            Balancer::Random(lb) => futures_now(lb.update()),
        };
        match updated {
            Some(Ok(())) => {}
            Some(Err(e)) => log::error!("pool {pool}: the balancer's update failed: {e}"),
            None => log::error!("pool {pool}: the balancer's update did not complete"),
        }
    }
}

/// A pool at run time.
pub struct Pool {
    pub name: String,
    /// The backends, by index ([`members`]): read with [`Pool::slots`].
    slots: SharedSlots,
    pub opt_out_header: http::HeaderName,
    /// `served_by_header`: set on responses to the name of the backend that served them.
    pub served_by_header: Option<http::HeaderName>,
    /// `timeouts.total_ms`: request arrival to the end of the response, retries included.
    pub total_timeout: Option<std::time::Duration>,
    /// Upgraded (WebSocket) connections to the backends, for closing them on request.
    pub upgraded: Arc<upgraded::UpgradedConnections>,
    /// `slow_start_seconds`: a backend that comes back ramps up its share of new sessions.
    pub slow_start: Option<std::time::Duration>,
    /// New-session picks that met a ramping backend: the step of [`slow_start::admits`].
    ramp_picks: AtomicU64,
    balancer: Balancer,
    /// How a backend added at run time gets its slot.
    template: SlotTemplate,
    /// Held while the members change (never by a request).
    changing: Mutex<()>,
}

/// A background task that health-checks one pool (run by Pingora as a background service).
pub type HealthService = Box<dyn pingora_core::services::ServiceWithDependents>;

impl Pool {
    /// Build a pool and, if it has a health check, the background service that runs it.
    /// `tls`: the pool's TLS to its backends, loaded from `config.tls` ([`UpstreamTls::load`]).
    pub fn new(
        config: &PoolConfig,
        tls: Option<&UpstreamTls>,
    ) -> (Arc<Pool>, Option<HealthService>) {
        let template = SlotTemplate::new(config, tls);
        let slots = members::initial(&template, config);
        let health = config.health_check.as_ref();
        let (balancer, service) = match config.balance {
            Balance::RoundRobin => {
                let (lb, svc) = load_balancer::<RoundRobin>(&config.name, &slots, health, tls);
                (Balancer::RoundRobin(lb), svc)
            }
            Balance::Random => {
                let (lb, svc) = load_balancer::<Random>(&config.name, &slots, health, tls);
                (Balancer::Random(lb), svc)
            }
            Balance::LeastRequests => {
                let (lb, svc) = load_balancer::<RoundRobin>(&config.name, &slots, health, tls);
                (Balancer::LeastRequests(lb), svc)
            }
        };
        let pool = Pool {
            name: config.name.clone(),
            opt_out_header: config.opt_out_header.clone(),
            served_by_header: config.served_by_header.clone(),
            total_timeout: config.timeouts.total,
            upgraded: Arc::default(),
            slow_start: config.slow_start,
            ramp_picks: AtomicU64::new(0),
            slots,
            balancer,
            template,
            changing: Mutex::new(()),
        };
        (Arc::new(pool), service)
    }

    /// The backends as they are now, by index (removed ones included: check
    /// [`BackendSlot::is_removed`]). Read once per request: a request works on one list.
    pub fn slots(&self) -> Slots {
        self.slots.load_full()
    }

    /// Add a backend while the proxy runs ([`members`]): a name the pool had before takes its
    /// old index again. It starts healthy (until its health check says otherwise), in its slow
    /// start if it is active (not `at_start`: restored from the state file before serving).
    /// The pool's affinities must then learn of it (their `backends_changed`).
    pub fn add(&self, backend: &NewBackend, at_start: bool) -> Result<Changed, ChangeError> {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.slots.load_full();
        let (list, changed) = members::with_added(&current, &self.template, backend, at_start)?;
        self.slots.store(Arc::new(list));
        self.balancer.update(&self.name);
        Ok(changed)
    }

    /// Remove the backend called `name` while the proxy runs: it serves nothing from now on
    /// (its pinned sessions move on by the failure policy), keeps its index for a return under
    /// the same name. Its upgraded connections are the caller's to close.
    pub fn remove(&self, name: &str) -> Result<usize, ChangeError> {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.slots.load_full();
        let index = members::present_index(&current, name)
            .ok_or_else(|| ChangeError::UnknownBackend(name.to_string()))?;
        current[index].set_removed(true);
        // The same list, published again so that readers of "what changed" see one order.
        self.slots.store(current);
        self.balancer.update(&self.name);
        Ok(index)
    }

    /// Pick a backend for a new session: healthy, active, and not one of `excluded` (backends
    /// this request already failed on); a backend in its slow start is passed over for part of
    /// its turns ([`slow_start`]) — unless no other backend qualifies. `None` when none does.
    pub fn select_new(&self, slots: &[Arc<BackendSlot>], excluded: &[usize]) -> Option<usize> {
        let accept = |index: usize| {
            !excluded.contains(&index) && slots.get(index).is_some_and(|s| s.takes_new_sessions())
        };
        // This pick's step of the ramp's sequence, taken only if a ramping backend is offered.
        let pick = Cell::new(None);
        let ramp_admits = |index: usize| {
            let share = slots[index].ramp_share(self.slow_start);
            share >= 1.0 || {
                let step = pick.get().unwrap_or_else(|| {
                    let step = self.ramp_picks.fetch_add(1, Relaxed);
                    pick.set(Some(step));
                    step
                });
                slow_start::admits(share, step, index)
            }
        };
        let take = |index: usize| accept(index) && ramp_admits(index);
        let n = slots.len();
        // The balancers' iterators can miss the one acceptable backend (random repeats, a
        // round-robin counter advanced by other threads): then scan. When the ramp passed over
        // every backend that qualifies (all of them ramping, say after they came back
        // together), the balancer picks among them without the ramp, so they share evenly.
        self.balanced(slots, take)
            .or_else(|| (0..n).find(|i| take(*i)))
            .or_else(|| self.balanced(slots, accept))
            .or_else(|| (0..n).find(|i| accept(*i)))
    }

    /// The balancer's pick among the backends `qualifies` admits.
    fn balanced(
        &self,
        slots: &[Arc<BackendSlot>],
        qualifies: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = slots.len();
        let index_of = |b: &Backend| slot_index(slots, b);
        let chosen = match &self.balancer {
            Balancer::RoundRobin(lb) => {
                lb.select_with(b"", 2 * n, |b, _| index_of(b).is_some_and(&qualifies))
            }
            Balancer::Random(lb) => {
                lb.select_with(b"", 4 * n, |b, _| index_of(b).is_some_and(&qualifies))
            }
            Balancer::LeastRequests(lb) => {
                // Fewest in-flight requests relative to weight; the round-robin order breaks
                // ties so that idle backends share new sessions evenly.
                (0..n)
                    .filter(|i| qualifies(*i))
                    .map(|i| load_score(&slots[i]))
                    .min()
                    .and_then(|best| {
                        lb.select_with(b"", 2 * n, |b, _| {
                            index_of(b)
                                .is_some_and(|i| qualifies(i) && load_score(&slots[i]) <= best)
                        })
                    })
                    .or_else(|| {
                        // The loads moved under us; any qualifying backend will do.
                        lb.select_with(b"", 2 * n, |b, _| index_of(b).is_some_and(&qualifies))
                    })
            }
        };
        chosen.and_then(|b| index_of(&b))
    }

    /// The present (not removed) backend called `name`.
    pub fn backend_index(&self, name: &str) -> Option<usize> {
        members::present_index(&self.slots.load(), name)
    }

    /// The peer to connect to for a backend; with `remaining` (what is left of the request's
    /// total timeout), its connect, read and write timeouts are capped to it.
    pub fn peer(
        &self,
        slot: &BackendSlot,
        remaining: Option<std::time::Duration>,
    ) -> Box<HttpPeer> {
        let mut peer = Box::new(slot.peer.clone());
        if let Some(remaining) = remaining {
            cap_timeouts(&mut peer.options, remaining);
        }
        peer
    }
}

/// Cap a peer's connect, read and write timeouts to `remaining`.
pub fn cap_timeouts(
    options: &mut pingora_core::upstreams::peer::PeerOptions,
    remaining: std::time::Duration,
) {
    for timeout in [
        &mut options.connection_timeout,
        &mut options.read_timeout,
        &mut options.write_timeout,
    ] {
        *timeout = Some(timeout.map_or(remaining, |t| t.min(remaining)));
    }
}

/// In-flight requests per unit of weight, scaled to stay an integer.
fn load_score(slot: &BackendSlot) -> u64 {
    (slot.in_flight.load(Relaxed) as u64 * 1_000_000) / u64::from(slot.weight.max(1))
}

fn load_balancer<S>(
    pool: &str,
    slots: &SharedSlots,
    health: Option<&HealthCheckConfig>,
    tls: Option<&UpstreamTls>,
) -> (Arc<LoadBalancer<S>>, Option<HealthService>)
where
    S: pingora_load_balancing::selection::BackendSelection + Send + Sync + 'static,
    S::Iter: pingora_load_balancing::selection::BackendIter,
{
    let discovery = Box::new(SlotsDiscovery(slots.clone()));
    let mut lb = LoadBalancer::<S>::from_backends(pingora_load_balancing::Backends::new(discovery));
    // Our discovery reads the pool's list: it completes at once and cannot fail.
    if let Some(Err(e)) = futures_now(lb.update()) {
        log::error!("pool {pool}: backend discovery failed: {e}");
    }
    let Some(health) = health else {
        return (Arc::new(lb), None);
    };
    lb.set_health_check(health::mirrored(health, tls, slots));
    lb.health_check_frequency = Some(health.interval);
    lb.parallel_health_check = true;
    let service =
        pingora_core::services::background::background_service(&format!("health check {pool}"), lb);
    let lb = service.task();
    (lb, Some(Box::new(service)))
}

/// Poll a future that is known to complete without waiting.
fn futures_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{cap_timeouts, Pool};
    use crate::config::BackendState;
    use pingora_core::upstreams::peer::HttpPeer;
    use std::time::Duration;

    #[test]
    fn timeouts_are_capped_to_what_is_left_of_the_total() {
        let mut peer = HttpPeer::new("127.0.0.1:1", false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(3));
        peer.options.read_timeout = Some(Duration::from_millis(200));
        peer.options.write_timeout = None;
        cap_timeouts(&mut peer.options, Duration::from_millis(500));
        assert_eq!(
            peer.options.connection_timeout,
            Some(Duration::from_millis(500))
        );
        assert_eq!(peer.options.read_timeout, Some(Duration::from_millis(200)));
        assert_eq!(peer.options.write_timeout, Some(Duration::from_millis(500)));
    }

    fn pool(backends: usize, balance: &str, slow_start_seconds: u64) -> std::sync::Arc<Pool> {
        let list: Vec<String> = (0..backends)
            .map(|i| format!("{{ name: b{i}, addr: \"127.0.0.1:{}\" }}", 21_000 + i))
            .collect();
        let yaml = format!(
            "sticky:\n  listeners: [{{ addr: \"127.0.0.1:1\" }}]\n  pools:\n    - name: p\n      balance: {balance}\n      slow_start_seconds: {slow_start_seconds}\n      backends: [{}]\n",
            list.join(", ")
        );
        let config = crate::config::load_str(&yaml).unwrap();
        Pool::new(&config.pools[0], None).0
    }

    fn picks_of(pool: &Pool, backend: usize, picks: usize) -> usize {
        (0..picks)
            .filter(|_| pool.select_new(&pool.slots(), &[]) == Some(backend))
            .count()
    }

    #[test]
    fn a_backend_back_in_its_slow_start_gets_a_small_share_of_new_sessions_under_every_balance() {
        for balance in ["round_robin", "random", "least_requests"] {
            let pool = pool(3, balance, 3600);
            assert!(
                (900..=1100).contains(&picks_of(&pool, 2, 3000)),
                "{balance}"
            );
            pool.slots()[2].set_state(BackendState::Disabled);
            pool.slots()[2].set_state(BackendState::Active);
            let ramped = picks_of(&pool, 2, 3000);
            assert!(
                ramped <= 30,
                "{balance}: {ramped} of 3000 at the ramp's start"
            );
        }
        // Without slow start a returning backend gets its share at once.
        let pool = pool(3, "round_robin", 0);
        pool.slots()[2].set_healthy(false);
        pool.slots()[2].set_healthy(true);
        assert!((900..=1100).contains(&picks_of(&pool, 2, 3000)));
    }

    #[test]
    fn backends_that_come_back_together_share_new_sessions_evenly_while_they_ramp() {
        for balance in ["round_robin", "random", "least_requests"] {
            let pool = pool(3, balance, 3600);
            for slot in pool.slots().iter() {
                slot.set_healthy(false);
                slot.set_healthy(true);
            }
            for backend in 0..3 {
                let picks = picks_of(&pool, backend, 3000);
                assert!(
                    (700..=1300).contains(&picks),
                    "{balance}: backend {backend} took {picks} of 3000"
                );
            }
        }
    }

    #[test]
    fn a_backend_added_at_run_time_ramps_up_and_a_removed_one_takes_nothing() {
        let pool = pool(2, "round_robin", 3600);
        let added = |name: &str, port: u16| super::NewBackend {
            name: name.into(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            weight: 1,
            state: BackendState::Active,
            origin: super::Origin::Api,
        };
        let changed = pool.add(&added("b2", 21_002), false).unwrap();
        assert_eq!((changed.index, changed.returned), (2, false));
        let ramped = picks_of(&pool, 2, 3000);
        assert!(
            ramped > 0 && ramped <= 30,
            "{ramped} of 3000 at the ramp's start"
        );

        pool.remove("b0").unwrap();
        assert_eq!(pool.backend_index("b0"), None);
        assert_eq!(picks_of(&pool, 0, 300), 0, "removed: no new sessions");
        assert!(!pool.slots()[0].is_usable(), "nor pinned ones");
        assert_eq!(
            pool.remove("b0"),
            Err(super::ChangeError::UnknownBackend("b0".into()))
        );
        // Back under its name (restored at start: no ramp): its old index.
        let back = pool.add(&added("b0", 21_010), true).unwrap();
        assert_eq!((back.index, back.returned), (0, true));
        assert!((1300..=1700).contains(&picks_of(&pool, 0, 3000)));
    }

    #[test]
    fn a_ramping_backend_that_is_the_only_one_left_takes_every_new_session() {
        let pool = pool(2, "round_robin", 3600);
        pool.slots()[1].set_healthy(false);
        pool.slots()[1].set_healthy(true);
        pool.slots()[0].set_state(BackendState::Disabled);
        assert_eq!(picks_of(&pool, 1, 100), 100);
        assert_eq!(
            pool.select_new(&pool.slots(), &[1]),
            None,
            "nothing else qualifies"
        );
    }
}
