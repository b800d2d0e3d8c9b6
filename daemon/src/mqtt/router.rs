//! moat's broker core: the open sessions and the retained messages. A
//! message is routed to every session whose subscriptions match it (and that
//! its permissions still allow), straight into that session's bounded queue,
//! at the lower of the publisher's QoS and the highest matching grant (MQTT
//! 3.3.5: one copy per session). There is no log to fall behind: a message is
//! either queued for a subscriber, or dropped there and counted.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use moat_policy::mqtt::filter_matches;

use super::{message::Message, outbound::queue_message, queue::Msg, session::Shared, stats::inc, Front};

/// Retained messages kept in all (each device is limited further by quota.rs).
const MAX_RETAINED: usize = 65_536;

#[derive(Debug, Default)]
struct Inner {
    /// By session key (`device:client`).
    sessions: HashMap<String, Arc<Shared>>,
    retained: BTreeMap<String, Message>,
}

#[derive(Debug, Default)]
pub struct Router {
    inner: Mutex<Inner>,
    next: AtomicU64,
}

impl Router {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        super::lock(&self.inner)
    }

    /// A number no other session has.
    pub fn session_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds a session; returns the one it takes over (same client id), which
    /// the caller must end.
    pub fn register(&self, key: &str, s: Arc<Shared>) -> Option<Arc<Shared>> {
        self.lock().sessions.insert(key.to_string(), s)
    }

    /// Removes session `id` (if it was not taken over meanwhile).
    pub fn unregister(&self, key: &str, id: u64) {
        let mut g = self.lock();
        if g.sessions.get(key).is_some_and(|s| s.id == id) {
            g.sessions.remove(key);
        }
    }

    /// Routes `msg` from session `from` (0: a will), and keeps it if retained.
    pub fn publish(&self, front: &Front, msg: &Message, from: u64) {
        let view = front.view();
        let topic = msg.topic_str();
        let mut g = self.lock();
        if msg.retain {
            if msg.payload.is_empty() {
                g.retained.remove(topic);
            } else if g.retained.len() < MAX_RETAINED || g.retained.contains_key(topic) {
                g.retained.insert(topic.to_string(), msg.clone());
            }
        }
        for s in g.sessions.values() {
            let mut best: Option<(u8, bool)> = None;
            let mut revoked = false;
            for sub in super::lock(&s.subs).iter() {
                if !filter_matches(&sub.filter, topic) || (sub.options.no_local && s.id == from) {
                    continue;
                }
                if !s.may_hold(&view, &sub.filter) {
                    revoked = true;
                    continue;
                }
                let rap = sub.options.retain_as_published;
                best = Some(best.map_or((sub.qos, rap), |(q, r)| (q.max(sub.qos), r || rap)));
            }
            let Some((granted, rap)) = best else {
                if revoked {
                    inc(&s.counters.dropped_not_permitted);
                }
                continue;
            };
            deliver(front, s, msg, granted, rap && msg.retain);
        }
    }

    /// Sends session `s` the retained messages `filter` matches (a new
    /// subscription granted `qos`).
    pub fn send_retained(&self, front: &Front, s: &Shared, filter: &str, qos: u8) {
        let matching: Vec<Message> =
            self.lock().retained.iter().filter(|(t, _)| filter_matches(filter, t)).map(|(_, m)| m.clone()).collect();
        for m in &matching {
            deliver(front, s, m, qos, true);
        }
    }

    pub fn sessions(&self) -> usize {
        self.lock().sessions.len()
    }
}

/// Queues `msg` for `s` at min(its QoS, `granted`); a session whose queue
/// overflows under `overflow = "disconnect"` is ended.
fn deliver(front: &Front, s: &Shared, msg: &Message, granted: u8, retain: bool) {
    let qos = msg.qos.min(granted);
    let (frame, pkid_at) = msg.encode(s.version, qos, retain);
    if !queue_message(front, s, frame, Msg { qos, pkid_at }) {
        s.kill.notify_one();
    }
}
