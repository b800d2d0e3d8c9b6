//! MQTT counters, per device and in total, for the status snapshot and the
//! metrics (`Stats::totals`). A session looks its device's counters up once and bumps
//! atomics from then on: no lock per message.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

/// Declares the per-device counters once: atomic fields, and their JSON.
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// What is counted for each device (and, under `"unknown"`, for
        /// connections moat could not tie to a configured device).
        #[derive(Debug, Default)]
        pub struct DeviceCounters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// The same counters as plain numbers, summed over devices (for the metrics).
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct DeviceTotals {
            $(pub $name: u64,)*
        }

        impl DeviceCounters {
            fn json(&self) -> serde_json::Value {
                serde_json::json!({ $(stringify!($name): self.$name.load(Ordering::Relaxed),)* })
            }

            fn add_to(&self, t: &mut DeviceTotals) {
                $(t.$name += self.$name.load(Ordering::Relaxed);)*
            }
        }
    };
}

counters!(
    connections,
    connections_open,
    auth_failures,
    /// Refused: another device's credentials, or no configured device behind the connection.
    identity_mismatch,
    rate_limited,
    publish_denied,
    subscribe_denied,
    published,
    delivered,
    /// Dropped from the device's queue (slow subscriber).
    dropped_queue_full,
    /// Still queued when the connection closed.
    dropped_on_close,
    /// Routed, but no longer covered by the device's permissions
    /// (a reload took the subscription away).
    dropped_not_permitted,
    disconnected_slow,
    malformed,
    upgraded_sessions,
);

/// Adds one to a counter.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

/// The service's counters at one moment, as plain numbers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub devices: DeviceTotals,
    pub handshake_failures: u64,
    pub handshake_timeouts: u64,
    pub over_capacity: u64,
    pub over_device_limit: u64,
    pub unknown_peer: u64,
    /// Sessions the router holds now.
    pub sessions: usize,
}

#[derive(Debug, Default)]
pub struct Stats {
    devices: Mutex<BTreeMap<String, Arc<DeviceCounters>>>,
    pub handshake_failures: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub over_capacity: AtomicU64,
    /// Connections refused at accept: over a device's connection limit.
    pub over_device_limit: AtomicU64,
    /// Connections refused at accept: no configured device behind them.
    pub unknown_peer: AtomicU64,
    /// Rate-limited logging: the last time a drop was logged.
    last_drop_log: Mutex<Option<Instant>>,
}

impl Stats {
    /// A device's counters (made on first use); sessions keep the handle.
    pub fn device(&self, name: &str) -> Arc<DeviceCounters> {
        let mut d = super::lock(&self.devices);
        d.entry(name.to_string()).or_default().clone()
    }

    /// True at most once a second: per-message events are logged through this.
    pub fn may_log_drop(&self) -> bool {
        let mut last = super::lock(&self.last_drop_log);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t).as_secs() < 1) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Every counter summed over devices, plus the listener's.
    pub fn totals(&self) -> Totals {
        let mut devices = DeviceTotals::default();
        super::lock(&self.devices).values().for_each(|c| c.add_to(&mut devices));
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Totals {
            devices,
            handshake_failures: load(&self.handshake_failures),
            handshake_timeouts: load(&self.handshake_timeouts),
            over_capacity: load(&self.over_capacity),
            over_device_limit: load(&self.over_device_limit),
            unknown_peer: load(&self.unknown_peer),
            sessions: 0,
        }
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let devices: serde_json::Map<String, serde_json::Value> =
            super::lock(&self.devices).iter().map(|(n, c)| (n.clone(), c.json())).collect();
        serde_json::json!({
            "devices": devices,
            "handshake_failures": self.handshake_failures.load(Ordering::Relaxed),
            "handshake_timeouts": self.handshake_timeouts.load(Ordering::Relaxed),
            "over_capacity": self.over_capacity.load(Ordering::Relaxed),
            "over_device_limit": self.over_device_limit.load(Ordering::Relaxed),
            "unknown_peer": self.unknown_peer.load(Ordering::Relaxed),
        })
    }
}
