//! Upgraded (WebSocket) connections to a pool's backends, so that an operator can close them.
//!
//! Once a connection is upgraded, Pingora relays bytes until one side closes and offers no way
//! to cut it from outside. We remember the upstream socket of every upgraded request (from the
//! `connected_to_upstream` hook) and, on request, `shutdown(2)` it: the backend side sees the
//! connection end, Pingora's relay ends, and the client's connection is closed with it (HAProxy
//! `shutdown sessions server`). A socket is only shut down while its local and peer addresses
//! are still the ones recorded, so a descriptor number reused by another connection is never
//! touched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, Clone, Copy)]
struct Entry {
    backend: usize,
    fd: RawFd,
    local: SocketAddr,
    peer: SocketAddr,
}

/// The registry of one pool's upgraded upstream connections.
#[derive(Debug, Default)]
pub struct UpgradedConnections {
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

/// A registered connection; dropping it forgets the connection.
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

    /// Remember the upgraded connection to `backend` on socket `fd`; `None` if `fd` is not a
    /// connected IP socket.
    pub fn register_socket(self: &Arc<Self>, backend: usize, fd: RawFd) -> Option<Registration> {
        let local = socket_addr(fd, libc::getsockname)?;
        let peer = socket_addr(fd, libc::getpeername)?;
        Some(self.register(backend, fd, local, peer))
    }

    /// Remember an upgraded connection to `backend` on socket `fd` (`local` → `peer`).
    pub fn register(
        self: &Arc<Self>,
        backend: usize,
        fd: RawFd,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Relaxed);
        self.lock().insert(
            id,
            Entry {
                backend,
                fd,
                local,
                peer,
            },
        );
        Registration {
            registry: self.clone(),
            id,
        }
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
        let entries: Vec<(u64, Entry)> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.backend == backend)
            .map(|(id, e)| (*id, *e))
            .collect();
        let mut closed = 0;
        for (id, entry) in entries {
            if still_same_socket(&entry) {
                // SAFETY: `shutdown` on a descriptor has no memory effects; the checks above
                // make sure it is still the recorded connection.
                if unsafe { libc::shutdown(entry.fd, libc::SHUT_RDWR) } == 0 {
                    closed += 1;
                }
            }
            self.lock().remove(&id);
        }
        closed
    }
}

/// Whether `fd` is still the socket from `local` to `peer`.
fn still_same_socket(entry: &Entry) -> bool {
    socket_addr(entry.fd, libc::getsockname) == Some(entry.local)
        && socket_addr(entry.fd, libc::getpeername) == Some(entry.peer)
}

type AddrFn = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> i32;

fn socket_addr(fd: RawFd, which: AddrFn) -> Option<SocketAddr> {
    // SAFETY: a zeroed sockaddr_storage is a valid out-buffer of the length passed; the call
    // writes at most `len` bytes and we read it back only as the family it reports.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if which(fd, &mut storage as *mut _ as *mut libc::sockaddr, &mut len) != 0 {
            return None;
        }
        match storage.ss_family as libc::c_int {
            libc::AF_INET => {
                let a = &*(&storage as *const _ as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 => {
                let a = &*(&storage as *const _ as *const libc::sockaddr_in6);
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::io::AsRawFd;

    #[test]
    fn closing_a_backend_shuts_its_sockets_and_no_others() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let a = std::net::TcpStream::connect(addr).unwrap();
        let (mut a_server, _) = listener.accept().unwrap();
        let b = std::net::TcpStream::connect(addr).unwrap();
        let (_b_server, _) = listener.accept().unwrap();
        let registry = Arc::new(UpgradedConnections::default());
        let reg_a = registry.register(0, a.as_raw_fd(), a.local_addr().unwrap(), addr);
        let _reg_b = registry.register(1, b.as_raw_fd(), b.local_addr().unwrap(), addr);
        assert_eq!(registry.count_by_backend(2), [1, 1]);

        assert_eq!(registry.close_backend(0), 1);
        let mut buf = [0u8; 1];
        assert_eq!(a_server.read(&mut buf).unwrap(), 0, "the peer sees the end");
        assert_eq!(registry.count_by_backend(2), [0, 1]);
        drop(reg_a);
        assert_eq!(registry.count_by_backend(2), [0, 1]);
    }

    #[test]
    fn a_descriptor_now_used_by_another_connection_is_left_alone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let s = std::net::TcpStream::connect(addr).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let registry = Arc::new(UpgradedConnections::default());
        // Recorded with another local address: as if the fd number had been reused.
        let wrong_local: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let _reg = registry.register(0, s.as_raw_fd(), wrong_local, addr);
        assert_eq!(registry.close_backend(0), 0);
        server.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        let still_open =
            matches!(server.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(still_open);
    }
}
