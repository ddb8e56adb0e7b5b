//! Upgraded (WebSocket) connections to a pool's backends, so that an operator can close them.
//!
//! Once a connection is upgraded, Pingora relays bytes until one side closes and offers no way
//! to cut it from outside. We keep a duplicate of the upstream socket's descriptor for every
//! upgraded request (from the `connected_to_upstream` hook) and, on request, `shutdown(2)` it:
//! the backend side sees the connection end, Pingora's relay ends, and the client's connection
//! is closed with it (HAProxy `shutdown sessions server`). Because the duplicate is ours, the
//! descriptor number can never be reused by another connection while it is registered; it is
//! closed when the request ends (the registration drops).
//!
//! A connection is registered only once connected, a moment after its backend was chosen; a
//! close in between would miss it. So a request takes a [`Ticket`] when it chooses the backend,
//! and a registration whose backend was closed after that ticket is shut down at once instead.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{
    AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed},
};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug)]
struct Entry {
    backend: usize,
    socket: OwnedFd,
}

/// The registry of one pool's upgraded upstream connections.
#[derive(Debug, Default)]
pub struct UpgradedConnections {
    next_id: AtomicU64,
    /// Counts the calls of [`UpgradedConnections::close_backend`] (a close's number).
    closes: AtomicU64,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    open: HashMap<u64, Entry>,
    /// Each backend's latest close, by number.
    closed_at: HashMap<usize, u64>,
}

/// Taken when an upgrade's backend is chosen: the closes made before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// A registered connection; dropping it forgets the connection (and closes our duplicate).
#[derive(Debug)]
pub struct Registration {
    registry: Arc<UpgradedConnections>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().open.remove(&self.id);
    }
}

impl UpgradedConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a request takes when it chooses an upgrade's backend, for [`Self::register_socket`].
    pub fn ticket(&self) -> Ticket {
        Ticket(self.closes.load(Acquire))
    }

    /// Remember the upgraded connection to `backend` on socket `fd` (a live descriptor of the
    /// caller's), chosen when `ticket` was taken; `None` if it cannot be duplicated, or if the
    /// backend's connections were closed since the ticket: then this one is shut down too.
    pub fn register_socket(
        self: &Arc<Self>,
        backend: usize,
        fd: RawFd,
        ticket: Ticket,
    ) -> Option<Registration> {
        // SAFETY: `fd` is the caller's open socket for the duration of this call; we only
        // duplicate it.
        let socket = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .ok()?;
        let mut entries = self.lock();
        if entries
            .closed_at
            .get(&backend)
            .is_some_and(|&at| at > ticket.0)
        {
            shut_down(&socket);
            return None;
        }
        let id = self.next_id.fetch_add(1, Relaxed);
        entries.open.insert(id, Entry { backend, socket });
        Some(Registration {
            registry: self.clone(),
            id,
        })
    }

    /// Upgraded connections per backend index (`backends` long).
    pub fn count_by_backend(&self, backends: usize) -> Vec<usize> {
        let mut counts = vec![0; backends];
        for entry in self.lock().open.values() {
            if let Some(c) = counts.get_mut(entry.backend) {
                *c += 1;
            }
        }
        counts
    }

    /// Shut down every upgraded connection to `backend`, and those chosen before this call and
    /// registered after it; returns how many were closed now.
    pub fn close_backend(&self, backend: usize) -> usize {
        let mut entries = self.lock();
        let number = self.closes.fetch_add(1, AcqRel) + 1;
        entries.closed_at.insert(backend, number);
        let ids: Vec<u64> = entries
            .open
            .iter()
            .filter(|(_, e)| e.backend == backend)
            .map(|(id, _)| *id)
            .collect();
        let mut closed = 0;
        for id in ids {
            if let Some(entry) = entries.open.remove(&id) {
                if shut_down(&entry.socket) {
                    closed += 1;
                }
            }
        }
        closed
    }
}

/// `shutdown(2)` both directions of a socket of ours; whether it worked.
fn shut_down(socket: &OwnedFd) -> bool {
    // SAFETY: `shutdown` takes a descriptor we own and has no memory effects.
    unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn closing_a_backend_shuts_its_sockets_and_no_others() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let a = std::net::TcpStream::connect(addr).unwrap();
        let (mut a_server, _) = listener.accept().unwrap();
        let b = std::net::TcpStream::connect(addr).unwrap();
        let (mut b_server, _) = listener.accept().unwrap();
        let registry = Arc::new(UpgradedConnections::default());
        let reg_a = registry
            .register_socket(0, a.as_raw_fd(), registry.ticket())
            .unwrap();
        let _reg_b = registry
            .register_socket(1, b.as_raw_fd(), registry.ticket())
            .unwrap();
        assert_eq!(registry.count_by_backend(2), [1, 1]);

        assert_eq!(registry.close_backend(0), 1);
        let mut buf = [0u8; 1];
        assert_eq!(a_server.read(&mut buf).unwrap(), 0, "the peer sees the end");
        assert_eq!(registry.count_by_backend(2), [0, 1]);
        drop(reg_a);
        b_server.set_nonblocking(true).unwrap();
        let still_open =
            matches!(b_server.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(still_open, "another backend's connection is untouched");
    }

    #[test]
    fn a_registration_outlives_the_callers_descriptor_and_still_closes_the_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let s = std::net::TcpStream::connect(addr).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let registry = Arc::new(UpgradedConnections::default());
        let _reg = registry
            .register_socket(0, s.as_raw_fd(), registry.ticket())
            .unwrap();
        // The caller closes its descriptor (its number may now be reused by anyone): our
        // duplicate keeps the same connection.
        drop(s);
        assert_eq!(registry.close_backend(0), 1);
        let mut buf = [0u8; 1];
        assert_eq!(server.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn dropping_a_registration_forgets_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let registry = Arc::new(UpgradedConnections::default());
        let reg = registry
            .register_socket(3, s.as_raw_fd(), registry.ticket())
            .unwrap();
        assert_eq!(registry.count_by_backend(4), [0, 0, 0, 1]);
        drop(reg);
        assert_eq!(registry.count_by_backend(4), [0, 0, 0, 0]);
        assert_eq!(registry.close_backend(3), 0);
    }

    #[test]
    fn a_connection_chosen_before_its_backend_was_closed_is_shut_down_when_it_registers() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Arc::new(UpgradedConnections::default());
        let chosen_before = registry.ticket();
        let other_backend = registry.ticket();
        assert_eq!(registry.close_backend(0), 0, "nothing registered yet");
        let chosen_after = registry.ticket();

        let late = std::net::TcpStream::connect(addr).unwrap();
        let (mut late_server, _) = listener.accept().unwrap();
        assert!(registry
            .register_socket(0, late.as_raw_fd(), chosen_before)
            .is_none());
        let mut buf = [0u8; 1];
        assert_eq!(late_server.read(&mut buf).unwrap(), 0, "shut down at once");

        // Chosen after the close, or for another backend: registered as usual.
        let fresh = std::net::TcpStream::connect(addr).unwrap();
        let _fresh = registry
            .register_socket(0, fresh.as_raw_fd(), chosen_after)
            .unwrap();
        let other = std::net::TcpStream::connect(addr).unwrap();
        let _other = registry
            .register_socket(1, other.as_raw_fd(), other_backend)
            .unwrap();
        assert_eq!(registry.count_by_backend(2), [1, 1]);
    }
}
