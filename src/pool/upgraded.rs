//! Upgraded (WebSocket) connections to a pool's backends, so that an operator can close them.
//!
//! Once a connection is upgraded, Pingora relays bytes until one side closes and offers no way
//! to cut it from outside. We keep a duplicate of the upstream socket's descriptor for every
//! upgraded request (from the `connected_to_upstream` hook) and, on request, `shutdown(2)` it:
//! the backend side sees the connection end, Pingora's relay ends, and the client's connection
//! is closed with it (HAProxy `shutdown sessions server`). Because the duplicate is ours, the
//! descriptor number can never be reused by another connection while it is registered; it is
//! closed when the request ends (the registration drops).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
    entries: Mutex<HashMap<u64, Entry>>,
}

/// A registered connection; dropping it forgets the connection (and closes our duplicate).
#[derive(Debug)]
pub struct Registration {
    registry: Arc<UpgradedConnections>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl UpgradedConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remember the upgraded connection to `backend` on socket `fd` (a live descriptor of the
    /// caller's); `None` if it cannot be duplicated.
    pub fn register_socket(self: &Arc<Self>, backend: usize, fd: RawFd) -> Option<Registration> {
        // SAFETY: `fd` is the caller's open socket for the duration of this call; we only
        // duplicate it.
        let socket = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .ok()?;
        let id = self.next_id.fetch_add(1, Relaxed);
        self.lock().insert(id, Entry { backend, socket });
        Some(Registration {
            registry: self.clone(),
            id,
        })
    }

    /// Upgraded connections per backend index (`backends` long).
    pub fn count_by_backend(&self, backends: usize) -> Vec<usize> {
        let mut counts = vec![0; backends];
        for entry in self.lock().values() {
            if let Some(c) = counts.get_mut(entry.backend) {
                *c += 1;
            }
        }
        counts
    }

    /// Shut down every upgraded connection to `backend`; returns how many were closed.
    pub fn close_backend(&self, backend: usize) -> usize {
        let mut entries = self.lock();
        let ids: Vec<u64> = entries
            .iter()
            .filter(|(_, e)| e.backend == backend)
            .map(|(id, _)| *id)
            .collect();
        let mut closed = 0;
        for id in ids {
            if let Some(entry) = entries.remove(&id) {
                // SAFETY: `shutdown` takes a descriptor we own and has no memory effects.
                if unsafe { libc::shutdown(entry.socket.as_raw_fd(), libc::SHUT_RDWR) } == 0 {
                    closed += 1;
                }
            }
        }
        closed
    }
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
        let reg_a = registry.register_socket(0, a.as_raw_fd()).unwrap();
        let _reg_b = registry.register_socket(1, b.as_raw_fd()).unwrap();
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
        let _reg = registry.register_socket(0, s.as_raw_fd()).unwrap();
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
        let reg = registry.register_socket(3, s.as_raw_fd()).unwrap();
        assert_eq!(registry.count_by_backend(4), [0, 0, 0, 1]);
        drop(reg);
        assert_eq!(registry.count_by_backend(4), [0, 0, 0, 0]);
        assert_eq!(registry.close_backend(3), 0);
    }
}
