//! The upstream connection of an HTTP/1.1 upgrade (WebSocket): opened by our own connector, whose
//! socket holds the backend's answer back until Pingora has forwarded the end of the request.
//!
//! Why: Pingora 0.9.1's upgrade relay (cloudflare/pingora#946) passes the end of the upgrade
//! request's empty body to its upstream half through a channel. When that half reads the
//! backend's `101` before it has taken the end flag from the channel, the late end flag is taken
//! for the end of the upgraded stream and the tunnel is closed right after the `101` (seen in
//! 1–5 % of openings by clients that write as soon as they have the `101`).
//!
//! What: an upgrade request's peer gets a [`GatedConnector`] (`HttpPeer.options.custom_l4`).
//! Its socket is our own `TcpStream`; once the request's [`Gate`] is armed (in
//! `connected_to_upstream`, after any TLS handshake), reads wait until the socket has seen two
//! flushes — the request header (`write_request_header`), then the end of the body
//! (`finish_body`, which the end flag triggers) — or until [`HOLD_AT_MOST`] has passed. The `101`
//! is then read after the end flag, the order Pingora handles correctly. The backend never
//! waits: only the proxy's reading of an answer that is already on its way is deferred, by the
//! time the relay takes to pass the end flag on.
//!
//! The connector does what Pingora's own TCP connect does for our peers: the connect timeout
//! (Pingora does not wrap a custom connector in it), `TCP_NODELAY` and keepalive (Pingora sets
//! them through [`VirtualSocket::set_socket_option`]), and it records the socket's descriptor,
//! which Pingora reports as -1 for a virtual socket, for closing upgraded connections
//! (`pool::upgraded`). An upgrade's peer has a group key of its own, so it never takes a pooled
//! connection (which would have no gate), and a zero idle timeout, so a connection whose upgrade
//! the backend refused is closed instead of being parked in the pool where nobody can use it.
//! Other requests are not touched.
//!
//! Limits: an upgrade request with a body (WebSocket handshakes have none) flushes once per body
//! write, so its reads pass once the body's first piece is sent; with a body in several pieces
//! the race remains possible if the backend answers before it has the whole body. Pingora's
//! `client_bind_to_ipv4`/`_ipv6` (not used by our configurations) does not apply to upgrades.

use async_trait::async_trait;
use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::ext::{self, TcpKeepalive};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::protocols::l4::stream::Stream;
use pingora_core::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long an armed gate holds reads at most; then they pass anyway (a request whose end
/// never reaches the relay must still get its answer).
pub const HOLD_AT_MOST: Duration = Duration::from_secs(1);

/// Flushes after arming before reads pass: the request header, then the end of the body.
const FLUSHES_BEFORE_READS: u8 = 2;

/// Group keys of upgrade peers: one each, so no two upgrades share a reuse hash (a pool's key is
/// a 64-bit hash, equal to one of these only by chance).
static NEXT_GROUP_KEY: AtomicU64 = AtomicU64::new(0x5715_c4e0_0000_0000);

/// Make `peer` an upgrade's peer: its connection is opened by a [`GatedConnector`], is never a
/// pooled one, and is not kept in the pool afterwards. Returns the gate to arm once connected.
pub fn gate_peer(peer: &mut HttpPeer) -> Arc<Gate> {
    let gate = Arc::new(Gate::new(HOLD_AT_MOST));
    peer.options.custom_l4 = Some(Arc::new(GatedConnector {
        gate: gate.clone(),
        connect_timeout: peer.options.connection_timeout,
    }));
    peer.group_key = NEXT_GROUP_KEY.fetch_add(1, Relaxed);
    peer.options.idle_timeout = Some(Duration::ZERO);
    gate
}

/// One upgrade attempt's gate, shared by its socket and the request's hooks.
#[derive(Debug)]
pub struct Gate {
    armed_at: OnceLock<Instant>,
    /// The connection's socket, -1 until connected.
    fd: AtomicI32,
    hold_at_most: Duration,
}

impl Gate {
    pub fn new(hold_at_most: Duration) -> Gate {
        Gate {
            armed_at: OnceLock::new(),
            fd: AtomicI32::new(-1),
            hold_at_most,
        }
    }

    /// From now on, reads wait for the request's end to be sent (at most `hold_at_most`).
    pub fn arm(&self) {
        let _ = self.armed_at.set(Instant::now());
    }

    fn is_armed(&self) -> bool {
        self.armed_at.get().is_some()
    }

    /// When held reads pass anyway.
    fn release_at(&self) -> Instant {
        self.armed_at.get().copied().unwrap_or_else(Instant::now) + self.hold_at_most
    }

    /// The socket descriptor of the gated connection, once connected. Valid while Pingora
    /// holds the connection (in `connected_to_upstream`, for instance); duplicate it to keep it.
    pub fn fd(&self) -> Option<RawFd> {
        Some(self.fd.load(Relaxed)).filter(|fd| *fd >= 0)
    }
}

/// Whether a gated socket's reads wait: a pure account of the flushes it has seen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    flushes: u8,
    released: bool,
}

impl Hold {
    /// Reads wait while the gate is armed and not yet released.
    pub fn holds_reads(&self, armed: bool) -> bool {
        armed && !self.released
    }

    /// A flush completed; only flushes after arming count. True if this one released reads.
    pub fn flushed(&mut self, armed: bool) -> bool {
        if !armed || self.released {
            return false;
        }
        self.flushes += 1;
        self.released = self.flushes >= FLUSHES_BEFORE_READS;
        self.released
    }

    /// Let reads pass from now on (the hold lasted long enough).
    pub fn release(&mut self) {
        self.released = true;
    }
}

/// Opens an upgrade's connection (see the module documentation).
#[derive(Debug)]
pub struct GatedConnector {
    gate: Arc<Gate>,
    connect_timeout: Option<Duration>,
}

#[async_trait]
impl L4Connect for GatedConnector {
    async fn connect(&self, addr: &SocketAddr) -> Result<Stream> {
        let SocketAddr::Inet(inet) = addr else {
            return Error::e_explain(ErrorType::ConnectError, "upgrades go to TCP backends only");
        };
        let stream = within(self.connect_timeout, ext::connect(inet, None)).await?;
        self.gate.fd.store(stream.as_raw_fd(), Relaxed);
        let socket = GatedSocket {
            stream,
            gate: self.gate.clone(),
            hold: Hold::default(),
            held_reader: None,
            deadline: None,
        };
        Ok(VirtualSocketStream::new(Box::new(socket)).into())
    }
}

/// `connect`, failing with `ConnectTimedout` after `timeout` (if any).
async fn within<T>(
    timeout: Option<Duration>,
    connect: impl Future<Output = Result<T>>,
) -> Result<T> {
    match timeout {
        Some(t) => match tokio::time::timeout(t, connect).await {
            Ok(result) => result,
            Err(_) => Error::e_explain(
                ErrorType::ConnectTimedout,
                format!("timeout {t:?} connecting to the backend"),
            ),
        },
        None => connect.await,
    }
}

/// Our TCP stream, with reads held while the gate says so.
#[derive(Debug)]
struct GatedSocket {
    stream: TcpStream,
    gate: Arc<Gate>,
    hold: Hold,
    /// The read that waits for the release.
    held_reader: Option<Waker>,
    /// When a held read passes anyway.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for GatedSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.hold.holds_reads(this.gate.is_armed()) {
            let gate = &this.gate;
            let deadline = this.deadline.get_or_insert_with(|| {
                Box::pin(tokio::time::sleep_until(gate.release_at().into()))
            });
            if deadline.as_mut().poll(cx).is_pending() {
                this.held_reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            log::debug!("upgrade: the request's end did not reach the backend in time; reading");
            this.hold.release();
            this.deadline = None;
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.stream).poll_flush(cx))?;
        if this.hold.flushed(this.gate.is_armed()) {
            this.deadline = None;
            if let Some(reader) = this.held_reader.take() {
                reader.wake();
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl VirtualSocket for GatedSocket {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> std::io::Result<()> {
        match opt {
            VirtualSockOpt::NoDelay => self.stream.set_nodelay(true),
            VirtualSockOpt::KeepAlive(ka) => set_keepalive(&self.stream, &ka),
            _ => Ok(()),
        }
    }
}

fn set_keepalive(stream: &TcpStream, ka: &TcpKeepalive) -> std::io::Result<()> {
    ext::set_tcp_keepalive(stream, ka).map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests;
