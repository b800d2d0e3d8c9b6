//! Per-device limits on what costs the broker memory for good or time:
//! distinct subscription filters, retained topics (kept until cleared),
//! subscriptions per session, open connections, the connection rate (a
//! device retrying in a tight loop, or guessing passwords, is refused before
//! any password check) and the publish rate (all of a device's connections
//! share one bucket; a device over it is slowed, not dropped, so nothing it
//! was acknowledged is lost).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Distinct filters a device may ever subscribe to (per daemon run).
pub const MAX_FILTERS_PER_DEVICE: usize = 256;
/// Retained topics a device may hold.
pub const MAX_RETAINED_PER_DEVICE: usize = 256;
/// Subscriptions one session may hold.
pub const MAX_SUBSCRIPTIONS_PER_SESSION: usize = 64;

use super::lock;

/// A token bucket refilled continuously up to its capacity.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Full at first (clamped to the capacity on first use).
    fn full() -> Self {
        Bucket { tokens: f64::INFINITY, last: Instant::now() }
    }

    fn refill(&mut self, per_second: f64, cap: f64, now: Instant) {
        self.tokens = (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * per_second).min(cap);
        self.last = now;
    }
}

#[derive(Debug)]
pub struct DeviceQuota {
    filters: Mutex<HashSet<String>>,
    retained: Mutex<HashSet<String>>,
    /// May go negative: the debt is how long the device waits.
    publishes: Mutex<Bucket>,
    connects: Mutex<Bucket>,
    open: Mutex<u32>,
}

impl Default for DeviceQuota {
    fn default() -> Self {
        DeviceQuota {
            filters: Mutex::default(),
            retained: Mutex::default(),
            publishes: Mutex::new(Bucket::full()),
            connects: Mutex::new(Bucket::full()),
            open: Mutex::new(0),
        }
    }
}

impl DeviceQuota {
    /// May the device subscribe to `filter` (known, or room for one more)?
    pub fn filter(&self, filter: &str) -> bool {
        let mut f = lock(&self.filters);
        if f.contains(filter) {
            return true;
        }
        if f.len() >= MAX_FILTERS_PER_DEVICE {
            return false;
        }
        f.insert(filter.to_string());
        true
    }

    /// May the device retain a message on `topic`? An empty payload clears
    /// the topic and is always allowed.
    pub fn retain(&self, topic: &str, empty: bool) -> bool {
        let mut r = lock(&self.retained);
        if empty {
            r.remove(topic);
            return true;
        }
        if r.contains(topic) {
            return true;
        }
        if r.len() >= MAX_RETAINED_PER_DEVICE {
            return false;
        }
        r.insert(topic.to_string());
        true
    }

    /// Takes a publish token; returns how long to wait before sending on.
    pub fn publish_wait(&self, per_second: u32) -> Duration {
        self.publish_wait_at(per_second, Instant::now())
    }

    fn publish_wait_at(&self, per_second: u32, now: Instant) -> Duration {
        let rate = f64::from(per_second.max(1));
        let mut b = lock(&self.publishes);
        b.refill(rate, rate, now);
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }

    /// Takes a connection token (`per_minute`, refilled continuously); false
    /// when the device has none left.
    pub fn allow_connect(&self, per_minute: u32) -> bool {
        self.allow_connect_at(per_minute, Instant::now())
    }

    fn allow_connect_at(&self, per_minute: u32, now: Instant) -> bool {
        let cap = f64::from(per_minute.max(1));
        let mut b = lock(&self.connects);
        b.refill(cap / 60.0, cap, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Counts a connection in; false when the device already has `max` open.
    pub fn enter(&self, max: u32) -> bool {
        let mut o = lock(&self.open);
        if *o >= max {
            return false;
        }
        *o += 1;
        true
    }

    pub fn leave(&self) {
        let mut o = lock(&self.open);
        *o = o.saturating_sub(1);
    }
}

/// Quotas by classifier device id.
#[derive(Debug, Default)]
pub struct Quotas {
    by_id: Mutex<HashMap<u32, Arc<DeviceQuota>>>,
}

impl Quotas {
    pub fn of(&self, device_id: u32) -> Arc<DeviceQuota> {
        lock(&self.by_id).entry(device_id).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_retained_topics_are_capped() {
        let q = DeviceQuota::default();
        assert!((0..MAX_FILTERS_PER_DEVICE).all(|i| q.filter(&format!("f/{i}"))));
        assert!(!q.filter("f/new"), "one filter too many");
        assert!(q.filter("f/3"), "a known filter is fine");
        assert!((0..MAX_RETAINED_PER_DEVICE).all(|i| q.retain(&format!("t/{i}"), false)));
        assert!(!q.retain("t/new", false));
        assert!(q.retain("t/0", true), "clearing frees a slot");
        assert!(q.retain("t/new", false));
    }

    #[test]
    fn publish_rate_slows_instead_of_dropping() {
        let q = DeviceQuota::default();
        let t0 = Instant::now();
        assert_eq!(q.publish_wait_at(10, t0), Duration::ZERO, "the bucket starts full");
        let later = t0 + Duration::from_secs(5);
        let waits: Vec<Duration> = (0..12).map(|_| q.publish_wait_at(10, later)).collect();
        assert!(waits[..10].iter().all(|w| w.is_zero()), "a second's burst passes: {waits:?}");
        assert_eq!((waits[10], waits[11]), (Duration::from_millis(100), Duration::from_millis(200)));
    }

    #[test]
    fn connection_bucket_empties_and_refills() {
        let q = DeviceQuota::default();
        let t0 = Instant::now();
        assert!((0..3).all(|_| q.allow_connect_at(3, t0)));
        assert!(!q.allow_connect_at(3, t0), "fourth connection within the minute");
        assert!(q.allow_connect_at(3, t0 + Duration::from_secs(20)), "one token per 20 s");
        assert!(!q.allow_connect_at(3, t0 + Duration::from_secs(21)));
        assert!(DeviceQuota::default().allow_connect_at(3, t0), "other devices have their own bucket");
    }

    #[test]
    fn connections_per_device() {
        let q = DeviceQuota::default();
        assert!(q.enter(2) && q.enter(2));
        assert!(!q.enter(2));
        q.leave();
        assert!(q.enter(2));
    }
}
