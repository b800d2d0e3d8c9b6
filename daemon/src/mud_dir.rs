//! Local MUD files: when a device that is not in the config announces a MUD
//! URL in DHCP (option 161), and a file of that name is in `mud_dir`, moat
//! imports it and gives the device that policy. The additions are config text
//! kept in memory and appended to the config file on reloads.

use std::{collections::BTreeSet, path::Path};

use moat_policy::{mud, Config, MacAddr};
use tracing::{debug, warn};

use crate::dhcp;

/// Devices moat gives a local MUD policy at most (each is config text).
pub const MAX_MUD_DEVICES: usize = 256;

#[derive(Debug, Default)]
pub struct Applied {
    /// Config text appended to the file: imported policies and devices.
    pub extra: String,
    macs: BTreeSet<String>,
}

/// `name.json` from the last path segment of a MUD URL, if it is a plain file name.
fn file_name(url: &str) -> Option<&str> {
    let name = url.split(['?', '#']).next()?.rsplit('/').next()?;
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (plain && name.ends_with(".json") && !name.starts_with('.')).then_some(name)
}

impl Applied {
    /// Records that `mac`'s MUD policy was applied (only after it was).
    pub fn commit(&mut self, mac: &str, extra: String) {
        self.macs.insert(mac.to_string());
        self.extra = extra;
    }

    /// The config text to add for `mac`'s DHCP request, if it announces a MUD
    /// URL with a local file and the device is not handled yet.
    pub fn fragment_for(&mut self, cfg: &Config, mac: &str, payload: &[u8]) -> Option<String> {
        let dir = cfg.gateway.mud_dir.as_deref()?;
        if self.macs.contains(mac) {
            return None;
        }
        let facts = dhcp::parse(payload).ok()?;
        let url = facts.mud_url.as_deref()?;
        let Some(name) = file_name(url) else {
            warn!(mac, url, "MUD URL without a usable file name");
            return None;
        };
        let path = Path::new(dir).join(name);
        let json = std::fs::read_to_string(&path)
            .map_err(|e| debug!(path = %path.display(), error = %e, "no local MUD file"))
            .ok()?;
        let addr: MacAddr = mac.parse().ok()?;
        let device_name = format!("mud-{}", mac.replace(':', ""));
        let imported = match mud::import(&json, addr, &device_name) {
            Ok(i) => i,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "local MUD file not usable");
                return None;
            }
        };
        // The file must describe the URL the device announced: the last path
        // segment alone would let a device pick the most permissive file.
        if imported.mud_url.as_deref() != Some(url) {
            warn!(mac, url, file = %path.display(), "announced MUD URL does not match the file's mud-url; not applied");
            return None;
        }
        if self.macs.len() >= MAX_MUD_DEVICES {
            warn!(mac, "too many devices with local MUD policies; not applied");
            return None;
        }
        for u in &imported.unsupported {
            warn!(path = %path.display(), "MUD not translated: {u}");
        }
        // A second device with the same MUD file shares the policy.
        let known = cfg.policies.contains_key(&imported.policy_name);
        let text = match (known, imported.toml.find("\n[[devices]]")) {
            (true, Some(at)) => imported.toml[at..].to_string(),
            _ => imported.toml,
        };
        Some(format!("\n{text}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_names_are_plain() {
        assert_eq!(super::file_name("https://a.example/mud/cam.json"), Some("cam.json"));
        assert_eq!(super::file_name("https://a.example/mud/cam.json?v=2"), Some("cam.json"));
        assert_eq!(super::file_name("https://a.example/mud/../../etc/passwd"), None);
        assert_eq!(super::file_name("https://a.example/mud/.json"), None);
        assert_eq!(super::file_name("https://a.example/"), None);
    }
}
