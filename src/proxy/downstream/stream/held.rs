//! [`Held`]: the client's bytes that [`super::ClientStream`] read while the keep-alive loop
//! waited for the next request, kept until Pingora reads them.
//!
//! The loop waits with a zero-capacity read (it holds no buffer while the client is quiet).
//! When bytes arrive, the stream reads them at once into a buffer on the stack and keeps what
//! came, so Pingora's first read of the next head is served from memory: one `recvfrom` per
//! request head, as with Pingora's own loop (a zero-length read to wait, then Pingora's read,
//! would make two).

use super::ClientStream;
use std::io;
use std::mem::MaybeUninit;
use std::task::{ready, Context, Poll};
use tokio::io::ReadBuf;

/// The most read at once while waiting: Pingora's first read of a head is as large (its
/// initial head buffer); the rest of a larger head is read by Pingora as usual.
pub const WAIT_READ_BYTES: usize = 4096;

/// Bytes read from the client and not yet handed to Pingora (none, usually: nothing allocated).
#[derive(Debug, Default)]
pub struct Held {
    bytes: Vec<u8>,
    /// How many of `bytes` were handed over already.
    served: usize,
}

impl Held {
    /// Whether there is nothing left to hand over.
    pub fn is_empty(&self) -> bool {
        self.served >= self.bytes.len()
    }

    /// Keep `read` until it is read (after what is kept already).
    pub fn hold(&mut self, read: &[u8]) {
        if self.is_empty() {
            self.bytes.clear();
            self.served = 0;
        }
        self.bytes.extend_from_slice(read);
    }

    /// Hand over as much as `buf` takes; `false` when nothing was kept. The buffer is freed
    /// once everything was handed over.
    pub fn serve(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.is_empty() {
            return false;
        }
        let rest = &self.bytes[self.served..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.served += n;
        if self.is_empty() {
            *self = Held::default();
        }
        true
    }
}

impl ClientStream {
    /// A zero-capacity read: the keep-alive loop waits for the next request. Ready once the
    /// client sent bytes (read now, kept for Pingora's next read) or the stream ended; nothing
    /// is held while waiting (the scratch buffer lives on the stack during the poll only).
    pub(super) fn poll_wait_for_bytes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.held.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let mut scratch = [MaybeUninit::<u8>::uninit(); WAIT_READ_BYTES];
        let mut read = ReadBuf::uninit(&mut scratch);
        ready!(self.poll_read_client(cx, &mut read))?;
        self.held.hold(read.filled());
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_are_handed_over_in_order_across_small_reads_and_then_freed() {
        let mut held = Held::default();
        assert!(held.is_empty());
        held.hold(b"GET / HTTP/1.1\r\n");
        held.hold(b"\r\n");
        let mut out = Vec::new();
        let mut chunk = [0u8; 5];
        loop {
            let mut buf = ReadBuf::new(&mut chunk);
            if !held.serve(&mut buf) {
                break;
            }
            out.extend_from_slice(buf.filled());
        }
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
        assert!(held.is_empty());
        assert_eq!(held.bytes.capacity(), 0, "freed once handed over");
    }

    #[test]
    fn a_full_buffer_takes_nothing_and_keeps_the_bytes() {
        let mut held = Held::default();
        held.hold(b"abc");
        let mut buf = ReadBuf::new(&mut []);
        assert!(held.serve(&mut buf));
        assert!(!held.is_empty());
        let mut room = [0u8; 8];
        let mut buf = ReadBuf::new(&mut room);
        assert!(held.serve(&mut buf));
        assert_eq!(buf.filled(), b"abc");
    }
}
