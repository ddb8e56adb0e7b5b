//! The proxy listeners' sockets, prepared before Pingora starts: handed to us by a service
//! manager (systemd socket activation: `LISTEN_PID`, `LISTEN_FDS`, descriptors from 3 on) or
//! bound here, with `TCP_DEFER_ACCEPT` when the listener's `defer_accept` asks for it; and the
//! wrapper that gives them to Pingora's listeners, which use them instead of binding their own,
//! the same way they use the sockets a graceful upgrade hands over.
//!
//! With socket activation the manager owns the listening sockets, so a plain restart (stop, then
//! start) refuses no connection: what arrives between the two processes waits in the socket's
//! queue and the new process accepts it. Each inherited socket is matched to a listener (or the
//! admin listener) by its bound address.
//!
//! `TCP_DEFER_ACCEPT` matters when a process stops: Pingora drops every connection still waiting
//! for its first request when it shuts down, so a connection accepted just before, whose request
//! was still in flight, would be cut. Deferred, a connection is only accepted with its first
//! bytes already there, and Pingora reads a request head that came with them before it looks at
//! the shutdown (not a head spread over several segments, nor a TLS handshake's request).

use async_trait::async_trait;
use pingora_core::server::{ListenFds, RuntimeOpts, ShutdownWatch};
use pingora_core::services::{ServiceReadyNotifier, ServiceWithDependents};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;

/// The first descriptor a service manager passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// Listening sockets prepared for Pingora, inherited or bound here: (the listener's address as
/// Pingora keys it, descriptor).
pub type ListenSockets = Arc<Vec<(String, RawFd)>>;

/// How many descriptors the environment passes to this process: `LISTEN_FDS` when
/// `LISTEN_PID` names us, else none (they were meant for another process).
pub fn passed_count(listen_pid: Option<&str>, listen_fds: Option<&str>, our_pid: u32) -> usize {
    let (Some(pid), Some(count)) = (listen_pid, listen_fds) else {
        return 0;
    };
    if pid.trim().parse::<u32>().ok() != Some(our_pid) {
        return 0;
    }
    count.trim().parse::<usize>().unwrap_or(0)
}

/// Match each inherited socket to the listener bound to the same address. Every inherited socket
/// must belong to one (a socket nobody serves would queue connections forever); a listener
/// without one binds its own.
pub fn assign(
    inherited: &[(RawFd, SocketAddr)],
    listeners: &[SocketAddr],
) -> Result<Vec<(String, RawFd)>, String> {
    inherited
        .iter()
        .enumerate()
        .map(|(i, (fd, addr))| {
            if inherited[..i].iter().any(|(_, earlier)| earlier == addr) {
                Err(format!(
                    "inherited sockets for {addr} twice (LISTEN_FDS, descriptor {fd}): one \
                     listener takes one socket"
                ))
            } else if listeners.contains(addr) {
                Ok((addr.to_string(), *fd))
            } else {
                Err(format!(
                    "inherited socket {addr} (LISTEN_FDS, descriptor {fd}) matches no listener \
                     address in sticky.listeners or sticky.admin"
                ))
            }
        })
        .collect()
}

/// Read the sockets the service manager passed (see [`passed_count`]) and make them usable by
/// tokio (non-blocking, close-on-exec). The variables stay (changing the environment is unsound
/// once an embedding program runs threads); `LISTEN_PID` keeps any other process from taking
/// them. Errors name the descriptor.
pub fn passed_sockets() -> Result<Vec<(RawFd, SocketAddr)>, String> {
    let count = passed_count(
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::env::var("LISTEN_FDS").ok().as_deref(),
        std::process::id(),
    );
    (0..count)
        .map(|i| {
            let fd = FIRST_FD + i as RawFd;
            listening_tcp_address(fd).map(|addr| (fd, addr))
        })
        .collect()
}

/// The sockets a service manager passed to this process (systemd socket activation), keyed by
/// their addresses, for [`WithListenSockets`]: a program that embeds the affinity engine in its
/// own Pingora server serves them the way the proxy does. Empty without socket activation.
pub fn activated() -> Result<ListenSockets, String> {
    let passed = passed_sockets()?;
    let by_address = passed.into_iter().map(|(fd, addr)| (addr.to_string(), fd));
    Ok(Arc::new(by_address.collect()))
}

/// The address of a listening TCP socket at `fd`, after making it non-blocking and
/// close-on-exec.
fn listening_tcp_address(fd: RawFd) -> Result<SocketAddr, String> {
    use std::os::fd::FromRawFd;
    let fail = |what: &str| {
        format!(
            "inherited descriptor {fd} (LISTEN_FDS): {what}: {}",
            std::io::Error::last_os_error()
        )
    };
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: plain syscalls on a descriptor number; the out-pointers are valid for their sizes.
    unsafe {
        if libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        ) != 0
        {
            return Err(fail("not a socket"));
        }
        if accepting == 0 {
            return Err(format!(
                "inherited descriptor {fd} (LISTEN_FDS) is not a listening socket"
            ));
        }
        if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
            return Err(fail("fcntl(FD_CLOEXEC)"));
        }
    }
    // Borrowed, not owned: Pingora takes the descriptor over later.
    // SAFETY: `fd` is an open socket (checked above); ManuallyDrop keeps it open.
    let listener = std::mem::ManuallyDrop::new(unsafe { std::net::TcpListener::from_raw_fd(fd) });
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("inherited descriptor {fd} (LISTEN_FDS): {e}"))?;
    listener
        .local_addr()
        .map_err(|e| format!("inherited descriptor {fd} (LISTEN_FDS) is not a TCP socket: {e}"))
}

/// Bind a listening socket for `addr` (address reuse on, as Pingora's own bind), waiting up to
/// `patience` while another process still holds the address (a stopping one in its grace).
pub fn bind(addr: SocketAddr, patience: std::time::Duration) -> Result<RawFd, String> {
    use std::os::fd::IntoRawFd;
    let deadline = std::time::Instant::now() + patience;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => {
                listener
                    .set_nonblocking(true)
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                return Ok(listener.into_raw_fd());
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                log::warn!("{addr} is in use, trying again");
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            Err(e) => return Err(format!("cannot listen on {addr}: {e}")),
        }
    }
}

/// Turn `TCP_DEFER_ACCEPT` on (1 s, the shortest) or off for a listening socket.
pub fn set_defer_accept(fd: RawFd, on: bool) -> Result<(), String> {
    let seconds: libc::c_int = if on { 1 } else { 0 };
    // SAFETY: setsockopt with a pointer to a live c_int of the size given.
    let status = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(format!(
            "TCP_DEFER_ACCEPT on descriptor {fd}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Is `TCP_DEFER_ACCEPT` on for this listening socket? (What the tests check on a socket the
/// proxy was given.)
pub fn defer_accept(fd: RawFd) -> Result<bool, String> {
    let mut seconds: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt with out-pointers valid for their sizes.
    let status = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&mut seconds as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if status == 0 {
        Ok(seconds > 0)
    } else {
        Err(format!(
            "TCP_DEFER_ACCEPT of descriptor {fd}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// A Pingora service that first puts the prepared sockets into the server's table of listening
/// sockets (unless a graceful upgrade already filled in that address), so its listeners use
/// them instead of binding. Everything else is the inner service's.
pub struct WithListenSockets<S> {
    inner: S,
    sockets: ListenSockets,
}

impl<S> WithListenSockets<S> {
    /// `inner`, whose listeners use `sockets` (by address) instead of binding their own.
    pub fn new(inner: S, sockets: ListenSockets) -> Self {
        WithListenSockets { inner, sockets }
    }
}

#[async_trait]
impl<S: ServiceWithDependents> ServiceWithDependents for WithListenSockets<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        if let Some(table) = &fds {
            let mut table = table.lock();
            for (addr, fd) in self.sockets.iter() {
                if table.get(addr).is_none() {
                    table.add(addr.clone(), *fd);
                }
            }
        }
        self.inner
            .start_service(fds, shutdown, listeners_per_fd, ready_notifier)
            .await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn runtime_opts_override(&self, global: &RuntimeOpts) -> Option<RuntimeOpts> {
        self.inner.runtime_opts_override(global)
    }

    fn on_startup_delay(&self, time_waited: std::time::Duration) {
        self.inner.on_startup_delay(time_waited)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

/// The listening sockets for Pingora: those a service manager passed, and (when
/// `bind_unpassed` is set) the proxy listeners' own, bound here, each with its `defer_accept`, and the
/// admin listener's.
pub fn prepare(
    config: &crate::config::Config,
    bind_unpassed: bool,
) -> Result<Vec<(String, std::os::fd::RawFd)>, String> {
    let addresses: Vec<std::net::SocketAddr> = config
        .listeners
        .iter()
        .map(|l| l.addr)
        .chain(config.admin.as_ref().map(|a| a.addr))
        .collect();
    let mut sockets = assign(&passed_sockets()?, &addresses)?;
    for (addr, fd) in &sockets {
        log::info!("listener {addr}: using the socket passed as descriptor {fd}");
    }
    // A process stopping with the same config may hold an address for its grace.
    let patience = config.grace + std::time::Duration::from_secs(10);
    // The socket for `addr`: the passed one, else (with `bind`) one bound here, named `field`
    // in the error.
    let mut socket_for = |addr: std::net::SocketAddr, field: String| {
        let key = addr.to_string();
        if let Some((_, fd)) = sockets.iter().find(|(a, _)| *a == key) {
            return Ok(Some(*fd));
        }
        if !bind_unpassed {
            return Ok(None);
        }
        let fd = bind(addr, patience).map_err(|e| format!("{field}: {e}"))?;
        sockets.push((key, fd));
        Ok::<_, String>(Some(fd))
    };
    for (i, listener) in config.listeners.iter().enumerate() {
        let field = format!("sticky.listeners[{i}].addr");
        if let Some(fd) = socket_for(listener.addr, field)? {
            set_defer_accept(fd, listener.defer_accept)
                .map_err(|e| format!("sticky.listeners[{i}].defer_accept: {e}"))?;
        }
    }
    // The admin listener too, so that an address it cannot have is a start error (Pingora's
    // own bind panics in the service's task and the proxy ran on without its admin API).
    if let Some(admin) = &config.admin {
        socket_for(admin.addr, "sticky.admin.addr".to_string())?;
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn descriptors_count_only_when_listen_pid_is_ours() {
        assert_eq!(passed_count(Some("42"), Some("2"), 42), 2);
        assert_eq!(passed_count(Some("41"), Some("2"), 42), 0);
        assert_eq!(passed_count(None, Some("2"), 42), 0);
        assert_eq!(passed_count(Some("42"), None, 42), 0);
        assert_eq!(passed_count(Some("42"), Some("two"), 42), 0);
    }

    #[test]
    fn each_inherited_socket_goes_to_the_listener_with_its_address() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let b: SocketAddr = "[::1]:9000".parse().unwrap();
        let assigned = assign(&[(3, a), (4, b)], &[b, a]).unwrap();
        assert_eq!(
            assigned,
            vec![
                ("127.0.0.1:8080".to_string(), 3),
                ("[::1]:9000".to_string(), 4)
            ]
        );
    }

    #[test]
    fn two_inherited_sockets_for_one_address_are_an_error() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let err = assign(&[(3, a), (4, a)], &[a]).unwrap_err();
        assert!(
            err.contains("127.0.0.1:8080") && err.contains("twice"),
            "{err}"
        );
    }

    #[test]
    fn an_inherited_socket_no_listener_serves_is_an_error_naming_its_address() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let err = assign(&[(3, other)], &[a]).unwrap_err();
        assert!(err.contains("127.0.0.1:8081"), "{err}");
        assert!(err.contains("descriptor 3"), "{err}");
    }

    #[test]
    fn a_bound_socket_listens_on_its_address_and_defer_accept_can_be_switched() {
        use std::os::fd::FromRawFd;
        let fd = bind("127.0.0.1:0".parse().unwrap(), Duration::ZERO).unwrap();
        let addr = listening_tcp_address(fd).unwrap();
        assert!(addr.ip().is_loopback() && addr.port() != 0);
        set_defer_accept(fd, true).unwrap();
        assert!(defer_accept(fd).unwrap());
        set_defer_accept(fd, false).unwrap();
        assert!(!defer_accept(fd).unwrap());
        // SAFETY: `fd` is ours, closed once here.
        drop(unsafe { std::net::TcpListener::from_raw_fd(fd) });
    }

    #[test]
    fn binding_an_address_that_is_not_ours_names_it() {
        let err = bind("192.0.2.1:80".parse().unwrap(), Duration::ZERO).unwrap_err();
        assert!(err.contains("192.0.2.1:80"), "{err}");
    }

    #[test]
    fn a_descriptor_that_is_not_a_listening_socket_is_refused() {
        let file = tempfile::tempfile().unwrap();
        use std::os::fd::AsRawFd;
        let err = listening_tcp_address(file.as_raw_fd()).unwrap_err();
        assert!(err.contains("not a socket"), "{err}");
        let connected = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = listening_tcp_address(connected.as_raw_fd()).unwrap_err();
        assert!(err.contains("not a listening socket"), "{err}");
    }
}
