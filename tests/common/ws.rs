//! A bare WebSocket client, written by hand over any stream, for the timing real clients have:
//! it writes its first frame as soon as it has read the `101`'s head, as SDK clients do (the
//! .NET SignalR client, Socket.IO's Node client, Python `websockets`), where browsers and
//! tungstenite leave more time.
#![allow(dead_code)]

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long any one read may take before the opening counts as failed.
const READ_PATIENCE: Duration = Duration::from_secs(10);

/// The response head of an upgrade request, and what was read past it.
pub struct Head {
    pub text: String,
    pub rest: Vec<u8>,
}

impl Head {
    pub fn status(&self) -> u16 {
        super::raw_status(&self.text)
    }

    /// A header's value (first one; name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Write the upgrade request for `path` on `host` (with `extra` header lines, each ending in
/// `\r\n`) and read the response head.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
    extra: &str,
) -> Result<Head, String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("writing the upgrade request: {e}"))?;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
            return Ok(Head {
                text,
                rest: bytes[end + 4..].to_vec(),
            });
        }
        let n = read_some(stream, &mut buf).await?;
        if n == 0 {
            return Err(format!(
                "closed before a response head: {:?}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        bytes.extend_from_slice(&buf[..n]);
    }
}

async fn read_some<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> Result<usize, String> {
    tokio::time::timeout(READ_PATIENCE, stream.read(buf))
        .await
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| format!("read error: {e}"))
}

/// A client frame (masked, final) with `opcode` and `payload` (under 64 KiB).
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    if payload.len() < 126 {
        frame.push(0x80 | payload.len() as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Read one server frame (unmasked, under 64 KiB): `(opcode, payload)`. `pending` holds bytes
/// already read and keeps any read past the frame.
pub async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    pending: &mut Vec<u8>,
) -> Result<(u8, Vec<u8>), String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some((opcode, payload, used)) = parse_frame(pending) {
            pending.drain(..used);
            return Ok((opcode, payload));
        }
        let n = read_some(stream, &mut buf).await?;
        if n == 0 {
            return Err("closed instead of a frame".to_string());
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

fn parse_frame(bytes: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (&first, &second) = (bytes.first()?, bytes.get(1)?);
    let (len, start) = match second & 0x7f {
        126 => (
            u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]) as usize,
            4,
        ),
        127 => return None,
        n => (n as usize, 2),
    };
    let payload = bytes.get(start..start + len)?.to_vec();
    Some((first & 0x0f, payload, start + len))
}

/// One opening as an SDK client does it: the upgrade request, the first text frame right after
/// the `101`'s head, the echo, then a Close answered by a Close. Returns the `101`'s head; an
/// error says what went wrong (a cut connection: "closed instead of a frame").
pub async fn open_echo_close<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
    extra: &str,
    text: &str,
) -> Result<Head, String> {
    let head = handshake(stream, host, path, extra).await?;
    if head.status() != 101 {
        return Err(format!("not upgraded: {}", head.text));
    }
    stream
        .write_all(&masked_frame(1, text.as_bytes()))
        .await
        .map_err(|e| format!("writing right after the 101: {e}"))?;
    let mut pending = head.rest.clone();
    let (opcode, payload) = read_frame(stream, &mut pending).await?;
    let backend = head.header("x-servername").unwrap_or("?");
    let want = format!("{backend}: {text}");
    if opcode != 1 || payload != want.as_bytes() {
        return Err(format!(
            "expected {want:?}, got opcode {opcode} {:?}",
            String::from_utf8_lossy(&payload)
        ));
    }
    stream
        .write_all(&masked_frame(8, &1000u16.to_be_bytes()))
        .await
        .map_err(|e| format!("writing the Close: {e}"))?;
    let (opcode, payload) = read_frame(stream, &mut pending).await?;
    if opcode != 8 || payload.get(..2) != Some(&1000u16.to_be_bytes()[..]) {
        return Err(format!(
            "expected a Close 1000, got opcode {opcode} {payload:?}"
        ));
    }
    Ok(head)
}
