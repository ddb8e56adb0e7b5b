//! The HTTP/1 keep-alive loop of a client connection, run by [`super::ClientSide`] in place of
//! Pingora's own (`ServerApp for T: HttpServerApp`, which builds the next request's whole state
//! — the boxed `process_new_http` future, the session, its 4 KiB head buffer — and then waits
//! for the client inside it: about 23 KB held by every idle kept-alive connection).
//!
//! Between two requests this loop waits for the client's next bytes holding only the stream (a
//! zero-capacity read of [`ClientStream`], under its keep-alive deadline: the stream reads the
//! bytes when they come and keeps them for Pingora's first read, so waiting costs no system call of
//! its own), and lets Pingora build the next request's state when they arrive. It may wait on the
//! socket only when Pingora holds none of the client's bytes: a request pipelined behind the last
//! one, already read and kept in the persistent settings, would otherwise wait for bytes that never
//! come. Pingora has no way to ask, so the loop counts: [`Accounting`] compares the bytes
//! [`ClientStream`] read since the last wait with the sizes of the requests served since then (head
//! and body, each reported by the request-head hook, [`request_size`]). Equal: nothing is held,
//! wait on the socket. Otherwise, or when a size is unknown, do as Pingora does for that idle
//! period (build the next session at once, with what it holds); the count carries on, so the next
//! idle period after a pipelined burst or a `POST` with a request behind it waits on the socket
//! again.
//!
//! Shutdown: [`Closing`] ends the connections waiting here when the service stops (Pingora's
//! own `cleanup` ends those waiting in its sessions).

use super::ClientStream;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora_core::apps::HttpServerApp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use tokio::io::ReadBuf;
use tokio::sync::Notify;

/// Pingora's keep-alive setting for a connection's first request (its loop's default, 60 s;
/// [`ClientStream`] applies the listener's own timeouts under it).
const FIRST_KEEPALIVE_SECONDS: u64 = 60;

/// Set once the service stops: connections waiting between requests close.
#[derive(Debug, Default)]
pub struct Closing {
    closed: AtomicBool,
    notify: Notify,
}

impl Closing {
    /// The service stops listening: close every connection waiting between requests, now and
    /// from now on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// Serve the HTTP/1 requests of one client connection (`stream`, a [`ClientStream`]) with `app`
/// until the connection ends.
pub async fn serve<A>(
    app: &Arc<A>,
    closing: &Closing,
    stream: Stream,
    shutdown: &ShutdownWatch,
) -> Option<Stream>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    let mut session = ServerSession::new_http1(stream);
    // As Pingora's loop: no keep-alive once the server is shutting down.
    session.set_keepalive((!*shutdown.borrow()).then_some(FIRST_KEEPALIVE_SECONDS));
    session.set_keepalive_reuses_remaining(
        app.server_options()
            .and_then(|options| options.keepalive_request_limit),
    );
    let mut accounting = Accounting::default();
    loop {
        let (mut stream, settings) = app.process_new_http(session, shutdown).await?.consume();
        let nothing_held = ClientStream::of(&stream).is_some_and(|client| {
            accounting.request_done(client.take_request_size(), client.bytes_read())
        });
        if nothing_held && !client_sends(&mut stream, closing).await {
            return None;
        }
        session = ServerSession::new_http1(stream);
        if let Some(settings) = settings {
            settings.apply_to_session(&mut session);
        }
    }
}

/// Wait until the client sends something or closes (`true`: go on and read it), or the
/// keep-alive deadline passes or the service stops (`false`). Reads nothing.
async fn client_sends(stream: &mut Stream, closing: &Closing) -> bool {
    let mut closed = pin!(closing.notify.notified());
    // Registered before the flag is read: a `close` in between is not missed.
    closed.as_mut().enable();
    if closing.closed.load(Ordering::Acquire) {
        return false;
    }
    let ready = poll_fn(|cx| {
        // Bytes that came first are served, as Pingora's own wait does.
        let mut empty = ReadBuf::new(&mut []);
        if let Poll::Ready(result) = Pin::new(&mut **stream).poll_read(cx, &mut empty) {
            return Poll::Ready(result.is_ok());
        }
        closed.as_mut().poll(cx).map(|()| false)
    })
    .await;
    ready && !ClientStream::of(stream).is_some_and(ClientStream::is_ended)
}

/// The bytes a request takes on the connection (its head as read, and its `Content-Length`
/// body), when that is known exactly: not for a chunked body, nor for a head whose request line
/// Pingora may have rewritten (see [`maybe_escaped`]). Called from the request-head hook.
pub fn request_size(downstream: &pingora_core::protocols::http::ServerSession) -> Option<u64> {
    let h1 = downstream.as_http1()?;
    let head = h1.get_headers_raw_bytes();
    if maybe_escaped(&head) {
        return None;
    }
    let headers = &h1.req_header().headers;
    if headers.contains_key(TRANSFER_ENCODING) {
        return None;
    }
    let body = match headers.get(CONTENT_LENGTH) {
        None => 0,
        Some(value) => std::str::from_utf8(value.as_bytes()).ok()?.parse().ok()?,
    };
    (head.len() as u64).checked_add(body)
}

/// Whether Pingora may have rewritten this head's request line before reporting it: it
/// percent-encodes the bytes `httparse` refuses in a request target (controls, space, `"`, `<`,
/// `>`, DEL, non-ASCII), so the head it reports is longer than the one read. Such a rewrite
/// leaves a `%` and an upper-case code of one of those bytes in the first line; a line without
/// one was not rewritten.
pub fn maybe_escaped(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    line.windows(3).any(|w| {
        let code = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let (Some(high), Some(low)) = (code(w[1]), code(w[2])) else {
            return false;
        };
        let byte = high << 4 | low;
        w[0] == b'%' && (!(0x21..0x7f).contains(&byte) || matches!(byte, b'"' | b'<' | b'>'))
    })
}

/// The count that tells whether Pingora holds bytes of the client's (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accounting {
    /// [`ClientStream::bytes_read`] at the last wait on the socket (or the connection's start),
    /// when nothing was held.
    mark: u64,
    /// The sizes of the requests served since then; `None` once one was unknown.
    served: Option<u64>,
}

impl Default for Accounting {
    fn default() -> Self {
        Accounting {
            mark: 0,
            served: Some(0),
        }
    }
}

impl Accounting {
    /// A request of `size` bytes (if known) was served and the connection has read `read`
    /// bytes in all: whether every byte read was a served request's, so that waiting on the
    /// socket is safe (the count then starts again from here).
    pub fn request_done(&mut self, size: Option<u64>, read: u64) -> bool {
        self.served = self
            .served
            .zip(size)
            .and_then(|(served, size)| served.checked_add(size));
        let nothing_held = read
            .checked_sub(self.mark)
            .is_some_and(|since| self.served == Some(since));
        if nothing_held {
            *self = Accounting {
                mark: read,
                served: Some(0),
            };
        }
        nothing_held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_read_exactly_lets_the_connection_wait_on_the_socket() {
        let mut a = Accounting::default();
        assert!(a.request_done(Some(40), 40));
        assert!(a.request_done(Some(35), 75));
        // A body read with its head.
        assert!(a.request_done(Some(100 + 12), 187));
    }

    #[test]
    fn bytes_read_past_a_request_fall_back_until_the_requests_served_account_for_them() {
        let mut a = Accounting::default();
        // Two requests of 40 bytes in one read: the second is held after the first.
        assert!(!a.request_done(Some(40), 80));
        assert!(a.request_done(Some(40), 80));
        // A second request and half of a third in one read; the third's rest read after.
        assert!(!a.request_done(Some(40), 140));
        assert!(a.request_done(Some(40), 160));
        // A 10-byte piece of the next request read with a body: held until it is served.
        assert!(!a.request_done(Some(50), 220));
        assert!(a.request_done(Some(40), 250));
    }

    #[test]
    fn an_unknown_size_falls_back_for_the_rest_of_the_connection() {
        let mut a = Accounting::default();
        assert!(!a.request_done(None, 40));
        assert!(!a.request_done(Some(40), 80));
        assert!(!a.request_done(Some(40), 120));
        // Fewer bytes read than the requests take (a body never read): never a wait.
        let mut b = Accounting::default();
        assert!(!b.request_done(Some(140), 40));
        assert!(!b.request_done(Some(40), 80));
    }

    #[test]
    fn only_a_request_line_pingora_may_have_escaped_is_suspect() {
        for suspect in [
            &b"GET /a%20b HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            b"GET /%22x%22 HTTP/1.1\r\n\r\n",
            b"GET /caf%C3%A9 HTTP/1.1\r\n\r\n",
            b"GET /%3C HTTP/1.1\n\n",
            b"GET /%7F HTTP/1.1\r\n\r\n",
            b"GET /%0A HTTP/1.1\r\n\r\n",
        ] {
            assert!(maybe_escaped(suspect), "{}", suspect.escape_ascii());
        }
        for plain in [
            &b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            // Codes Pingora never writes, lower-case codes, a `%` in a later line.
            b"GET /a%2Fb?q=%3D%26 HTTP/1.1\r\n\r\n",
            b"GET /caf%c3%a9 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nCookie: a=%20%22\r\n\r\n",
            b"GET /100% HTTP/1.1\r\n\r\n",
            b"GET /%2 HTTP/1.1\r\n\r\n",
            b"",
        ] {
            assert!(!maybe_escaped(plain), "{}", plain.escape_ascii());
        }
    }
}
