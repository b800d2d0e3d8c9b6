//! The little HTTP/1.1 moat speaks on the control socket and the metrics
//! port: one request per connection (`Connection: close`), headers and body
//! capped, a deadline for the whole request. No framework: the binary ships
//! in router firmware, and these two endpoints need nothing more.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Request line plus headers.
const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;
/// A client gets this long to send its whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("request headers larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request not complete within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    #[error("reading the request: {0}")]
    Io(#[from] std::io::Error),
}

impl HttpError {
    /// The status a client is told (`None`: the connection is gone).
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::HeadTooLarge => Some(431),
            HttpError::BodyTooLarge(_) => Some(413),
            HttpError::Malformed(_) => Some(400),
            HttpError::Timeout => Some(408),
            HttpError::Io(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query.
    pub path: String,
    pub query: Option<String>,
    pub body: Vec<u8>,
}

impl Request {
    /// Value of `key` in the query string (`?follow=1&x`): `Some("")` for a bare key.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        let q = self.query.as_deref()?;
        q.split('&').find_map(|kv| match kv.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if kv == key => Some(""),
            _ => None,
        })
    }
}

/// Reads one request within [`REQUEST_TIMEOUT`].
pub async fn read_request<R: AsyncRead + Unpin>(r: &mut R, max_body: usize) -> Result<Request, HttpError> {
    tokio::time::timeout(REQUEST_TIMEOUT, read(r, max_body)).await.map_err(|_| HttpError::Timeout)?
}

async fn read<R: AsyncRead + Unpin>(r: &mut R, max_body: usize) -> Result<Request, HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Err(HttpError::Malformed("connection closed before the end of the headers".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let complete = parse_head(&buf)?;
        if complete.as_ref().map_or(buf.len(), |(_, head_len, _)| *head_len) > MAX_HEAD {
            return Err(HttpError::HeadTooLarge);
        }
        if let Some((mut req, head_len, length)) = complete {
            if length > max_body {
                return Err(HttpError::BodyTooLarge(max_body));
            }
            let mut body = buf.split_off(head_len);
            while body.len() < length {
                let n = r.read(&mut chunk).await?;
                if n == 0 {
                    return Err(HttpError::Malformed(format!("body ended after {} of {length} bytes", body.len())));
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(length);
            req.body = body;
            return Ok(req);
        }
    }
}

/// The request line and headers, once complete: (request, head length, body length).
fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    let mut length = None;
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value).unwrap_or("").trim();
            // Digits only (no sign), and one header: two lengths are a smuggling attempt.
            if length.is_some() || text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::Malformed(format!("Content-Length {text:?}")));
            }
            length = Some(text.parse().map_err(|_| HttpError::Malformed(format!("Content-Length {text:?}")))?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Malformed("chunked bodies are not accepted; send Content-Length".into()));
        }
    }
    let target = parsed.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let method = parsed.method.unwrap_or("GET").to_string();
    Ok(Some((Request { method, path, query, body: Vec::new() }, head_len, length.unwrap_or(0))))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// For 405: the methods the path takes.
    pub allow: Option<&'static str>,
}

impl Response {
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        let mut body = serde_json::to_vec_pretty(value)
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string().into_bytes());
        body.push(b'\n');
        Response { status, content_type: "application/json", body, allow: None }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Response::json(status, &serde_json::json!({ "error": message.into() }))
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Self {
        Response { status, content_type, body: body.into_bytes(), allow: None }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The status line and headers of a response.
pub fn head(status: u16, content_type: &str, length: Option<usize>, allow: Option<&str>) -> String {
    let mut h =
        format!("HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nConnection: close\r\n", reason(status));
    if let Some(n) = length {
        h.push_str(&format!("Content-Length: {n}\r\n"));
    }
    if let Some(a) = allow {
        h.push_str(&format!("Allow: {a}\r\n"));
    }
    h.push_str("\r\n");
    h
}

pub async fn write_response<W: AsyncWrite + Unpin>(w: &mut W, r: &Response) -> std::io::Result<()> {
    w.write_all(head(r.status, r.content_type, Some(r.body.len()), r.allow).as_bytes()).await?;
    w.write_all(&r.body).await?;
    w.flush().await
}

/// After refusing a request early: ends our side, then reads and drops what
/// the client is still sending (bounded), so closing with unread data does
/// not reset the connection before the client has read the refusal.
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    const MAX_DISCARD: usize = 1 << 20;
    let _ = s.shutdown().await;
    let mut scratch = [0u8; 4096];
    let mut seen = 0;
    let discard = async {
        while seen < MAX_DISCARD {
            match s.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), discard).await;
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)] // a failing test panics
mod tests {
    use super::*;

    async fn parse(bytes: &[u8], max_body: usize) -> Result<Request, HttpError> {
        read_request(&mut &bytes[..], max_body).await
    }

    #[tokio::test]
    async fn requests_are_read_with_query_and_body() {
        let req =
            parse(b"POST /v1/devices/cam/quarantine?x=1&follow HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcdEXTRA", 10)
                .await
                .unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v1/devices/cam/quarantine"));
        assert_eq!(
            (req.query_param("x"), req.query_param("follow"), req.query_param("y")),
            (Some("1"), Some(""), None)
        );
        assert_eq!(req.body, b"abcd");
    }

    #[tokio::test]
    async fn bad_requests_get_the_right_status() {
        let big = parse(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 10).await.unwrap_err();
        assert_eq!(big.status(), Some(413));
        let junk = parse(b"\x01\x02 nonsense\r\n\r\n", 10).await.unwrap_err();
        assert_eq!(junk.status(), Some(400));
        let short = parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", 10).await.unwrap_err();
        assert!(short.to_string().contains("body ended after 2 of 5"), "{short}");
        let head = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse(head.as_bytes(), 10).await.unwrap_err().status(), Some(431));
        let signed = parse(b"POST / HTTP/1.1\r\nContent-Length: +2\r\n\r\nab", 10).await.unwrap_err();
        assert_eq!(signed.status(), Some(400));
        let twice = parse(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", 10).await;
        assert_eq!(twice.unwrap_err().status(), Some(400));
        let chunked = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 10).await.unwrap_err();
        assert_eq!(chunked.status(), Some(400));
    }
}
