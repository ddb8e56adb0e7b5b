//! The client's side of a listener: its timeouts, prompt delivery of what the backend sent, and
//! no `Server` header on the proxy's own answers. Pingora 0.9.1 leaves a kept-alive connection
//! open forever, bounds a request head only per read, never gives up on a client that does
//! not read, and holds back a `Content-Length` answer in its 1,460-byte write buffer until the
//! answer is complete; so every accepted connection is wrapped ([`ClientSide`]) in a
//! [`ClientStream`] that applies [`crate::config::ClientTimeouts`] to whatever Pingora does
//! with it.
//!
//! | what | where |
//! |---|---|
//! | wrap each connection | [`ClientSide::process_new`] (Pingora's HTTP handling runs unchanged inside) |
//! | HTTP/1 keep-alive loop | [`keepalive`]: between requests an idle connection holds only its stream, not Pingora's next request state (HTTP/2, by ALPN or h2c's preface, keeps Pingora's loop) |
//! | keep-alive idle, request head | reads of [`ClientStream`], in [`phase::Phase`]s the hooks signal: [`on_request_head`] (`request_filter`), [`on_request_done`] (`logging`) |
//! | stalled sending | writes of [`ClientStream`]: no progress for `client_send` ends the connection, and Pingora then drops the backend connection behind it |
//! | HTTP/2 idle | Pingora's `h2_idle_timeout` (set from `keepalive` where the listener is built) |
//! | prompt delivery | [`on_response_head`] / [`on_response_body`]: while a `Content-Length` answer is still coming, each write is flushed |
//! | pipelining | [`on_request_head`] turns on Pingora's in-order pipelining (RFC 9112 §9.3.2) |
//! | `Server: Pingora` | removed from the proxy's own answers (`answer.rs`) and, by [`ClientStream`], from the heads Pingora writes before any hook (a malformed request's `400`, `CONNECT`'s `405`) |

pub mod keepalive;
pub mod phase;
mod stream;

use crate::config::ClientTimeouts;
use http::header::CONTENT_LENGTH;
use keepalive::Closing;
use phase::Signal;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
pub use stream::ClientStream;

/// A listening app (Pingora's HTTP proxy) whose connections are each wrapped in a
/// [`ClientStream`] with the listener's timeouts, HTTP/1 ones served by [`keepalive::serve`].
pub struct ClientSide<A> {
    app: Arc<A>,
    timeouts: ClientTimeouts,
    h2c: bool,
    closing: Closing,
}

impl<A> ClientSide<A> {
    pub fn new(app: A, timeouts: ClientTimeouts, h2c: bool) -> Self {
        ClientSide {
            app: Arc::new(app),
            timeouts,
            h2c,
            closing: Closing::default(),
        }
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4), which an h2c client sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Written out rather than with `#[async_trait]`: for HTTP/2 by ALPN the inner app's future is
// returned as it is, without one more future around it to poll on every wake-up.
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for ClientSide<A> {
    fn process_new<'life0, 'life1, 'async_trait>(
        self: &'life0 Arc<Self>,
        stream: Stream,
        shutdown: &'life1 ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = Option<Stream>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let mut stream: Stream = Box::new(ClientStream::new(stream, self.timeouts, self.h2c));
        // Pingora's loop for HTTP/2 by ALPN and a custom ALPN.
        if !matches!(stream.selected_alpn_proto(), None | Some(ALPN::H1)) {
            return self.app.process_new(stream, shutdown);
        }
        if !self.h2c || stream.get_ssl_digest().is_some() {
            return Box::pin(keepalive::serve(&self.app, &self.closing, stream, shutdown));
        }
        // h2c: as Pingora does, peek for the HTTP/2 preface first (the peeked bytes are read
        // again); Pingora's loop for HTTP/2 (it peeks again), ours for HTTP/1.
        Box::pin(async move {
            let mut first = [0u8; H2_PREFACE.len()];
            let peeked = stream.try_peek(&mut first).await.ok()?;
            if !peeked || first == *H2_PREFACE {
                return self.app.process_new(stream, shutdown).await;
            }
            keepalive::serve(&self.app, &self.closing, stream, shutdown).await
        })
    }

    fn cleanup<'life0, 'async_trait>(
        &'life0 self,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.closing.close();
        self.app.cleanup()
    }
}

fn client_stream(session: &Session) -> Option<&ClientStream> {
    ClientStream::of(session.as_downstream().stream()?)
}

/// The request head was read (called first thing in `request_filter`): the head timeout no
/// longer applies, requests pipelined behind this one are answered after it, in order, and the
/// keep-alive loop learns how many bytes this request takes on the connection.
pub fn on_request_head(session: &mut Session) {
    session.as_downstream_mut().set_pipelining_enabled(true);
    if let Some(stream) = client_stream(session) {
        stream.signal(Signal::HeadRead);
        stream.report_request_size(keepalive::request_size(session.as_downstream()));
    }
}

/// The request is over (called from `logging`): the connection waits for the next one under
/// the keep-alive timeout.
pub fn on_request_done(session: &Session) {
    if let Some(stream) = client_stream(session) {
        stream.signal(Signal::Done);
        stream.set_flush_each_write(false);
    }
}

/// A response head goes to the client (from `response_filter`): whether its body must be
/// pushed out as it comes, which is remembered for [`on_response_body`].
pub fn on_response_head(session: &Session, response: &ResponseHeader) -> bool {
    let held = holds_back(response, session.req_header().method == http::Method::HEAD);
    if let Some(stream) = client_stream(session) {
        stream.set_flush_each_write(held);
    }
    held
}

/// A piece of the response body goes to the client (from `response_body_filter`); `held`:
/// what [`on_response_head`] said.
pub fn on_response_body(session: &Session, held: bool, end_of_stream: bool) {
    if held {
        if let Some(stream) = client_stream(session) {
            stream.set_flush_each_write(!end_of_stream);
        }
    }
}

/// Whether Pingora would hold this response's head and body in its write buffer until the
/// body is complete: a final answer with a non-zero `Content-Length` body (chunked and
/// close-delimited bodies, and answers without a body, are flushed by Pingora itself).
pub fn holds_back(response: &ResponseHeader, head_request: bool) -> bool {
    let status = response.status.as_u16();
    if head_request || status < 200 || status == 204 || status == 304 {
        return false;
    }
    // Pingora has checked an upstream `Content-Length` already: a digit other than 0 means a
    // body.
    response
        .headers
        .get(CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes().iter().any(|b| (b'1'..=b'9').contains(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, length: Option<&str>) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        if let Some(length) = length {
            r.insert_header(CONTENT_LENGTH, length).unwrap();
        }
        r
    }

    #[test]
    fn only_a_final_answer_with_a_content_length_body_is_held_back_by_pingora() {
        assert!(holds_back(&response(200, Some("22")), false));
        assert!(holds_back(&response(404, Some(" 5 ")), false));
        assert!(!holds_back(&response(200, Some("22")), true), "HEAD");
        assert!(!holds_back(&response(200, Some("0")), false));
        assert!(!holds_back(&response(200, None), false), "chunked");
        assert!(!holds_back(&response(204, Some("3")), false));
        assert!(!holds_back(&response(304, Some("3")), false));
        assert!(!holds_back(&response(101, None), false));
        assert!(!holds_back(&response(200, Some("00")), false));
    }
}
