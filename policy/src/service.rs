//! Settings of moat's own interfaces for people and tools: the control API
//! socket, the Prometheus endpoint and logging.

use std::net::SocketAddr;

/// Default metrics address: loopback only (a scrape reveals what devices do).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9469";
/// Group allowed on the control socket.
pub const DEFAULT_API_GROUP: &str = "moat";
/// Socket file name inside `run_dir` when `[api] socket` is not set.
pub const API_SOCKET_NAME: &str = "moat.sock";

/// `[api]`: the control API (HTTP/JSON over a Unix socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// Path of the socket (default `<run_dir>/moat.sock`).
    pub socket: String,
    /// Group given the socket (mode 0660) and allowed by the peer check.
    pub group: String,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `None`: no endpoint.
    pub listen: Option<SocketAddr>,
    /// Devices with their own label; the rest are summed under `other`.
    pub max_labeled_devices: u32,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings { listen: DEFAULT_METRICS_LISTEN.parse().ok(), max_labeled_devices: 256 }
    }
}

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
