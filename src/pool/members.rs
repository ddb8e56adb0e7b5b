//! A pool's members at run time: the list of its backend slots, which grows when a backend is
//! added while the proxy runs (`POST /api/pools/{pool}/backends`, DNS discovery) and marks a
//! removed one instead of dropping it.
//!
//! A backend's **index** (its position in the list) is what session records, cookies and
//! metrics refer to, so the list is append-only: a removed backend keeps its slot (unusable,
//! out of the balancer and the ring), and one added back under the same name takes the same
//! index again, so the cookies and records that named it pin to it again. Each change publishes
//! a new list (`ArcSwap`): a request reads one list from start to end, changes are serialised by
//! a lock no request takes.

use super::backend::BackendSlot;
use crate::config::{BackendState, PoolConfig, TimeoutConfig};
use crate::tls::UpstreamTls;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::upstreams::peer::{HttpPeer, HttpUpstreamRequestPolicy};
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::Backend;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

/// A pool's backend slots, by index; removed ones included (see the module's documentation).
pub type Slots = Arc<Vec<Arc<BackendSlot>>>;

/// The most slots a pool can have (backend indexes fit in 16 bits in the session tables).
pub const MAX_SLOTS: usize = u16::MAX as usize;

/// A backend to add at run time, validated like a configured one.
#[derive(Debug, Clone)]
pub struct NewBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub state: BackendState,
    pub origin: Origin,
}

/// Who put a backend in its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `backends` of the configuration.
    Config,
    /// The admin API (`POST /api/pools/{pool}/backends`, or the state file it wrote).
    Api,
    /// DNS discovery (`pools[].discovery`).
    Discovery,
}

/// Why a change of a pool's members was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// The new backend's `field` clashes with a backend the pool has.
    Conflict { field: &'static str, reason: String },
    /// No backend of that name (or it was removed already).
    UnknownBackend(String),
    /// The pool has [`MAX_SLOTS`] slots.
    Full,
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::Conflict { field, reason } => write!(f, "{field}: {reason}"),
            ChangeError::UnknownBackend(name) => write!(f, "no backend named {name:?}"),
            ChangeError::Full => write!(f, "the pool has {MAX_SLOTS} backend slots already"),
        }
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    /// The backend's index.
    pub index: usize,
    /// Added back under a name the pool had before (its index is the one it had).
    pub returned: bool,
}

/// How a pool makes a backend's slot: its peer's timeouts, TLS and connection group, the
/// `Host` for requests without one.
pub(super) struct SlotTemplate {
    group_key: u64,
    tls: Option<UpstreamTls>,
    timeouts: TimeoutConfig,
    default_host: Option<http::HeaderValue>,
    sni: Option<String>,
}

impl SlotTemplate {
    pub(super) fn new(config: &PoolConfig, tls: Option<&UpstreamTls>) -> Self {
        SlotTemplate {
            // Pools never share upstream connections (their TLS trust may differ).
            group_key: xxhash_rust::xxh3::xxh3_64(config.name.as_bytes()),
            tls: tls.cloned(),
            timeouts: config.timeouts,
            default_host: config.default_host.clone(),
            sni: config.tls.as_ref().map(|t| t.sni.clone()),
        }
    }

    pub(super) fn slot(&self, backend: &NewBackend) -> BackendSlot {
        let tls = self.tls.as_ref();
        let mut peer = HttpPeer::new(backend.addr, tls.is_some(), String::new());
        peer.group_key = self.group_key;
        if let Some(tls) = tls {
            crate::tls::apply_upstream(tls, &mut peer);
        }
        let t = &self.timeouts;
        peer.options.connection_timeout = Some(t.connect);
        peer.options.read_timeout = Some(t.read);
        peer.options.write_timeout = Some(t.write);
        peer.options.idle_timeout = Some(t.idle);
        // Pingora's own pass over the request's hop-by-hop fields is skipped: the proxy's
        // `upstream_request_filter` strips them (and those `Connection` names) in the pass over
        // the names it makes anyway (`headers::StripList::apply`), −3.2 % instructions per
        // request. tests/hop_by_hop.rs holds it.
        peer.options.http_upstream_request_policy = HttpUpstreamRequestPolicy::preserve();
        let host = crate::headers::backend_host(
            self.default_host.as_ref(),
            self.sni.as_deref(),
            backend.addr,
            tls.is_some(),
        );
        let mut slot = BackendSlot::new(
            backend.name.clone(),
            backend.addr,
            backend.weight,
            backend.state,
            peer,
            host,
        );
        slot.origin = backend.origin;
        slot
    }
}

/// The list of slots, shared by the pool, its balancer's discovery and its health check.
pub(super) type SharedSlots = Arc<ArcSwap<Vec<Arc<BackendSlot>>>>;

/// The slots of `configured` backends, in order.
pub(super) fn initial(template: &SlotTemplate, config: &PoolConfig) -> SharedSlots {
    let slots = config
        .backends
        .iter()
        .map(|b| {
            Arc::new(template.slot(&NewBackend {
                name: b.name.clone(),
                addr: b.addr,
                weight: b.weight,
                state: b.state,
                origin: Origin::Config,
            }))
        })
        .collect();
    Arc::new(ArcSwap::from_pointee(slots))
}

/// Add `backend` to `slots` (see the module's documentation): the new list to publish and what
/// changed, or why not. Names compare ignoring case, as in the configuration.
pub(super) fn with_added(
    slots: &[Arc<BackendSlot>],
    template: &SlotTemplate,
    backend: &NewBackend,
    at_start: bool,
) -> Result<(Vec<Arc<BackendSlot>>, Changed), ChangeError> {
    let lower = backend.name.to_lowercase();
    let present = || slots.iter().filter(|s| !s.is_removed());
    if present().any(|s| s.name.to_lowercase() == lower) {
        return Err(ChangeError::Conflict {
            field: "name",
            reason: format!("duplicate backend name: {:?}", backend.name),
        });
    }
    if present().any(|s| s.addr == backend.addr) {
        return Err(ChangeError::Conflict {
            field: "addr",
            reason: format!("duplicate backend address: \"{}\"", backend.addr),
        });
    }
    let slot = Arc::new(template.slot(backend));
    if !at_start {
        slot.mark_added();
    }
    let mut list = slots.to_vec();
    // The place of a removed backend of exactly that name (its cookies and records name it);
    // else, for a discovered address, the place of a removed discovered one, so that a pool
    // whose DNS answers churn through addresses does not grow without bound (the records that
    // named the old address now reach the new one, as a rebalance would have sent them on).
    let returning = slots.iter().position(|s| s.name == backend.name);
    let recycled = || {
        (backend.origin == Origin::Discovery)
            .then(|| {
                slots
                    .iter()
                    .position(|s| s.is_removed() && s.origin == Origin::Discovery)
            })
            .flatten()
    };
    let changed = match returning
        .map(|i| (i, true))
        .or_else(|| recycled().map(|i| (i, false)))
    {
        Some((index, returned)) => {
            list[index] = slot;
            Changed { index, returned }
        }
        None if slots.len() >= MAX_SLOTS => return Err(ChangeError::Full),
        None => {
            list.push(slot);
            Changed {
                index: slots.len(),
                returned: false,
            }
        }
    };
    Ok((list, changed))
}

/// The index of the present (not removed) backend called `name`.
pub(super) fn present_index(slots: &[Arc<BackendSlot>], name: &str) -> Option<usize> {
    slots.iter().position(|s| !s.is_removed() && s.name == name)
}

/// The crate's view of the present backends (identity: address + weight).
pub(super) fn crate_backends(slots: &[Arc<BackendSlot>]) -> BTreeSet<Backend> {
    slots
        .iter()
        .filter(|s| !s.is_removed())
        .map(|s| Backend {
            addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(s.addr),
            weight: s.weight as usize,
            ext: http::Extensions::new(),
        })
        .collect()
}

/// The index of the present slot a balancer's [`Backend`] stands for.
pub(super) fn slot_index(slots: &[Arc<BackendSlot>], backend: &Backend) -> Option<usize> {
    let addr = backend.addr.as_inet()?;
    slots
        .iter()
        .position(|s| &s.addr == addr && !s.is_removed())
}

/// The balancer's discovery: the present backends of the pool's list, as they are when asked
/// (the pool asks its balancer to update after each change).
pub(super) struct SlotsDiscovery(pub(super) SharedSlots);

#[async_trait]
impl ServiceDiscovery for SlotsDiscovery {
    async fn discover(&self) -> pingora_core::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        Ok((crate_backends(&self.0.load()), HashMap::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> SlotTemplate {
        let yaml = "sticky:\n  listeners: [{ addr: \"127.0.0.1:1\" }]\n  pools:\n    - name: p\n      backends: [{ name: a, addr: \"127.0.0.1:2\" }]\n";
        let config = crate::config::load_str(yaml).unwrap();
        SlotTemplate::new(&config.pools[0], None)
    }

    fn new(name: &str, port: u16) -> NewBackend {
        NewBackend {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            weight: 1,
            state: BackendState::Active,
            origin: Origin::Api,
        }
    }

    #[test]
    fn a_new_name_is_appended_and_a_returning_one_takes_its_old_index() {
        let t = template();
        let list = vec![Arc::new(t.slot(&new("a", 2)))];
        let (list, changed) = with_added(&list, &t, &new("b", 3), false).unwrap();
        assert_eq!(
            changed,
            Changed {
                index: 1,
                returned: false
            }
        );
        list[0].set_removed(true);
        assert_eq!(present_index(&list, "a"), None);
        let (list, changed) = with_added(&list, &t, &new("a", 4), false).unwrap();
        assert_eq!(
            changed,
            Changed {
                index: 0,
                returned: true
            }
        );
        // Another case is another name (cookies and records compare names exactly).
        list[0].set_removed(true);
        let (moved, changed) = with_added(&list, &t, &new("A", 5), false).unwrap();
        assert_eq!((changed.index, moved.len()), (2, 3));
        list[0].set_removed(false);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].addr.port(), 4);
        assert!(list[0].is_usable());
    }

    #[test]
    fn a_duplicate_name_or_address_of_a_present_backend_is_refused_naming_the_field() {
        let t = template();
        let list = vec![Arc::new(t.slot(&new("a", 2)))];
        let name = with_added(&list, &t, &new("A", 3), false).unwrap_err();
        assert!(matches!(name, ChangeError::Conflict { field: "name", .. }));
        let addr = with_added(&list, &t, &new("b", 2), false).unwrap_err();
        assert!(matches!(addr, ChangeError::Conflict { field: "addr", .. }));
        // A removed backend's address is free again.
        list[0].set_removed(true);
        assert!(with_added(&list, &t, &new("b", 2), false).is_ok());
    }

    #[test]
    fn a_new_discovered_address_takes_the_place_of_a_removed_discovered_one() {
        let t = template();
        let found = |name: &str, port: u16| NewBackend {
            origin: Origin::Discovery,
            ..new(name, port)
        };
        let list = vec![
            Arc::new(t.slot(&new("a", 2))),
            Arc::new(t.slot(&found("d1", 3))),
        ];
        list[1].set_removed(true);
        // Not for a backend the API adds, nor over a removed configured or API backend.
        let (api, changed) = with_added(&list, &t, &new("b", 4), false).unwrap();
        assert_eq!((changed.index, api.len()), (2, 3));
        list[0].set_removed(true);
        let (list, changed) = with_added(&list, &t, &found("d2", 4), false).unwrap();
        assert_eq!(
            changed,
            Changed {
                index: 1,
                returned: false
            }
        );
        assert_eq!((list.len(), list[1].name.as_str()), (2, "d2"));
    }

    #[test]
    fn removed_backends_leave_the_balancers_view() {
        let t = template();
        let list = vec![
            Arc::new(t.slot(&new("a", 2))),
            Arc::new(t.slot(&new("b", 3))),
        ];
        list[0].set_removed(true);
        assert_eq!(crate_backends(&list).len(), 1);
        let b = crate_backends(&list).into_iter().next().unwrap();
        assert_eq!(slot_index(&list, &b), Some(1));
    }
}
