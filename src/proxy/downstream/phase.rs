//! The rules of a client connection, as pure functions of time and events (no I/O): which
//! deadline a read is under, what happens when it passes, when a write has stalled too long,
//! and how a head Pingora wrote by itself loses its `Server` line. `super::stream` applies
//! them to the socket.

use crate::config::ClientTimeouts;
use std::time::Instant;

/// Where an HTTP/1 connection is between and within requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the first byte of a request; at `deadline` the connection is closed without
    /// a word. `first`: the connection's first request, whose head must be complete by the same
    /// deadline (HAProxy counts `timeout http-request` from the accept).
    Idle { deadline: Instant, first: bool },
    /// A request head has begun and must be complete by `deadline`.
    Head { deadline: Instant },
    /// The head was read: the request and its answer are bounded by Pingora's and the pool's
    /// timeouts, not by these.
    Busy,
    /// HTTP/2 (by ALPN or an h2c preface): Pingora's own idle timeout applies.
    Http2,
}

/// What the proxy's hooks report about the request in progress (one at a time: the latest wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Signal {
    None = 0,
    /// The request head was read and handed to the proxy.
    HeadRead = 1,
    /// The request is over (answered, or failed); the connection may wait for another.
    Done = 2,
}

impl Signal {
    pub fn from_u8(value: u8) -> Signal {
        match value {
            1 => Signal::HeadRead,
            2 => Signal::Done,
            _ => Signal::None,
        }
    }
}

/// What a read that found nothing does once its deadline has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No request had begun: end the connection quietly (as HAProxy and NGINX do).
    Quiet,
    /// A head had begun and is late: end the connection with an error Pingora logs.
    HeadTimedOut,
}

impl Phase {
    /// A new connection, waiting for its first request.
    pub fn accepted(now: Instant, timeouts: &ClientTimeouts) -> Phase {
        Phase::Idle {
            deadline: now + timeouts.http_request,
            first: true,
        }
    }

    /// The phase after a hook's `signal` (`now` is read only when needed).
    pub fn signalled(
        self,
        signal: Signal,
        now: impl FnOnce() -> Instant,
        timeouts: &ClientTimeouts,
    ) -> Phase {
        match (self, signal) {
            (Phase::Http2, _) | (_, Signal::None) => self,
            (_, Signal::HeadRead) => Phase::Busy,
            (_, Signal::Done) => Phase::Idle {
                deadline: now() + timeouts.keepalive,
                first: false,
            },
        }
    }

    /// The phase after a read returned request bytes.
    pub fn on_bytes(self, now: Instant, timeouts: &ClientTimeouts) -> Phase {
        match self {
            Phase::Idle { deadline, first } => Phase::Head {
                deadline: if first {
                    deadline
                } else {
                    now + timeouts.http_request
                },
            },
            other => other,
        }
    }

    /// The time by which a read must have found something.
    pub fn read_deadline(self) -> Option<Instant> {
        match self {
            Phase::Idle { deadline, .. } | Phase::Head { deadline } => Some(deadline),
            Phase::Busy | Phase::Http2 => None,
        }
    }

    /// What happens at `now` to a read that found nothing, if its deadline has passed.
    pub fn expired(self, now: Instant) -> Option<Expiry> {
        match self {
            Phase::Idle { deadline, .. } if now >= deadline => Some(Expiry::Quiet),
            Phase::Head { deadline } if now >= deadline => Some(Expiry::HeadTimedOut),
            _ => None,
        }
    }

    /// Whether the proxy's hooks have not seen the current request yet, so that a response
    /// written now is Pingora's own (a `400` for a malformed head, a `405` for `CONNECT`).
    pub fn before_hooks(self) -> bool {
        matches!(self, Phase::Idle { .. } | Phase::Head { .. })
    }
}

/// When stalled sending gives up: `armed` if it already stalled, else `client_send` from now.
pub fn stall_deadline(armed: Option<Instant>, now: Instant, timeouts: &ClientTimeouts) -> Instant {
    armed.unwrap_or(now + timeouts.client_send)
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether the first bytes a connection sent are the HTTP/2 connection preface.
pub fn is_h2_preface(bytes: &[u8]) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
    let n = bytes.len().min(PREFACE.len());
    n > 0 && bytes[..n] == PREFACE[..n]
}

/// `head` (a whole HTTP/1 response head, as Pingora writes its own answers) without its
/// `Server: Pingora` line; `None` when there is none to remove.
pub fn without_server_line(head: &[u8]) -> Option<Vec<u8>> {
    if !head.starts_with(b"HTTP/1.") {
        return None;
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let mut start = head.windows(2).position(|w| w == b"\r\n")? + 2;
    while start < end + 2 {
        let line_end = start + head[start..].windows(2).position(|w| w == b"\r\n")?;
        let line = &head[start..line_end];
        let is_server = line.len() >= 7
            && line[..7].eq_ignore_ascii_case(b"server:")
            && line[7..].trim_ascii().eq_ignore_ascii_case(b"pingora");
        if is_server {
            let mut edited = Vec::with_capacity(head.len());
            edited.extend_from_slice(&head[..start]);
            edited.extend_from_slice(&head[line_end + 2..]);
            return Some(edited);
        }
        start = line_end + 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T: ClientTimeouts = ClientTimeouts {
        http_request: Duration::from_secs(30),
        keepalive: Duration::from_secs(60),
        client_send: Duration::from_secs(10),
    };

    #[test]
    fn a_first_request_must_be_complete_within_the_head_timeout_of_the_accept() {
        let t0 = Instant::now();
        let phase = Phase::accepted(t0, &T);
        assert_eq!(phase.read_deadline(), Some(t0 + T.http_request));
        // Its first byte, 20 s later, does not restart the clock.
        let head = phase.on_bytes(t0 + Duration::from_secs(20), &T);
        assert_eq!(
            head,
            Phase::Head {
                deadline: t0 + T.http_request
            }
        );
        assert_eq!(head.expired(t0 + Duration::from_secs(29)), None);
        assert_eq!(
            head.expired(t0 + T.http_request),
            Some(Expiry::HeadTimedOut)
        );
        // Without any byte the connection goes quietly.
        assert_eq!(phase.expired(t0 + T.http_request), Some(Expiry::Quiet));
    }

    #[test]
    fn later_requests_wait_the_keepalive_time_then_have_the_head_timeout_from_their_first_byte() {
        let t0 = Instant::now();
        let busy = Phase::accepted(t0, &T).signalled(Signal::HeadRead, || t0, &T);
        assert_eq!(busy, Phase::Busy);
        assert_eq!(
            busy.read_deadline(),
            None,
            "a busy request is not bounded here"
        );
        let done = t0 + Duration::from_secs(100);
        let idle = busy.signalled(Signal::Done, || done, &T);
        assert_eq!(idle.read_deadline(), Some(done + T.keepalive));
        assert_eq!(idle.expired(done + T.keepalive), Some(Expiry::Quiet));
        let byte = done + Duration::from_secs(50);
        let head = idle.on_bytes(byte, &T);
        assert_eq!(head.read_deadline(), Some(byte + T.http_request));
        // More bytes do not move the deadline.
        assert_eq!(head.on_bytes(byte + Duration::from_secs(5), &T), head);
    }

    #[test]
    fn the_latest_signal_wins_and_http2_ignores_them() {
        let t0 = Instant::now();
        let head = Phase::Head { deadline: t0 };
        assert_eq!(head.signalled(Signal::None, || t0, &T), head);
        assert!(matches!(
            head.signalled(Signal::Done, || t0, &T),
            Phase::Idle { first: false, .. }
        ));
        assert_eq!(
            Phase::Http2.signalled(Signal::HeadRead, || t0, &T),
            Phase::Http2
        );
        assert_eq!(Phase::Http2.on_bytes(t0, &T), Phase::Http2);
        assert_eq!(Phase::Http2.read_deadline(), None);
        for s in [Signal::None, Signal::HeadRead, Signal::Done] {
            assert_eq!(Signal::from_u8(s as u8), s);
        }
    }

    #[test]
    fn only_answers_written_before_the_hooks_are_pingoras_own() {
        let t0 = Instant::now();
        assert!(Phase::accepted(t0, &T).before_hooks());
        assert!(Phase::Head { deadline: t0 }.before_hooks());
        assert!(!Phase::Busy.before_hooks());
        assert!(!Phase::Http2.before_hooks());
    }

    #[test]
    fn a_stall_keeps_its_first_deadline_and_deadlines_combine_to_the_earliest() {
        let t0 = Instant::now();
        let first = stall_deadline(None, t0, &T);
        assert_eq!(first, t0 + T.client_send);
        assert_eq!(
            stall_deadline(Some(first), t0 + Duration::from_secs(5), &T),
            first
        );
        let later = t0 + Duration::from_secs(1);
        assert_eq!(earliest(Some(t0), Some(later)), Some(t0));
        assert_eq!(earliest(None, Some(later)), Some(later));
        assert_eq!(earliest(None, None), None);
    }

    #[test]
    fn the_h2_preface_is_recognised_from_its_first_bytes() {
        assert!(is_h2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(is_h2_preface(b"PRI *"));
        assert!(!is_h2_preface(b"GET / HTTP/1.1\r\n"));
        assert!(!is_h2_preface(b""));
    }

    #[test]
    fn pingoras_own_heads_lose_their_server_line_and_nothing_else() {
        let head = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nDate: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let edited = without_server_line(head).unwrap();
        assert_eq!(
            edited,
            b"HTTP/1.1 400 Bad Request\r\nDate: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        // Any case, last line.
        let last =
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nserver:  pingora\r\n\r\n";
        assert_eq!(
            without_server_line(last).unwrap(),
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"
        );
        // Another server's name, no Server line, not a head, an unfinished head: untouched.
        for other in [
            &b"HTTP/1.1 200 OK\r\nServer: backend-httpd\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"hello Server: Pingora\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\n",
            b"",
        ] {
            assert_eq!(without_server_line(other), None, "{other:?}");
        }
        // A body after the head is kept as it is.
        let with_body = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\n\r\nServer: Pingora\r\n";
        assert_eq!(
            without_server_line(with_body).unwrap(),
            b"HTTP/1.1 400 Bad Request\r\n\r\nServer: Pingora\r\n"
        );
    }
}
