//! The validated config: what the daemon enforces.

use std::{collections::BTreeMap, path::Path};

use moat_common::class;

use crate::{diag::Source, mac::MacAddr, raw::RawConfig, Diagnostic, Diagnostics};

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
    /// Policy for MACs not listed; `None` = block every class (see [`Config::unknown_blocked`]).
    pub unknown_policy: Option<String>,
}

/// A named policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Classes dropped for devices with this policy, as a `class::bit` mask.
    pub blocked_classes: u32,
}

impl Policy {
    /// Names of the blocked classes, in class order.
    pub fn blocked_names(&self) -> Vec<&'static str> {
        (0..class::COUNT as u8)
            .filter(|c| self.blocked_classes & class::bit(*c) != 0)
            .map(class::name)
            .collect()
    }
}

/// A known device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub mac: MacAddr,
    pub name: String,
    pub policy: String,
    /// Kernel-side id (index of the device's counters), 1-based.
    pub id: u32,
}

/// A whole, valid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub gateway: Gateway,
    pub policies: BTreeMap<String, Policy>,
    pub devices: Vec<Device>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                file: path.display().to_string(),
                line: 0,
                col: 0,
                message: format!("cannot read config: {e}"),
                hint: None,
            }])
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates config text; `path` is used in diagnostics only.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Diagnostics> {
        let src = Source::new(path, text);
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            Diagnostics(vec![src.at(span, e.message().trim_end(), None)])
        })?;
        crate::validate::validate(&src, raw)
    }

    /// The `class::bit` mask applied to devices not in the config.
    pub fn unknown_blocked(&self) -> u32 {
        match &self.gateway.unknown_policy {
            Some(name) => self
                .policies
                .get(name)
                .map_or(u32::MAX, |p| p.blocked_classes),
            // No policy named: unknown devices get every class blocked that
            // moat considers insecure.
            None => class::bit(class::TELNET),
        }
    }

    /// The policy of a device (validation guarantees it exists).
    pub fn policy_of(&self, device: &Device) -> Policy {
        self.policies
            .get(&device.policy)
            .cloned()
            .unwrap_or_default()
    }
}
