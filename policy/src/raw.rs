//! The config file as written: serde structs that keep the spans of the values
//! validation may complain about. Unknown keys are errors everywhere.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub gateway: Spanned<RawGateway>,
    #[serde(default)]
    pub classifier: Option<Spanned<RawClassifier>>,
    #[serde(default)]
    pub defaults: Option<Spanned<RawDefaults>>,
    #[serde(default)]
    pub policies: BTreeMap<Spanned<String>, Spanned<RawPolicy>>,
    #[serde(default)]
    pub devices: Vec<Spanned<RawDevice>>,
    #[serde(default)]
    pub groups: BTreeMap<Spanned<String>, Spanned<RawGroup>>,
    #[serde(default)]
    pub mqtt: Option<Spanned<RawMqtt>>,
    #[serde(default)]
    pub api: Option<Spanned<RawApi>>,
    #[serde(default)]
    pub metrics: Option<Spanned<RawMetrics>>,
    #[serde(default)]
    pub log: Option<Spanned<RawLog>>,
}

/// `[api]`: the control socket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    #[serde(default)]
    pub socket: Option<Spanned<String>>,
    #[serde(default)]
    pub group: Option<Spanned<String>>,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    #[serde(default)]
    pub max_labeled_devices: Option<Spanned<i64>>,
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default)]
    pub level: Option<Spanned<String>>,
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    #[serde(default)]
    pub packet_events_per_minute: Option<Spanned<i64>>,
}

/// `[mqtt]`: the gateway's broker for devices.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    #[serde(default)]
    pub tls_port: Option<Spanned<i64>>,
    #[serde(default)]
    pub plaintext_port: Option<Spanned<i64>>,
    #[serde(default)]
    pub upgrade_port: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_packet_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub connections_per_minute: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_connections: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_connections_per_device: Option<Spanned<i64>>,
    #[serde(default)]
    pub publish_rate: Option<Spanned<i64>>,
    #[serde(default)]
    pub queue_messages: Option<Spanned<i64>>,
    #[serde(default)]
    pub queue_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub overflow: Option<Spanned<String>>,
    #[serde(default)]
    pub handshake_timeout_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub client_certificates: Option<bool>,
    #[serde(default)]
    pub names: Vec<Spanned<String>>,
    #[serde(default)]
    pub upstreams: BTreeMap<Spanned<String>, Spanned<RawUpstream>>,
}

/// `[mqtt.upstreams.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub host: Spanned<String>,
    #[serde(default)]
    pub port: Option<Spanned<i64>>,
    #[serde(default)]
    pub address: Option<Spanned<String>>,
    pub ca_file: Spanned<String>,
}

/// `[policies.NAME.mqtt]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyMqtt {
    #[serde(default)]
    pub publish: Vec<Spanned<String>>,
    #[serde(default)]
    pub subscribe: Vec<Spanned<String>>,
    #[serde(default)]
    pub plaintext: bool,
    #[serde(default)]
    pub upstream: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    /// Device names.
    pub members: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub lan: Spanned<String>,
    pub wan: Spanned<String>,
    #[serde(default)]
    pub run_dir: Option<String>,
    /// Policy for devices not listed in `[[devices]]`.
    #[serde(default)]
    pub unknown_policy: Option<Spanned<String>>,
    /// Policy `moat device X approve` gives an unknown device when no policy is named.
    #[serde(default)]
    pub approved_policy: Option<Spanned<String>>,
    /// Shortest life of a DNS-learned address, seconds.
    #[serde(default)]
    pub dns_ttl_floor: Option<Spanned<i64>>,
    /// Directory of local MUD files applied to devices that announce them.
    #[serde(default)]
    pub mud_dir: Option<Spanned<String>>,
    /// Persistent state (the device inventory).
    #[serde(default)]
    pub state_dir: Option<Spanned<String>>,
    /// bpffs directory for pinned maps and links.
    #[serde(default)]
    pub pin_dir: Option<Spanned<String>>,
    /// "closed" (keep enforcing when moat stops) or "open".
    #[serde(default)]
    pub on_failure: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassifier {
    #[serde(default)]
    pub max_devices: Option<Spanned<i64>>,
    #[serde(default)]
    pub flow_table_size: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Classes blocked for every device, whatever its policy.
    #[serde(default)]
    pub block: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    pub block: Vec<Spanned<String>>,
    #[serde(default)]
    pub quarantine: bool,
    #[serde(default)]
    pub internet: Option<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<RawAllow>>,
    #[serde(default)]
    pub lan: Option<Spanned<String>>,
    #[serde(default)]
    pub services: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub inbound: Vec<Spanned<RawInbound>>,
    #[serde(default)]
    pub rate_limit_kbps: Option<Spanned<i64>>,
    #[serde(default)]
    pub mqtt: Option<Spanned<RawPolicyMqtt>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllow {
    #[serde(default)]
    pub domain: Option<Spanned<String>>,
    #[serde(default)]
    pub cidr: Option<Spanned<String>>,
    #[serde(default)]
    pub proto: Option<Spanned<String>>,
    /// Numbers or "low-high" strings.
    #[serde(default)]
    pub ports: Option<Vec<Spanned<toml::Value>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInbound {
    #[serde(default)]
    pub proto: Option<Spanned<String>>,
    pub port: Spanned<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub mac: Spanned<String>,
    pub name: Spanned<String>,
    pub policy: Spanned<String>,
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
}
