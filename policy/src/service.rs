//! Settings of moat's own output for people and tools: logging.

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human line per event, `key=value` fields (journald/syslog friendly).
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// A tracing filter (`info`, `moat=debug`, ...); `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
    /// Log lines per minute for per-packet events (blocked flows, new
    /// devices) per device; the rest are counted and summarised.
    pub packet_events_per_minute: u32,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { level: "info".into(), format: LogFormat::Plain, packet_events_per_minute: 30 }
    }
}
