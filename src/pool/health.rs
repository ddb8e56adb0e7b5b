//! Active health checks for a pool: Pingora's TCP and HTTP checks, wrapped so that every flip
//! is mirrored into our [`BackendSlot`]s (the request path then reads one atomic) and logged
//! with the backend's name.

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
fn slot_of(slots: &SharedSlots, target: &Backend) -> Option<Arc<BackendSlot>> {
    let addr = target.addr.as_inet()?;
    slots
        .load()
        .iter()
        .find(|s| &s.addr == addr && !s.is_removed())
        .cloned()
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
        let slot = slot_of(&self.slots, target);
        if let Some(slot) = &slot {
            slot.health_check_begins();
        }
        // A disabled backend is not checked: it may be down for maintenance on purpose. It keeps
        // the health it had, and is checked again once re-enabled.
        if slot
            .as_ref()
            .is_some_and(|s| s.state() == BackendState::Disabled)
        {
            return if slot.as_ref().is_some_and(|s| s.is_healthy()) {
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
        if let Some(slot) = slot_of(&self.slots, target).filter(|s| s.health_flip_applies()) {
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
    use std::net::SocketAddr;

    /// A check that always fails (what it answers does not matter here).
    struct Failing;

    #[async_trait]
    impl HealthCheck for Failing {
        async fn check(&self, _target: &Backend) -> pingora_core::Result<()> {
            pingora_core::Error::e_explain(pingora_core::ErrorType::ConnectRefused, "test")
        }
        fn health_threshold(&self, _success: bool) -> usize {
            1
        }
    }

    fn new(name: &str) -> NewBackend {
        NewBackend {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 9)),
            weight: 1,
            state: BackendState::Active,
            origin: Origin::Api,
        }
    }

    #[tokio::test]
    async fn a_flip_of_a_check_begun_before_its_backend_was_replaced_leaves_the_new_one_alone() {
        let yaml = "sticky:\n  listeners: [{ addr: \"127.0.0.1:1\" }]\n  pools:\n    - name: p\n      backends: [{ name: a, addr: \"127.0.0.1:2\" }]\n";
        let config = crate::config::load_str(yaml).unwrap();
        let template = SlotTemplate::new(&config.pools[0], None);
        let first = vec![Arc::new(template.slot(&new("old")))];
        let slots: SharedSlots = Arc::new(arc_swap::ArcSwap::from_pointee(first.clone()));
        let mirror = MirroredHealthCheck {
            inner: Box::new(Failing),
            slots: slots.clone(),
        };
        let target = crate_backends(&first).into_iter().next().unwrap();

        // A pass checks the old backend at 127.0.0.1:9 ...
        assert!(mirror.check(&target).await.is_err());
        // ... which is removed, and another put at its address, before the pass reports.
        first[0].set_removed(true);
        let (list, _) = with_added(&first, &template, &new("new"), false).unwrap();
        slots.store(Arc::new(list));
        mirror.health_status_change(&target, false).await;
        let now = slots
            .load()
            .iter()
            .find(|s| s.name == "new")
            .unwrap()
            .clone();
        assert!(
            now.is_healthy(),
            "the old backend's flip is not the new one's"
        );

        // The next pass checks the new one: its own flips apply.
        assert!(mirror.check(&target).await.is_err());
        mirror.health_status_change(&target, false).await;
        assert!(!now.is_healthy());
    }
}
