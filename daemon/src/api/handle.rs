//! The main loop's side of the API: each command answered against the
//! daemon's state (reads) or applied to it (decisions, reload).

use serde_json::json;

use super::{decide, feed, view, Command};
use crate::{http::Response, reload::ReloadError, run::Daemon};

pub fn handle(d: &mut Daemon, command: Command) -> Response {
    match command {
        Command::Status => status(d),
        Command::Devices => Response::json(200, &view::all(d)),
        Command::Device(sel) => match view::resolve(d, &sel) {
            Ok((mac, dev)) if dev.is_some() || known(d, &mac) => Response::json(200, &view::device(d, mac, dev)),
            Ok((mac, _)) => Response::error(404, format!("moat has not seen {mac} and the config does not list it")),
            Err(r) => r,
        },
        Command::Approve { device, policy, name } => decide::approve(d, &device, policy, name),
        Command::Quarantine { device, reason } => decide::quarantine(d, &device, reason),
        Command::SetPolicy { device, policy } => decide::set_policy(d, &device, policy),
        Command::Forget(device) => decide::forget(d, &device),
        Command::Plan => Response::text(200, "text/plain; charset=utf-8", crate::plan::render(&d.cfg)),
        Command::Reload => reload(d),
        Command::RecentEvents => recent_events(d),
    }
}

/// Seen by the inventory or named by a decision.
fn known(d: &Daemon, mac: &moat_policy::MacAddr) -> bool {
    let text = mac.to_string();
    d.decisions.by_mac.contains_key(mac) || d.inventory.as_ref().is_ok_and(|inv| inv.get(&text).is_some())
}

fn status(d: &Daemon) -> Response {
    match crate::status::collect(d, d.seq()) {
        Ok(snap) => {
            let mut v = serde_json::to_value(&snap).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                m.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
                m.insert("uptime_seconds".into(), json!(d.started.elapsed().as_secs()));
                m.insert("config".into(), json!(d.path.display().to_string()));
                m.insert("lan".into(), json!(d.cfg.gateway.lan));
            }
            Response::json(200, &v)
        }
        Err(e) => Response::error(500, format!("reading the classifier's counters: {e}")),
    }
}

fn reload(d: &mut Daemon) -> Response {
    match d.reload() {
        Ok(()) => Response::json(
            200,
            &json!({ "reloaded": true, "devices": d.cfg.devices.len(), "policies": d.cfg.policies.len() }),
        ),
        Err(e @ ReloadError::Config(_)) => Response::error(400, e.to_string()),
        Err(e @ ReloadError::NeedsRestart(_)) => Response::error(409, e.to_string()),
        Err(e) => Response::error(500, e.to_string()),
    }
}

fn recent_events(d: &Daemon) -> Response {
    let mut body = String::new();
    for e in &d.events.recent {
        let mut v = feed::event_fields(&d.cfg, e);
        if let Some(m) = v.as_object_mut() {
            m.insert("kind".into(), json!(e.kind));
            m.insert("time".into(), json!(e.time));
        }
        body.push_str(&v.to_string());
        body.push('\n');
    }
    Response::text(200, "application/x-ndjson", body)
}
