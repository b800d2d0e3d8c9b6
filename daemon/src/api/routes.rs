//! From an HTTP request to a [`Command`], validated: anything malformed is
//! answered here, with a JSON error, before it reaches the main loop.
//!
//! | method | path                               | body                        |
//! |--------|------------------------------------|-----------------------------|
//! | GET    | /v1/status                         |                             |
//! | GET    | /v1/devices                        |                             |
//! | GET    | /v1/devices/{mac or name}          |                             |
//! | DELETE | /v1/devices/{mac or name}          | (forget)                    |
//! | POST   | /v1/devices/{..}/approve           | `{"policy"?, "name"?}`      |
//! | POST   | /v1/devices/{..}/quarantine        | `{"reason"}`                |
//! | POST   | /v1/devices/{..}/policy            | `{"policy"}`                |
//! | GET    | /v1/plan                           |                             |
//! | POST   | /v1/reload                         |                             |
//! | GET    | /v1/events[?follow]                |                             |

use serde::{de::DeserializeOwned, Deserialize};

use super::Command;
use crate::http::{Request, Response};

/// Longest quarantine reason kept.
pub const MAX_REASON: usize = 200;
/// Longest device selector or name.
const MAX_NAME: usize = 64;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Call(Command),
    /// The live stream (`follow`) or the recent events.
    Events {
        follow: bool,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    policy: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuarantineBody {
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    policy: String,
}

pub fn route(req: &Request) -> Result<Route, Response> {
    let parts: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(1).collect();
    let method = req.method.as_str();
    let call = |c| Ok(Route::Call(c));
    match (parts.as_slice(), method) {
        (["v1", "status"], "GET") => call(Command::Status),
        (["v1", "devices"], "GET") => call(Command::Devices),
        (["v1", "devices", sel], "GET") => call(Command::Device(selector(sel)?)),
        (["v1", "devices", sel], "DELETE") => call(Command::Forget(selector(sel)?)),
        (["v1", "devices", sel, "approve"], "POST") => {
            let device = selector(sel)?;
            let b: ApproveBody = if req.body.iter().all(u8::is_ascii_whitespace) {
                ApproveBody { policy: None, name: None }
            } else {
                body(req)?
            };
            let policy = b.policy.map(|p| word("policy", p)).transpose()?;
            let name = b.name.map(device_name).transpose()?;
            call(Command::Approve { device, policy, name })
        }
        (["v1", "devices", sel, "quarantine"], "POST") => {
            let device = selector(sel)?;
            let b: QuarantineBody = body(req)?;
            call(Command::Quarantine { device, reason: reason(b.reason)? })
        }
        (["v1", "devices", sel, "policy"], "POST") => {
            let device = selector(sel)?;
            let b: PolicyBody = body(req)?;
            call(Command::SetPolicy { device, policy: word("policy", b.policy)? })
        }
        (["v1", "plan"], "GET") => call(Command::Plan),
        (["v1", "reload"], "POST") => call(Command::Reload),
        (["v1", "events"], "GET") => {
            let follow = req.query_param("follow").is_some_and(|v| !matches!(v, "0" | "false" | "no"));
            Ok(Route::Events { follow })
        }
        _ => Err(not_routed(&parts, method)),
    }
}

/// 405 with the methods the path takes, or 404.
fn not_routed(parts: &[&str], method: &str) -> Response {
    let allow = match parts {
        ["v1", "status" | "devices" | "plan" | "events"] => Some("GET"),
        ["v1", "devices", _] => Some("GET, DELETE"),
        ["v1", "devices", _, "approve" | "quarantine" | "policy"] | ["v1", "reload"] => Some("POST"),
        _ => None,
    };
    match allow {
        Some(a) => {
            Response { allow: Some(a), ..Response::error(405, format!("{method} is not allowed here; use {a}")) }
        }
        None => Response::error(404, format!("no such endpoint: /{}", parts.join("/"))),
    }
}

fn bad(message: String) -> Response {
    Response::error(400, message)
}

fn body<T: DeserializeOwned>(req: &Request) -> Result<T, Response> {
    serde_json::from_slice(&req.body).map_err(|e| bad(format!("request body: {e}")))
}

/// A path segment naming a device: a MAC or a device name, percent-decoded.
fn selector(raw: &str) -> Result<String, Response> {
    let s = percent_decode(raw).ok_or_else(|| bad(format!("device {raw:?}: bad percent-encoding")))?;
    if s.is_empty() || s.chars().count() > MAX_NAME || s.chars().any(char::is_control) {
        return Err(bad(format!(
            "device {s:?}: not a MAC address or device name (1 to {MAX_NAME} printable characters)"
        )));
    }
    Ok(s)
}

/// A policy or device name: what the config allows unquoted.
fn word(what: &str, s: String) -> Result<String, Response> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(s)
    } else {
        Err(bad(format!("{what} {s:?}: 1 to {MAX_NAME} characters of A-Z a-z 0-9 - _ . :")))
    }
}

/// A name for a device: a word, never a MAC-like string (every device
/// without a name is called by its MAC, so the two must not meet).
fn device_name(s: String) -> Result<String, Response> {
    let s = word("name", s)?;
    if s.contains(':') {
        return Err(bad(format!("name {s:?}: a device name cannot contain ':' (MAC addresses do)")));
    }
    Ok(s)
}

/// Bidirectional and invisible formatting marks: they make a reason read
/// differently in a terminal than it is.
fn deceptive(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}' | '\u{feff}')
}

fn reason(s: String) -> Result<String, Response> {
    let t = s.trim();
    if t.is_empty() {
        return Err(bad("reason: say why the device is quarantined".into()));
    }
    if t.chars().count() > MAX_REASON || t.chars().any(|c| c.is_control() || deceptive(c)) {
        return Err(bad(format!("reason: at most {MAX_REASON} printable characters")));
    }
    Ok(t.to_string())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)] // a failing test panics
mod tests {
    use super::*;

    fn req(method: &str, path: &str, body: &str) -> Request {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path.to_string(), None),
        };
        Request { method: method.into(), path, query, body: body.as_bytes().to_vec() }
    }

    fn error(method: &str, path: &str, body: &str) -> (u16, String) {
        let r = route(&req(method, path, body)).unwrap_err();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        (r.status, v["error"].as_str().unwrap().to_string())
    }

    #[test]
    fn requests_become_commands() {
        let r = route(&req("POST", "/v1/devices/Living%20room/approve", r#"{"policy":"camera"}"#)).unwrap();
        let want = Command::Approve { device: "Living room".into(), policy: Some("camera".into()), name: None };
        assert_eq!(r, Route::Call(want));
        let r = route(&req("POST", "/v1/devices/02:00:00:00:00:01/approve", "")).unwrap();
        assert!(matches!(r, Route::Call(Command::Approve { policy: None, .. })));
        let r = route(&req("POST", "/v1/devices/cam/quarantine", r#"{"reason":"  scanning  "}"#)).unwrap();
        assert_eq!(r, Route::Call(Command::Quarantine { device: "cam".into(), reason: "scanning".into() }));
        assert_eq!(route(&req("DELETE", "/v1/devices/cam/", "")).unwrap(), Route::Call(Command::Forget("cam".into())));
        assert_eq!(route(&req("GET", "/v1/events?follow=1", "")).unwrap(), Route::Events { follow: true });
        assert_eq!(route(&req("GET", "/v1/events", "")).unwrap(), Route::Events { follow: false });
    }

    #[test]
    fn bad_requests_are_refused_with_the_right_status() {
        assert_eq!(error("POST", "/v1/status", "").0, 405);
        assert_eq!(error("GET", "/v2/status", ""), (404, "no such endpoint: /v2/status".into()));
        let (s, m) = error("POST", "/v1/devices/cam/quarantine", r#"{"reason":""}"#);
        assert_eq!((s, m.as_str()), (400, "reason: say why the device is quarantined"));
        let (s, m) = error("POST", "/v1/devices/cam/quarantine", r#"{"reson":"x"}"#);
        assert!(s == 400 && m.contains("unknown field `reson`"), "{m}");
        let (s, m) = error("POST", "/v1/devices/cam/policy", r#"{"policy":"a b"}"#);
        assert!(s == 400 && m.starts_with("policy \"a b\""), "{m}");
        let (s, m) = error("POST", "/v1/devices/cam/policy", "not json");
        assert!(s == 400 && m.starts_with("request body:"), "{m}");
        assert_eq!(error("GET", "/v1/devices/%zz", "").0, 400);
        assert_eq!(error("GET", "/v1/devices/%+A", "").0, 400);
        let (s, m) = error("POST", "/v1/devices/cam/approve", r#"{"name":"02:77:00:00:00:0b"}"#);
        assert!(s == 400 && m.contains("cannot contain ':'"), "{m}");
        assert_eq!(error("POST", "/v1/devices/cam/quarantine", "{\"reason\":\"ok \u{202e} evil\"}").0, 400);
        assert_eq!(route(&req("GET", "/v1/events?follow=false", "")).unwrap(), Route::Events { follow: false });
        let long = format!("/v1/devices/{}", "a".repeat(65));
        assert_eq!(error("GET", &long, "").0, 400);
    }
}
