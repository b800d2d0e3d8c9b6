//! The CLI's side of the control socket: one blocking HTTP/1.1 request per
//! connection, or a stream of NDJSON lines (`moat events --follow`).

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

/// Longest a request may take (a reload applies a whole ruleset).
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("moat is not running (no control socket at {path}: {source}); start it with `systemctl start moat`, or pass --socket")]
    NotRunning { path: PathBuf, source: std::io::Error },
    #[error("permission denied on {path}: run as root or as a member of moat's [api] group (usually `moat`)")]
    Denied { path: PathBuf },
    #[error("talking to moat at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("moat answered something that is not HTTP: {0}")]
    Protocol(String),
    #[error("moat closed the event stream (it stopped)")]
    Ended,
}

/// A daemon's answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `error` message of a JSON error body (or the body as text).
    pub fn error_message(&self) -> String {
        match self.json().get("error").and_then(|e| e.as_str()) {
            Some(m) => m.to_string(),
            None => String::from_utf8_lossy(&self.body).trim().to_string(),
        }
    }
}

fn connect(socket: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(socket).map_err(|source| match source.kind() {
        std::io::ErrorKind::PermissionDenied => ClientError::Denied { path: socket.into() },
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning { path: socket.into(), source }
        }
        _ => ClientError::Io { path: socket.into(), source },
    })
}

fn send(conn: &mut UnixStream, socket: &Path, method: &str, path: &str, body: &[u8]) -> Result<(), ClientError> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: moat\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())
        .and_then(|()| conn.write_all(body))
        .map_err(|source| ClientError::Io { path: socket.into(), source })
}

/// Sends one request and reads the whole answer.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<Reply, ClientError> {
    let mut conn = connect(socket)?;
    let io = |source| ClientError::Io { path: socket.into(), source };
    conn.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    send(&mut conn, socket, method, path, &body)?;
    let mut raw = Vec::new();
    // A refusal may be followed by a reset; what arrived before it counts.
    if let Err(e) = conn.read_to_end(&mut raw) {
        if raw.is_empty() {
            return Err(io(e));
        }
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> Result<Reply, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => {
            Ok(Reply { status: resp.code.unwrap_or(0), body: raw.get(n..).unwrap_or_default().to_vec() })
        }
        Ok(httparse::Status::Partial) => Err(ClientError::Protocol("the answer ended inside its headers".into())),
        Err(e) => Err(ClientError::Protocol(e.to_string())),
    }
}

/// Opens a stream; each line goes to `on_line` until it returns false
/// (`Ok(None)`) or the daemon closes it (`Ended`). A refusal comes back as the `Reply`.
pub fn stream(socket: &Path, path: &str, mut on_line: impl FnMut(&str) -> bool) -> Result<Option<Reply>, ClientError> {
    let mut conn = connect(socket)?;
    send(&mut conn, socket, "GET", path, &[])?;
    let io = |source| ClientError::Io { path: socket.into(), source };
    let mut reader = BufReader::new(conn);
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            return Err(ClientError::Protocol("the answer ended inside its headers".into()));
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let status = parse(&head)?.status;
    if status != 200 {
        let mut body = Vec::new();
        reader.read_to_end(&mut body).map_err(io)?;
        return Ok(Some(Reply { status, body }));
    }
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            return Err(ClientError::Ended);
        }
        if !on_line(line.trim_end()) {
            return Ok(None);
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)] // a failing test panics
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_and_missing_daemons_named() {
        let r = parse(b"HTTP/1.1 404 Not Found\r\nContent-Length: 18\r\n\r\n{\"error\":\"no cam\"}").unwrap();
        assert_eq!((r.status, r.error_message().as_str()), (404, "no cam"));
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-").is_err());
        let e = request(Path::new("/nonexistent/moat.sock"), "GET", "/v1/status", None).unwrap_err();
        assert!(matches!(e, ClientError::NotRunning { .. }), "{e}");
        assert!(e.to_string().starts_with("moat is not running"), "{e}");
    }
}
