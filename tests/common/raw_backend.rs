//! A backend on a bare socket, for answers the demo backend cannot give: each request head is
//! handed, as text, to a function that returns the whole raw response. A strict backend that
//! refuses a request without `Host`, one that sends several `Set-Cookie` lines. Bodies sent to
//! it (`Content-Length` only) are read and dropped; connections are kept alive unless the
//! request or the answer says `Connection: close`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Turns a request head (request line and headers, without the blank line) into a response.
pub type Answer = Arc<dyn Fn(&str) -> String + Send + Sync>;

pub struct RawBackend {
    pub name: String,
    pub addr: SocketAddr,
    /// Every request head received, in order.
    pub heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    pub async fn start(
        name: &str,
        answer: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let answer: Answer = Arc::new(answer);
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, answer.clone(), seen.clone()));
                while connections.try_join_next().is_some() {}
            }
        });
        RawBackend {
            name: name.to_string(),
            addr,
            heads,
            task,
        }
    }

    /// `{ name: .., addr: .. }` for a config's backend list.
    pub fn yaml(&self) -> String {
        format!("{{ name: {}, addr: \"{}\" }}", self.name, self.addr)
    }

    /// The request heads received so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A complete response with a `Content-Length` body and the given extra header lines.
pub fn response(status: &str, headers: &[&str], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for header in headers {
        out.push_str(header);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

/// The value of header `name` in a request head (first one, name compared ignoring case).
pub fn header_in(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

async fn serve(mut stream: tokio::net::TcpStream, answer: Answer, heads: Arc<Mutex<Vec<String>>>) {
    let mut buffer: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end + 4);
        let length: usize = header_in(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        buffer.drain(..length);
        heads.lock().unwrap().push(head.clone());
        let reply = answer(&head);
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
        let close = |text: &str| {
            text.split("\r\n\r\n").next().is_some_and(|h| {
                h.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("connection:")
                        && l.to_ascii_lowercase().contains("close")
                })
            })
        };
        if close(&head) || close(&reply) {
            return;
        }
    }
}
