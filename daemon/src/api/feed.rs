//! The live event stream: classifier events people care about (new device,
//! blocked flow) and the decisions made through the API, each one JSON line.
//! Lines are serialized once, on the main loop, and only while someone
//! listens; a client that falls behind is told how many it missed.

use std::sync::Arc;

use moat_policy::Config;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::events::Event;

/// Lines buffered per listener before it is told it lagged.
const BACKLOG: usize = 1024;

#[derive(Debug, Clone)]
pub struct Feed {
    tx: broadcast::Sender<Arc<str>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed { tx: broadcast::channel(BACKLOG).0 }
    }
}

impl Feed {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    /// Sends `fields` (a JSON object) with `time` and `kind` added.
    pub fn publish(&self, kind: &str, mut fields: Value) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        if let Some(m) = fields.as_object_mut() {
            m.insert("time".into(), json!(crate::clock::unix_secs()));
            m.insert("kind".into(), json!(kind));
        }
        let _ = self.tx.send(Arc::from(fields.to_string()));
    }

    /// A classifier event, if it is one the stream carries.
    pub fn on_event(&self, cfg: &Config, e: &Event) {
        if matches!(e.kind, "new_device" | "blocked") && self.tx.receiver_count() > 0 {
            self.publish(e.kind, event_fields(cfg, e));
        }
    }
}

/// How a classifier event reads in the stream (and in `moat events`).
pub fn event_fields(cfg: &Config, e: &Event) -> Value {
    let device = cfg.devices.iter().find(|d| d.id == e.device_id).map_or("unknown", |d| d.name.as_str());
    let mut v = json!({ "device": device, "mac": e.mac, "class": e.class, "direction": e.direction });
    if let (Some(m), Some(r)) = (v.as_object_mut(), e.reason) {
        m.insert("reason".into(), json!(r));
    }
    if let (Some(m), Some(f)) = (v.as_object_mut(), &e.flow) {
        m.insert("proto".into(), json!(f.proto));
        m.insert("lan".into(), json!(f.lan));
        m.insert("remote".into(), json!(f.remote));
        m.insert("port".into(), json!(f.remote_port));
    }
    v
}
