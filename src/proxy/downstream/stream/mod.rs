//! [`ClientStream`]: the client's connection as Pingora sees it, wrapped once per connection
//! so that the listener's timeouts hold whatever Pingora is doing with it (reading a head,
//! waiting between requests, writing an answer), written data is pushed out when the proxy has
//! nothing more to send at once, and Pingora's own answers lose their `Server` line.
//!
//! The proxy's hooks reach it through [`ClientStream::of`] and tell it what the request is
//! doing (two atomics); everything else happens in the poll functions, under the rules of
//! [`super::phase`].

use super::phase::{self, Expiry, Phase, Signal};
use crate::config::ClientTimeouts;
use pingora_core::protocols::{Peek, Shutdown, Stream, ALPN, IO};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::task::{ready, Context, Poll, Waker};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

mod delegate;
mod held;

use held::Held;

/// [`ClientStream::request_size`] when no size was reported.
const NO_SIZE: u64 = u64::MAX;

/// A client connection with the listener's timeouts (see the module doc).
#[derive(Debug)]
pub struct ClientStream {
    inner: Stream,
    timeouts: ClientTimeouts,
    phase: Phase,
    /// Set by hooks ([`Signal`] as `u8`), taken by the next poll.
    signal: AtomicU8,
    /// Set by hooks: push each write out at once (a `Content-Length` answer still coming in).
    flush_each_write: AtomicBool,
    /// Bytes read from the client since the connection began.
    read: u64,
    /// Set by the request-head hook, taken by the keep-alive loop: the bytes the request takes
    /// on the connection (head and body), or [`NO_SIZE`].
    request_size: AtomicU64,
    /// A write was accepted but could not be pushed out yet.
    unflushed: bool,
    /// Since sending stalled: when it gives up.
    stalled_until: Option<Instant>,
    /// One timer for the nearest deadline, made when first needed.
    timer: Option<Pin<Box<Sleep>>>,
    /// When the timer will wake this task (it was polled for it): a later deadline needs no
    /// new registration, the early wake-up re-arms it (as tokio's own timer entries do).
    armed: Option<(Instant, Waker)>,
    /// A timeout ended the connection: every later operation fails.
    ended: bool,
    /// The listener accepts h2c: the first bytes may be the HTTP/2 preface.
    h2c: bool,
    /// A head being written without its `Server` line: the edited bytes, how many went out,
    /// and the caller's length.
    edit: Option<(Vec<u8>, usize, usize)>,
    /// Bytes read while the keep-alive loop waited, not yet read by Pingora.
    held: Held,
}

impl ClientStream {
    pub fn new(inner: Stream, timeouts: ClientTimeouts, h2c: bool) -> ClientStream {
        let phase = if inner.selected_alpn_proto() == Some(ALPN::H2) {
            Phase::Http2
        } else {
            Phase::accepted(Instant::now(), &timeouts)
        };
        ClientStream {
            inner,
            timeouts,
            phase,
            signal: AtomicU8::new(Signal::None as u8),
            flush_each_write: AtomicBool::new(false),
            read: 0,
            request_size: AtomicU64::new(NO_SIZE),
            unflushed: false,
            stalled_until: None,
            timer: None,
            armed: None,
            ended: false,
            h2c,
            edit: None,
            held: Held::default(),
        }
    }

    /// The wrapper under a Pingora stream, if it is one.
    pub fn of(stream: &Stream) -> Option<&ClientStream> {
        let io: &dyn IO = &**stream;
        io.as_any().downcast_ref::<ClientStream>()
    }

    /// A hook's report on the request (see [`Signal`]).
    pub fn signal(&self, signal: Signal) {
        self.signal.store(signal as u8, Relaxed);
    }

    /// Push each write out at once (`true`), or leave that to Pingora (`false`).
    pub fn set_flush_each_write(&self, flush: bool) {
        self.flush_each_write.store(flush, Relaxed);
    }

    /// The request-head hook's report: how many bytes the request takes on the connection, head
    /// and body, if that is known exactly (`keepalive::request_size`).
    pub fn report_request_size(&self, size: Option<u64>) {
        self.request_size.store(size.unwrap_or(NO_SIZE), Relaxed);
    }

    /// What [`Self::report_request_size`] said since the last call (`None`: nothing, or unknown).
    pub fn take_request_size(&self) -> Option<u64> {
        Some(self.request_size.swap(NO_SIZE, Relaxed)).filter(|&size| size != NO_SIZE)
    }

    /// Bytes read from the client since the connection began.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Whether a timeout ended the connection (every read now ends the stream).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn take_signal(&mut self) {
        let signal = Signal::from_u8(std::mem::replace(self.signal.get_mut(), 0));
        if signal != Signal::None {
            self.phase = self.phase.signalled(signal, Instant::now, &self.timeouts);
        }
    }

    /// Register this task to be woken at the connection's nearest deadline (its read's, or
    /// its stalled sending's); `Ready` with what ends the connection once one has passed.
    fn poll_deadlines(&mut self, cx: &mut Context<'_>) -> Poll<Ending> {
        let Some(nearest) = phase::earliest(self.phase.read_deadline(), self.stalled_until) else {
            return Poll::Pending;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(nearest.into())));
        // Already due to wake this task no later than `nearest`: nothing to do (the common
        // case: the keep-alive deadline moves later with every request).
        if let Some((at, waker)) = &self.armed {
            if *at <= nearest && !timer.is_elapsed() && waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        let at = tokio::time::Instant::from_std(nearest);
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        if timer.as_mut().poll(cx).is_pending() {
            self.armed = Some((nearest, cx.waker().clone()));
            return Poll::Pending;
        }
        self.armed = None;
        let now = Instant::now();
        if self.stalled_until.is_some_and(|until| now >= until) {
            return Poll::Ready(Ending::SendTimedOut);
        }
        match self.phase.expired(now) {
            Some(Expiry::Quiet) => Poll::Ready(Ending::Quiet),
            Some(Expiry::HeadTimedOut) => Poll::Ready(Ending::HeadTimedOut),
            None => Poll::Pending,
        }
    }

    /// End the connection: what the operation that noticed returns.
    fn end<T: Default>(&mut self, ending: Ending) -> io::Result<T> {
        self.ended = true;
        let message = match ending {
            Ending::Quiet => return Ok(T::default()),
            Ending::HeadTimedOut => format!(
                "request head not complete within {:?} (timeouts.http_request_ms)",
                self.timeouts.http_request
            ),
            Ending::SendTimedOut => format!(
                "the client took nothing for {:?} (timeouts.client_send_ms)",
                self.timeouts.client_send
            ),
        };
        Err(io::Error::new(io::ErrorKind::TimedOut, message))
    }

    /// A write-side operation of the inner stream returned `result`: progress clears the
    /// stall; `Pending` starts (or continues) it, which ends the connection after `client_send`.
    fn after_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(r) => {
                self.stalled_until = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                self.stalled_until = Some(phase::stall_deadline(
                    self.stalled_until,
                    Instant::now(),
                    &self.timeouts,
                ));
                let ending = ready!(self.poll_deadlines(cx));
                // Even a quiet ending is an error for a write: nothing more can be sent.
                let error = self.end::<()>(ending).err();
                Poll::Ready(Err(error.unwrap_or_else(ended_error)))
            }
        }
    }

    /// Push out what an earlier write left in the inner stream's buffer, if anything.
    fn poll_pending_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.unflushed {
            return Poll::Ready(Ok(()));
        }
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        let result = self.after_write(cx, result);
        if result.is_ready() {
            self.unflushed = false;
        }
        result
    }

    /// After a write of the inner stream, push it out if the hooks asked for it (a flush that
    /// has to wait is finished by the next operation on this stream).
    fn flush_if_asked(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if *self.flush_each_write.get_mut() {
            self.unflushed = true;
            if let Poll::Ready(Err(e)) = self.poll_pending_flush(cx) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Write `buf`, or its edited copy when it is a head of Pingora's own with a `Server` line.
    fn poll_write_edited(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self
            .edit
            .as_ref()
            .is_some_and(|(_, _, len)| *len != buf.len())
        {
            self.edit = None; // not the write it was made for
        }
        if self.edit.is_none() && self.phase.before_hooks() {
            if let Some(edited) = phase::without_server_line(buf) {
                self.edit = Some((edited, 0, buf.len()));
            }
        }
        let Some((edited, mut written, len)) = self.edit.take() else {
            let result = Pin::new(&mut self.inner).poll_write(cx, buf);
            return self.after_write(cx, result);
        };
        while written < edited.len() {
            let result = Pin::new(&mut self.inner).poll_write(cx, &edited[written..]);
            match self.after_write(cx, result) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.edit = Some((edited, written, len));
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(len))
    }
}

/// What ends a connection when a deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// No request had begun: end of stream, as if the client had closed.
    Quiet,
    HeadTimedOut,
    SendTimedOut,
}

fn ended_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "client connection ended by a timeout",
    )
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(Ok(())); // end of stream
        }
        this.take_signal();
        // What a write left unflushed goes now: the proxy polls its reads whenever it wakes.
        if let Poll::Ready(Err(e)) = this.poll_pending_flush(cx) {
            return Poll::Ready(Err(e));
        }
        if buf.remaining() == 0 {
            return this.poll_wait_for_bytes(cx);
        }
        if this.held.serve(buf) {
            return Poll::Ready(Ok(()));
        }
        this.poll_read_client(cx, buf)
    }
}

impl ClientStream {
    /// Read from the client: counted, moving the phase on, under the read deadline.
    fn poll_read_client(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.read += (buf.filled().len() - before) as u64;
                if let Phase::Idle { first, .. } = self.phase {
                    let read = &buf.filled()[before..];
                    if !read.is_empty() {
                        self.phase = if first && self.h2c && phase::is_h2_preface(read) {
                            Phase::Http2
                        } else {
                            self.phase.on_bytes(Instant::now(), &self.timeouts)
                        };
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let ending = ready!(self.poll_deadlines(cx));
                Poll::Ready(self.end(ending))
            }
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(Err(ended_error()));
        }
        this.take_signal();
        ready!(this.poll_pending_flush(cx))?;
        let n = ready!(this.poll_write_edited(cx, buf))?;
        this.flush_if_asked(cx)?;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(Err(ended_error()));
        }
        ready!(this.poll_pending_flush(cx))?;
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        let n = ready!(this.after_write(cx, result))?;
        this.flush_if_asked(cx)?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(Err(ended_error()));
        }
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        let result = this.after_write(cx, result);
        if result.is_ready() {
            this.unflushed = false;
        }
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.after_write(cx, result)
    }
}

#[async_trait::async_trait]
impl Shutdown for ClientStream {
    async fn shutdown(&mut self) {
        if self.ended {
            return;
        }
        // A TLS close_notify to a client that reads nothing would wait forever.
        let _ = tokio::time::timeout(self.timeouts.client_send, self.inner.shutdown()).await;
    }
}

#[async_trait::async_trait]
impl Peek for ClientStream {
    /// Pingora peeks for the h2c preface before reading anything (so before anything is
    /// [`held`]): bounded by the first request's deadline (an error closes the connection).
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let Some(deadline) = self.phase.read_deadline() else {
            return self.inner.try_peek(buf).await;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        tokio::time::timeout_at(deadline, self.inner.try_peek(buf))
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request in time",
                ))
            })
    }
}
