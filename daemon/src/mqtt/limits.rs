//! Per-device connection rate limit: a token bucket of `per_minute` tokens
//! refilled continuously, so a device retrying in a tight loop (or a
//! password-guessing one) is refused before any password check runs.

use std::{collections::HashMap, sync::Mutex, time::Instant};

#[derive(Debug, Default)]
pub struct ConnectRate {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Devices tracked at most (config devices are bounded far below this).
const MAX_TRACKED: usize = 65_536;

impl ConnectRate {
    /// Takes a token for `device`; false when it has none left.
    pub fn allow(&self, device: &str, per_minute: u32) -> bool {
        self.allow_at(device, per_minute, Instant::now())
    }

    fn allow_at(&self, device: &str, per_minute: u32, now: Instant) -> bool {
        let cap = f64::from(per_minute.max(1));
        let mut b = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.len() >= MAX_TRACKED && !b.contains_key(device) {
            b.clear();
        }
        let (tokens, last) = b.entry(device.to_string()).or_insert((cap, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * cap / 60.0;
        *tokens = (*tokens + refill).min(cap);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_empties_and_refills() {
        let r = ConnectRate::default();
        let t0 = Instant::now();
        assert!((0..3).all(|_| r.allow_at("cam", 3, t0)));
        assert!(!r.allow_at("cam", 3, t0), "fourth connection within the minute");
        assert!(r.allow_at("bulb", 3, t0), "other devices have their own bucket");
        assert!(r.allow_at("cam", 3, t0 + Duration::from_secs(20)), "one token per 20 s");
        assert!(!r.allow_at("cam", 3, t0 + Duration::from_secs(21)));
    }
}
