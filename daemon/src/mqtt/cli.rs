//! `moat mqtt credentials DEVICE`: the one moment a device's password exists
//! in clear. Works with or without the daemon running (the daemon re-reads
//! the password file when it changes).

use std::path::{Path, PathBuf};

use moat_policy::Config;

use super::{creds, pki};

/// What `credentials` made, to print.
#[derive(Debug)]
pub struct Issued {
    pub device: String,
    pub password: String,
    /// The CA devices must trust.
    pub ca: PathBuf,
    /// Client certificate and key files, when asked for (mTLS).
    pub cert_files: Option<(PathBuf, PathBuf)>,
}

/// Makes (or rotates) `device`'s password, and with `cert_dir` a client
/// certificate. The device must be in the config.
pub fn credentials(cfg: &Config, device: &str, rotate: bool, cert_dir: Option<&Path>) -> Result<Issued, String> {
    if cfg.mqtt.is_none() {
        return Err("the config has no [mqtt] table: the gateway broker is off".into());
    }
    let Some(dev) = cfg.devices.iter().find(|d| d.name == device || d.mac.to_string() == device) else {
        return Err(format!("no device named {device:?} in the config (use its name or MAC)"));
    };
    if cfg.policy_of(dev).mqtt.is_none() {
        return Err(format!(
            "{}: its policy {:?} has no [policies.{}.mqtt] permissions",
            dev.name, dev.policy, dev.policy
        ));
    }
    let dir = pki::dir(Path::new(&cfg.gateway.state_dir)).map_err(|e| e.to_string())?;
    let ca = pki::Ca::load_or_create(&dir).map_err(|e| e.to_string())?;
    let password = creds::issue(&dir, &dev.name, rotate).map_err(|e| e.to_string())?;
    let cert_files = match cert_dir {
        None => None,
        Some(out) => {
            let (cert, key) = ca.issue_client(&dev.name).map_err(|e| e.to_string())?;
            let (c, k) = (out.join(format!("{}.pem", dev.name)), out.join(format!("{}.key", dev.name)));
            pki::write_private(&c, cert.as_bytes(), 0o644).map_err(|e| e.to_string())?;
            pki::write_private(&k, key.as_bytes(), 0o600).map_err(|e| e.to_string())?;
            Some((c, k))
        }
    };
    Ok(Issued { device: dev.name.clone(), password, ca: ca.pem_path.clone(), cert_files })
}

/// Removes a device's password (`moat forget`); true if it had one.
pub fn revoke(cfg: &Config, device: &str) -> Result<bool, String> {
    let dir = Path::new(&cfg.gateway.state_dir).join("mqtt");
    if !dir.exists() {
        return Ok(false);
    }
    creds::revoke(&dir, device).map_err(|e| e.to_string())
}
