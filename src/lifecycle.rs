//! The process's lifecycle as the proxy and the admin API need it: one flag, `leaving`, set as
//! soon as this process starts handing over to a new one (graceful upgrade, SIGQUIT) or
//! shutting down (SIGTERM).
//!
//! While leaving, `/readyz` answers 503 and every response tells its client to close the
//! connection (`Connection: close`), so kept-alive clients reconnect — to the new process during
//! an upgrade — instead of being cut off when Pingora drops idle connections at the end.
//!
//! `sticky.grace_ms` (HAProxy's `grace`) delays a SIGTERM stop: for that long the process is
//! already leaving but still accepts and serves, so a balancer in front sees `/readyz` fail and
//! kept-alive clients are told to reconnect before Pingora stops listening and drops idle
//! connections. During the grace SIGINT stops at once, a second SIGTERM ends the grace, and
//! SIGQUIT still hands over to a new process.

use async_trait::async_trait;
use pingora_core::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Shared "this process is leaving" flag.
#[derive(Debug, Clone, Default)]
pub struct Leaving(Arc<AtomicBool>);

impl Leaving {
    pub fn is_set(&self) -> bool {
        self.0.load(Relaxed)
    }

    pub fn set(&self) {
        if !self.0.swap(true, Relaxed) {
            log::info!("leaving: /readyz answers 503, responses close their connections");
        }
    }
}

/// Does this phase mean the process is on its way out?
pub fn is_leaving_phase(phase: &ExecutionPhase) -> bool {
    matches!(
        phase,
        ExecutionPhase::GracefulUpgradeTransferringFds
            | ExecutionPhase::GracefulUpgradeCloseTimeout
            | ExecutionPhase::GracefulTerminate
            | ExecutionPhase::ShutdownStarted
            | ExecutionPhase::ShutdownGracePeriod
            | ExecutionPhase::ShutdownRuntimes
            | ExecutionPhase::Terminated
    )
}

/// Background service that sets [`Leaving`] from Pingora's execution phases and shutdown signal.
pub struct LifecycleWatcher {
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
    leaving: Leaving,
}

impl LifecycleWatcher {
    pub fn new(phases: broadcast::Receiver<ExecutionPhase>, leaving: Leaving) -> Self {
        LifecycleWatcher {
            phases: Mutex::new(Some(phases)),
            leaving,
        }
    }
}

#[async_trait]
impl BackgroundService for LifecycleWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let phases = self
            .phases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some(mut phases) = phases else {
            return;
        };
        loop {
            tokio::select! {
                phase = phases.recv() => match phase {
                    Ok(phase) if is_leaving_phase(&phase) => self.leaving.set(),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        self.leaving.set();
                        break;
                    }
                }
            }
        }
    }
}

/// Pingora's signal handling (SIGQUIT upgrade, SIGTERM graceful stop, SIGINT fast stop) with
/// `grace` between a SIGTERM and the stop it asks for.
pub struct SignalsWithGrace {
    pub grace: std::time::Duration,
    pub leaving: Leaving,
}

#[async_trait]
impl ShutdownSignalWatch for SignalsWithGrace {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut quit, mut term, mut int) = match (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(quit), Ok(term), Ok(int)) => (quit, term, int),
            _ => {
                // Pingora's own watcher would panic on the same registrations.
                log::error!("cannot watch SIGTERM, SIGQUIT and SIGINT: only SIGKILL stops this");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
            _ = int.recv() => return ShutdownSignal::FastShutdown,
            _ = term.recv() => {}
        }
        if self.grace.is_zero() {
            return ShutdownSignal::GracefulTerminate;
        }
        log::info!(
            "SIGTERM: still accepting and serving for sticky.grace_ms = {} ms, then stopping",
            self.grace.as_millis()
        );
        self.leaving.set();
        tokio::select! {
            _ = tokio::time::sleep(self.grace) => ShutdownSignal::GracefulTerminate,
            // A second SIGTERM cuts the grace short.
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_and_termination_phases_mean_leaving() {
        assert!(is_leaving_phase(
            &ExecutionPhase::GracefulUpgradeTransferringFds
        ));
        assert!(is_leaving_phase(&ExecutionPhase::GracefulTerminate));
        assert!(!is_leaving_phase(&ExecutionPhase::Running));
        assert!(!is_leaving_phase(&ExecutionPhase::BootstrapComplete));
    }
}
