//! Active health checks for a pool: Pingora's TCP and HTTP checks, wrapped so that every flip
//! is mirrored into our [`BackendSlot`]s (the request path then reads one atomic) and logged
//! with the backend's name.

use super::backend::SlotId;
use super::members::SharedSlots;
use super::BackendSlot;
use crate::config::BackendState;
use crate::config::{HealthCheckConfig, HealthCheckKind};
use async_trait::async_trait;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::Backend;
use std::sync::Arc;

/// The health check a pool's config describes, mirrored into `slots`.
/// `tls`: the pool talks TLS to its backends, so HTTP checks do too.
pub fn mirrored(
    config: &HealthCheckConfig,
    tls: Option<&crate::tls::UpstreamTls>,
    slots: &SharedSlots,
) -> Box<dyn HealthCheck + Send + Sync> {
    Box::new(MirroredHealthCheck {
        inner: build_check(config, tls),
        slots: slots.clone(),
    })
}

/// The present (not removed) backend at `target`'s address.
/// The present slot a health check's `target` stands for: the one whose id it carries (a check
/// still running for a backend removed meanwhile finds none, even if another backend is at that
/// address now), or, for a target without one, the present slot at its address.
fn slot_of(slots: &SharedSlots, target: &Backend) -> Option<Arc<BackendSlot>> {
    let slots = slots.load();
    let mut present = slots.iter().filter(|s| !s.is_removed());
    match target.ext.get::<SlotId>() {
        Some(&SlotId(id)) => present.find(|s| s.id == id).cloned(),
        None => {
            let addr = target.addr.as_inet()?;
            present.find(|s| &s.addr == addr).cloned()
        }
    }
}

fn build_check(
    config: &HealthCheckConfig,
    tls: Option<&crate::tls::UpstreamTls>,
) -> Box<dyn HealthCheck + Send + Sync> {
    match config.kind {
        HealthCheckKind::Tcp => {
            let mut check = TcpHealthCheck::new();
            check.consecutive_success = config.rise as usize;
            check.consecutive_failure = config.fall as usize;
            check.peer_template.options.connection_timeout = Some(config.timeout);
            check
        }
        HealthCheckKind::Http => {
            let mut check = HttpHealthCheck::new(&config.host, tls.is_some());
            if let Some(tls) = tls {
                crate::tls::apply_upstream(tls, &mut check.peer_template);
            }
            check.consecutive_success = config.rise as usize;
            check.consecutive_failure = config.fall as usize;
            check.peer_template.options.connection_timeout = Some(config.timeout);
            check.peer_template.options.read_timeout = Some(config.timeout);
            // Path and host were validated at start-up.
            if let Ok(mut req) =
                pingora_http::RequestHeader::build("GET", config.path.as_bytes(), None)
            {
                let _ = req.append_header("Host", config.host.as_str());
                let _ = req.append_header("User-Agent", "sticky-proxy-health-check");
                check.req = req;
            }
            let expected = config.expect_status;
            check.validator = Some(Box::new(move |resp| {
                if resp.status.as_u16() == expected {
                    Ok(())
                } else {
                    pingora_core::Error::e_explain(
                        pingora_core::ErrorType::CustomCode(
                            "unexpected status",
                            resp.status.as_u16(),
                        ),
                        "during http health check",
                    )
                }
            }));
            Box::new(check)
        }
    }
}

/// Wraps a Pingora health check and mirrors every health flip into our [`BackendSlot`]s, so the
/// request path reads one atomic instead of the balancer's health map.
struct MirroredHealthCheck {
    inner: Box<dyn HealthCheck + Send + Sync>,
    slots: SharedSlots,
}

#[async_trait]
impl HealthCheck for MirroredHealthCheck {
    async fn check(&self, target: &Backend) -> pingora_core::Result<()> {
        // A disabled backend is not checked: it may be down for maintenance on purpose. It keeps
        // the health it had, and is checked again once re-enabled.
        if slot_of(&self.slots, target).is_some_and(|s| s.state() == BackendState::Disabled) {
            return if slot_of(&self.slots, target).is_some_and(|s| s.is_healthy()) {
                Ok(())
            } else {
                pingora_core::Error::e_explain(
                    pingora_core::ErrorType::CustomCode("disabled", 0),
                    "backend disabled: not checked",
                )
            };
        }
        self.inner.check(target).await
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        if let Some(slot) = slot_of(&self.slots, target) {
            slot.set_healthy(healthy);
            log::warn!(
                "backend {} is now {}",
                slot.name,
                if healthy { "healthy" } else { "unhealthy" }
            );
        }
        self.inner.health_status_change(target, healthy).await;
    }

    fn backend_summary(&self, target: &Backend) -> String {
        slot_of(&self.slots, target)
            .map_or_else(|| format!("{target:?}"), |s| format!("backend {}", s.name))
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}

#[cfg(test)]
mod tests {
    use super::super::members::{crate_backends, with_added, NewBackend, Origin, SlotTemplate};
    use super::*;
    use crate::config::BackendState;
    use std::net::SocketAddr;

    fn new(name: &str) -> NewBackend {
        NewBackend {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 9)),
            weight: 1,
            state: BackendState::Active,
            origin: Origin::Api,
        }
    }

    #[test]
    fn a_check_of_a_removed_backend_reaches_no_slot_even_with_another_at_its_address() {
        let yaml = "sticky:\n  listeners: [{ addr: \"127.0.0.1:1\" }]\n  pools:\n    - name: p\n      backends: [{ name: a, addr: \"127.0.0.1:2\" }]\n";
        let config = crate::config::load_str(yaml).unwrap();
        let template = SlotTemplate::new(&config.pools[0], None);
        let first = vec![Arc::new(template.slot(&new("old")))];
        // What the health checker holds for the first backend at 127.0.0.1:9.
        let checked = crate_backends(&first).into_iter().next().unwrap();
        first[0].set_removed(true);
        let (list, _) = with_added(&first, &template, &new("new"), false).unwrap();
        let slots: SharedSlots = Arc::new(arc_swap::ArcSwap::from_pointee(list));
        assert!(slot_of(&slots, &checked).is_none(), "a stale check");
        // The checker's target for the new backend reaches it; one without an id, by address.
        let current = crate_backends(&slots.load()).into_iter().next().unwrap();
        assert_eq!(slot_of(&slots, &current).unwrap().name, "new");
        let plain = Backend {
            ext: http::Extensions::new(),
            ..current
        };
        assert_eq!(slot_of(&slots, &plain).unwrap().name, "new");
    }
}
