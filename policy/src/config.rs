//! The validated config: what the daemon enforces.

use std::{collections::BTreeMap, path::Path};

use moat_common::class;

use crate::{diag::Source, mac::MacAddr, model::Policy, raw::RawConfig, Diagnostic, Diagnostics};

/// Where runtime files (the status snapshot) go when the config does not say.
pub const DEFAULT_RUN_DIR: &str = "/run/moat";

/// Interfaces and daemon settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// LAN-side interface (usually the bridge) the classifier attaches to.
    pub lan: String,
    /// WAN-side interface: new inbound connections from it are dropped.
    pub wan: String,
    pub run_dir: String,
    /// Policy for MACs not listed (default: the built-in `quarantine`).
    pub unknown_policy: String,
    /// Policy an approved unknown device gets when the approval names none.
    pub approved_policy: Option<String>,
    /// Shortest life of a DNS-learned address, seconds.
    pub dns_ttl_floor: u32,
    /// Local MUD files: a device not in the config that announces a MUD URL
    /// whose file name is found here gets the policy imported from it.
    pub mud_dir: Option<String>,
    /// Persistent state: the device inventory database.
    pub state_dir: String,
    /// bpffs directory where the classifier's maps and links are pinned.
    pub pin_dir: String,
    pub on_failure: OnFailure,
}

/// What happens to enforcement when moat stops or dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Everything stays in the kernel and keeps enforcing; a restart adopts it.
    #[default]
    Closed,
    /// A clean stop removes the classifier and the tables (a crash still
    /// leaves them: the kernel cannot tell a crash from a pause).
    Open,
}

/// Where the inventory lives when the config does not say.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/moat";

/// Where pins go when the config does not say.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/moat";

/// Kernel table sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classifier {
    /// Device slots (ids 1..max_devices; 0 counts unknown devices).
    pub max_devices: u32,
    /// Flows tracked at once (LRU: the oldest is evicted and re-classifies).
    pub flow_table_size: u32,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier { max_devices: moat_common::maps::MAX_DEVICES, flow_table_size: moat_common::maps::FLOW_TABLE_SIZE }
    }
}

/// Name of the built-in policy for unknown devices (used unless the config
/// defines a policy of that name itself).
pub const QUARANTINE: &str = "quarantine";

/// Classes blocked for every device when the config has no `[defaults] block`.
pub const DEFAULT_BLOCKED: [class::Class; 3] = [class::TELNET, class::FTP, class::TFTP];

/// Default `dns_ttl_floor`, seconds.
pub const DEFAULT_DNS_TTL_FLOOR: u32 = 120;

/// `[policies.NAME]` headers for policies written only as sub-tables (e.g.
/// `[policies.sensor.mqtt]`), appended after the text so every line keeps
/// its number: the toml crate cannot give a span for the key of an implicit
/// table and would reject the file with a confusing message.
fn implicit_policy_headers(text: &str) -> String {
    let headers: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('[') && !l.starts_with("[["))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next())
        .map(str::trim)
        .collect();
    let mut out = String::new();
    for h in &headers {
        let Some(rest) = h.strip_prefix("policies.") else { continue };
        let Some((name, _)) = rest.split_once('.') else { continue };
        let simple = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let header = format!("policies.{name}");
        if simple && !headers.contains(&header.as_str()) && !out.contains(&format!("[{header}]\n")) {
            out.push_str(&format!("\n[{header}]\n"));
        }
    }
    out
}

/// A known device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub mac: MacAddr,
    pub name: String,
    pub policy: String,
    /// Kernel-side id (index of the device's counters), 1-based.
    pub id: u32,
    pub tags: Vec<String>,
}

/// A whole, valid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub gateway: Gateway,
    pub classifier: Classifier,
    /// Classes blocked for everyone (already merged into every policy).
    pub defaults_blocked: u32,
    pub policies: BTreeMap<String, Policy>,
    pub devices: Vec<Device>,
    /// Device groups: members may talk to each other on the LAN whatever
    /// their policies' `lan` modes say (group name → member device names).
    pub groups: BTreeMap<String, Vec<String>>,
    /// The gateway's MQTT broker (`None`: not running).
    pub mqtt: Option<crate::mqtt::MqttSettings>,
    /// `[api]`: control socket path and group.
    pub api: crate::service::ApiSettings,
    /// `[metrics]`: Prometheus listen address and label cap.
    pub metrics: crate::service::MetricsSettings,
    /// `[log]`: level, format, per-packet line budget.
    pub log: crate::service::LogSettings,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        Self::load_with(path, "")
    }

    /// Reads a config file, appends `extra` (config text moat added itself,
    /// e.g. from local MUD files) and validates the whole.
    pub fn load_with(path: &Path, extra: &str) -> Result<Self, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                file: path.display().to_string(),
                line: 0,
                col: 0,
                message: format!("cannot read config: {e}"),
                hint: None,
            }])
        })?;
        if extra.is_empty() {
            Self::parse(path, &text)
        } else {
            Self::parse(path, &format!("{text}\n{extra}"))
        }
    }

    /// Parses and validates config text; `path` is used in diagnostics only.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Diagnostics> {
        let src = Source::new(path, text);
        let full = format!("{text}{}", implicit_policy_headers(text));
        let raw: RawConfig = toml::from_str(&full).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            Diagnostics(vec![src.at(span, e.message().trim_end(), None)])
        })?;
        crate::validate::validate(&src, raw)
    }

    /// The policy applied to devices not in the config.
    pub fn unknown_policy(&self) -> Policy {
        self.policies.get(&self.gateway.unknown_policy).cloned().unwrap_or_else(Policy::quarantine)
    }

    /// The devices of a group.
    pub fn group_members(&self, group: &str) -> Vec<&Device> {
        let names = self.groups.get(group).map(Vec::as_slice).unwrap_or(&[]);
        self.devices.iter().filter(|d| names.contains(&d.name)).collect()
    }

    /// The policy of a device (validation guarantees it exists).
    pub fn policy_of(&self, device: &Device) -> Policy {
        self.policies.get(&device.policy).cloned().unwrap_or_default()
    }
}
