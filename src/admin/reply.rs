//! An admin answer before it becomes an `http::Response` ([`Reply`]: plain text, JSON, or a
//! JSON `{"error": …}`), and the bounded reading of a request body.

use http::StatusCode;
use pingora_core::protocols::http::ServerSession;
use serde::Serialize;

/// Largest accepted request body.
const MAX_BODY: usize = 64 * 1024;

/// A response before it becomes an `http::Response`.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) content_type: String,
    pub(super) body: Vec<u8>,
    /// The method a 405 names in `Allow`.
    pub(super) allow: Option<&'static str>,
}

impl Reply {
    /// A `text/plain` answer.
    pub(super) fn text(status: StatusCode, body: &str) -> Self {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: body.as_bytes().to_vec(),
            allow: None,
        }
    }

    /// A pretty-printed JSON answer, ending with a newline.
    pub(super) fn json(status: StatusCode, value: &impl Serialize) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Reply {
            status,
            content_type: "application/json".into(),
            body,
            allow: None,
        }
    }

    /// `{"error": message}` with `status`.
    pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.into() }))
    }
}

/// The request body, at most 64 KiB: a larger one (declared or sent) is a 413, an unreadable
/// one a 400.
pub(super) async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Reply> {
    let too_big = || Reply::error(StatusCode::PAYLOAD_TOO_LARGE, "body over 64 KiB");
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(too_big());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(Reply::error(StatusCode::BAD_REQUEST, "unreadable body")),
        }
    }
}
