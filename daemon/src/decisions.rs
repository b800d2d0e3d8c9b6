//! Decisions people make about devices at run time (through the control API):
//! approve an unknown device with a policy, give a device another policy,
//! quarantine it with a reason. They are kept in `<state_dir>/devices.json`
//! and laid over every config moat loads, so they survive reloads and
//! restarts; the config file itself is never rewritten.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use moat_policy::{config::QUARANTINE, Config, Device, MacAddr};
use serde::{Deserialize, Serialize};
use tracing::warn;

/// File name in the state directory.
pub const FILE: &str = "devices.json";

#[derive(Debug, thiserror::Error)]
pub enum DecisionsError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a moat decisions file: {source}")]
    Parse { path: String, source: serde_json::Error },
}

/// What was decided about one device (by MAC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Name for a device that is not in the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Policy given through the API (approve, set policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Quarantined, and why (wins over `policy` until lifted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    /// Unix time of the last decision.
    pub since: i64,
    /// Classifier slot of a device the config does not list, kept so that
    /// approving or forgetting one device never moves another's counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
}

/// All decisions, and where they are kept.
#[derive(Debug)]
pub struct Decisions {
    path: PathBuf,
    pub by_mac: BTreeMap<MacAddr, Decision>,
}

impl Decisions {
    /// Loads the decisions file (none yet: empty).
    pub fn open(state_dir: &Path) -> Result<Self, DecisionsError> {
        let path = state_dir.join(FILE);
        let p = path.display().to_string();
        let by_mac = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| DecisionsError::Parse { path: p, source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(DecisionsError::Io { path: p, source }),
        };
        Ok(Decisions { path, by_mac })
    }

    /// An empty set kept nowhere (when the file could not be read: moat
    /// enforces the config alone rather than guess).
    pub fn detached() -> Self {
        Decisions { path: PathBuf::new(), by_mac: BTreeMap::new() }
    }

    /// Writes the file (tmp + rename; 0640: it names the home's devices).
    pub fn save(&self) -> Result<(), DecisionsError> {
        if self.path.as_os_str().is_empty() {
            return Ok(());
        }
        let io = |source| DecisionsError::Io { path: self.path.display().to_string(), source };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&self.by_mac).map_err(|e| io(std::io::Error::other(e)))?;
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o640).open(&tmp).map_err(io)?;
        f.write_all(&body).and_then(|()| f.sync_all()).map_err(io)?;
        // `moat forget` run by root must leave a file the daemon can read.
        crate::owner::like_parent(&tmp);
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    /// Whether decisions can be kept (false: the file could not be read at start).
    pub fn is_kept(&self) -> bool {
        !self.path.as_os_str().is_empty()
    }

    /// The config with the decisions laid over it. A device the config does
    /// not list keeps the slot it was given (slots are handed out from the
    /// top of the table down, away from the config's 1, 2, 3...). A decision
    /// the config no longer supports (its policy was removed, no slot left)
    /// is skipped with a warning: the device falls back to the config's view.
    pub fn apply(&mut self, mut cfg: Config) -> Config {
        let max = cfg.classifier.max_devices;
        let mut taken: BTreeSet<u32> = cfg.devices.iter().map(|d| d.id).collect();
        // Slots already held by listed-elsewhere devices first, so a newcomer never takes them.
        let held: BTreeSet<u32> = self.by_mac.values().filter_map(|d| d.id).collect();
        for (mac, d) in self.by_mac.iter_mut() {
            let Some(policy) = wanted_policy(&cfg, mac, d) else { continue };
            if let Some(dev) = cfg.devices.iter_mut().find(|x| x.mac == *mac) {
                dev.policy = policy;
                continue;
            }
            let kept = d.id.filter(|i| *i > 0 && *i < max && !taken.contains(i));
            let Some(id) = kept.or_else(|| (1..max).rev().find(|i| !taken.contains(i) && !held.contains(i))) else {
                warn!(mac = %mac, "no device slot left for an approved device ([classifier] max_devices); ignored");
                continue;
            };
            d.id = Some(id);
            taken.insert(id);
            let name = unique_name(&cfg, d.name.as_deref(), mac);
            cfg.devices.push(Device { mac: *mac, name, policy, id, tags: Vec::new() });
        }
        cfg
    }
}

/// The policy a decision gives (`None`: it gives none the config allows).
fn wanted_policy(cfg: &Config, mac: &MacAddr, d: &Decision) -> Option<String> {
    match (&d.quarantine, &d.policy) {
        (Some(_), _) => Some(QUARANTINE.to_string()),
        (None, Some(p)) if cfg.policies.contains_key(p) => Some(p.clone()),
        (None, Some(p)) => {
            warn!(mac = %mac, policy = %p, "decision names a policy the config no longer has; ignored");
            None
        }
        (None, None) => None,
    }
}

/// The decided name if no configured device has it, else the MAC.
fn unique_name(cfg: &Config, name: Option<&str>, mac: &MacAddr) -> String {
    match name {
        Some(n) if !cfg.devices.iter().any(|d| d.name == n) => n.to_string(),
        _ => mac.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)] // a failing test panics
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[gateway]
lan = "br-lan"
wan = "wan0"
[policies.open]
[policies.camera]
internet = "none"
[[devices]]
mac = "02:77:00:00:00:01"
name = "camera"
policy = "camera"
"#;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn decisions_add_devices_and_override_policies() {
        let cfg = Config::parse(Path::new("t.toml"), CONFIG).unwrap();
        let mut d = Decisions::detached();
        let q = Decision { quarantine: Some("odd traffic".into()), policy: Some("open".into()), ..Decision::default() };
        d.by_mac.insert(mac("02:77:00:00:00:01"), q);
        let approved = Decision { name: Some("camera".into()), policy: Some("open".into()), ..Decision::default() };
        d.by_mac.insert(mac("02:77:00:00:00:09"), approved);
        let gone = Decision { policy: Some("removed".into()), ..Decision::default() };
        d.by_mac.insert(mac("02:77:00:00:00:0a"), gone);
        let out = d.apply(cfg.clone());
        assert_eq!(out.devices.len(), 2, "the decision naming a removed policy is skipped");
        assert_eq!(out.devices[0].policy, QUARANTINE, "quarantine wins over the policy");
        let added = &out.devices[1];
        let top = cfg.classifier.max_devices - 1;
        assert_eq!((added.id, added.policy.as_str()), (top, "open"), "slots come from the top of the table");
        assert_eq!(added.name, "02:77:00:00:00:09", "a name the config already uses falls back to the MAC");

        // Another approval, of a MAC that sorts first, moves nobody.
        let first = Decision { policy: Some("open".into()), ..Decision::default() };
        d.by_mac.insert(mac("02:77:00:00:00:02"), first);
        let out = d.apply(cfg.clone());
        let id_of = |m: &str| out.devices.iter().find(|x| x.mac == mac(m)).map(|x| x.id);
        assert_eq!((id_of("02:77:00:00:00:09"), id_of("02:77:00:00:00:02")), (Some(top), Some(top - 1)));
    }

    #[test]
    fn no_slot_left_skips_the_device() {
        let small = CONFIG.replace("[policies.open]", "[classifier]\nmax_devices = 2\n[policies.open]");
        let cfg = Config::parse(Path::new("t.toml"), &small).unwrap();
        let mut d = Decisions::detached();
        for m in ["02:77:00:00:00:08", "02:77:00:00:00:09"] {
            d.by_mac.insert(mac(m), Decision { policy: Some("open".into()), ..Decision::default() });
        }
        let out = d.apply(cfg);
        assert_eq!(out.devices.len(), 1, "ids 1..max: the camera holds 1, nothing is left");
    }

    #[test]
    fn decisions_survive_a_save_and_a_bad_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("moat-decisions-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut d = Decisions::open(&dir).unwrap();
        assert!(d.by_mac.is_empty());
        d.by_mac.insert(
            mac("02:77:00:00:00:09"),
            Decision { policy: Some("open".into()), since: 5, ..Decision::default() },
        );
        d.save().unwrap();
        let again = Decisions::open(&dir).unwrap();
        assert_eq!(again.by_mac, d.by_mac);
        std::fs::write(dir.join(FILE), b"{\"02:77:00:00:00:09\": {\"polcy\": 1}}").unwrap();
        let e = Decisions::open(&dir).unwrap_err().to_string();
        assert!(e.contains("devices.json") && e.contains("not a moat decisions file"), "{e}");
    }
}
