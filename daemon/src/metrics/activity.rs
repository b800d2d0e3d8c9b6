//! What the classifier's events tell about each device that its counters do
//! not: flows opened (one `new_flow` event per flow) and when it was last
//! heard from. Kept per kernel device id (bounded by `max_devices`), with the
//! MAC the id belonged to: when an id is given to another device, its count
//! starts again, as the kernel's counters for that id do.

use std::collections::HashMap;

use moat_common::maps::UNKNOWN_DEVICE_ID;

use crate::events::Event;

/// One device id's event-derived facts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The device's MAC (empty for the unknown slot, which many MACs share).
    pub mac: String,
    pub flows_opened: u64,
    /// Unix time of its latest event.
    pub last_seen: i64,
}

/// Per device id.
#[derive(Debug, Default)]
pub struct Activity {
    by_id: HashMap<u32, Seen>,
}

impl Activity {
    /// Takes one event, received at unix time `now`.
    pub fn on_event(&mut self, e: &Event, now: i64) {
        let mac = if e.device_id == UNKNOWN_DEVICE_ID { "" } else { e.mac.as_str() };
        let seen = self.by_id.entry(e.device_id).or_default();
        if seen.mac != mac {
            *seen = Seen { mac: mac.to_string(), ..Seen::default() };
        }
        if e.kind == "new_flow" {
            seen.flows_opened += 1;
        }
        seen.last_seen = seen.last_seen.max(now);
    }

    /// What is known about `id`, if it still belongs to `mac` (`""` for the
    /// unknown slot).
    pub fn get(&self, id: u32, mac: &str) -> Option<&Seen> {
        self.by_id.get(&id).filter(|s| s.mac == mac)
    }
}

#[cfg(test)]
#[allow(clippy::panic)] // a failing test panics
mod tests {
    use super::*;

    fn event(kind: &'static str, id: u32, mac: &str) -> Event {
        Event {
            kind,
            device_id: id,
            mac: mac.into(),
            class: "other",
            reason: None,
            direction: "from_device",
            flow: None,
            copied: None,
            payload_len: None,
            ts_ns: 0,
            time: 0,
        }
    }

    #[test]
    fn counts_new_flows_and_the_latest_event() {
        let mut a = Activity::default();
        a.on_event(&event("new_flow", 3, "02:77:00:00:00:01"), 100);
        a.on_event(&event("new_flow", 3, "02:77:00:00:00:01"), 90);
        a.on_event(&event("blocked", 3, "02:77:00:00:00:01"), 120);
        let s = a.get(3, "02:77:00:00:00:01").unwrap_or_else(|| panic!("no entry"));
        assert_eq!((s.flows_opened, s.last_seen), (2, 120));
        assert!(a.get(3, "02:77:00:00:00:09").is_none(), "another MAC's id is not this device's");
    }

    #[test]
    fn an_id_given_to_another_device_starts_again() {
        let mut a = Activity::default();
        a.on_event(&event("new_flow", 3, "02:77:00:00:00:01"), 100);
        a.on_event(&event("new_flow", 3, "02:77:00:00:00:02"), 110);
        assert_eq!(a.get(3, "02:77:00:00:00:02").map(|s| s.flows_opened), Some(1));
    }

    #[test]
    fn unknown_devices_share_one_slot() {
        let mut a = Activity::default();
        a.on_event(&event("new_flow", 0, "02:77:00:00:00:61"), 100);
        a.on_event(&event("new_flow", 0, "02:77:00:00:00:62"), 101);
        assert_eq!(a.get(0, "").map(|s| s.flows_opened), Some(2));
    }
}
