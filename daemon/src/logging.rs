//! Logs: tracing with key/value fields, human lines by default (no colours
//! unless stderr is a terminal, so journald and syslog get clean text), JSON
//! on request. Per-packet events go through `PacketLog`, so a scanning
//! device cannot flood the log.

use std::{collections::HashMap, io::IsTerminal as _, time::Instant};

use moat_policy::service::{LogFormat, LogSettings};
use tracing::info;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the
/// config's level (a person debugging overrides what is deployed).
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = match settings.format {
        LogFormat::Plain => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}

/// Keys kept per window: more devices than this in one minute share a line budget.
const MAX_KEYS: usize = 1024;
const WINDOW_SECS: u64 = 60;

/// A per-device budget of log lines per minute for per-packet events;
/// what is over budget is counted and reported once per minute.
#[derive(Debug)]
pub struct PacketLog {
    per_minute: u32,
    window: Instant,
    lines: HashMap<u32, u32>,
    suppressed: u64,
    /// Lines suppressed since start (for metrics).
    pub suppressed_total: u64,
}

impl PacketLog {
    pub fn new(per_minute: u32) -> Self {
        PacketLog { per_minute, window: Instant::now(), lines: HashMap::new(), suppressed: 0, suppressed_total: 0 }
    }

    /// May device `id` log one more per-packet line now?
    pub fn allow(&mut self, id: u32) -> bool {
        self.allow_at(id, Instant::now())
    }

    fn allow_at(&mut self, id: u32, now: Instant) -> bool {
        if now.duration_since(self.window).as_secs() >= WINDOW_SECS {
            self.roll(now);
        }
        let key = if self.lines.len() >= MAX_KEYS && !self.lines.contains_key(&id) { u32::MAX } else { id };
        let n = self.lines.entry(key).or_insert(0);
        if *n < self.per_minute {
            *n += 1;
            return true;
        }
        self.suppressed += 1;
        self.suppressed_total += 1;
        false
    }

    fn roll(&mut self, now: Instant) {
        if self.suppressed > 0 {
            info!(
                suppressed = self.suppressed,
                window_s = WINDOW_SECS,
                "per-packet log lines over budget were not logged"
            );
        }
        self.suppressed = 0;
        self.lines.clear();
        self.window = now;
    }
}

#[cfg(test)]
#[allow(clippy::panic)] // a failing test panics
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_device_gets_its_budget_per_window() {
        let mut log = PacketLog::new(3);
        let t0 = Instant::now();
        let a: Vec<bool> = (0..5).map(|_| log.allow_at(7, t0)).collect();
        assert_eq!(a, [true, true, true, false, false]);
        assert!(log.allow_at(8, t0), "another device has its own budget");
        assert_eq!(log.suppressed_total, 2);
        let later = t0 + Duration::from_secs(WINDOW_SECS);
        assert!(log.allow_at(7, later), "a new window starts a new budget");
        assert_eq!(log.suppressed, 0, "the summary was logged and reset");
    }

    #[test]
    fn a_flood_of_devices_shares_one_budget() {
        let mut log = PacketLog::new(1);
        let t0 = Instant::now();
        let allowed = (0..MAX_KEYS as u32 + 500).filter(|id| log.allow_at(*id, t0)).count();
        assert_eq!(allowed, MAX_KEYS + 1, "keys past the cap share one budget");
        assert!(log.lines.len() <= MAX_KEYS + 1);
    }

    #[test]
    fn zero_budget_logs_nothing() {
        let mut log = PacketLog::new(0);
        assert!(!log.allow_at(1, Instant::now()));
    }
}
