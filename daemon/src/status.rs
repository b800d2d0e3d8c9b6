//! The status snapshot: per-device counters and drop reasons as JSON, written
//! atomically to `<run_dir>/status.json` (periodically, on SIGUSR1, and at exit)
//! so tools and tests can read what the kernel counted.

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use moat_common::{class, maps::UNKNOWN_DEVICE_ID, reason, DeviceStats};
use moat_policy::Config;
use serde::Serialize;

use crate::kernel::{Kernel, KernelError};

/// File name inside the run directory.
pub const FILE: &str = "status.json";

#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Increments with every write, so readers can wait for a fresh one.
    pub seq: u64,
    pub unix_time: u64,
    pub devices: Vec<DeviceReport>,
    pub drop_reasons: BTreeMap<&'static str, u64>,
    pub health: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
pub struct DeviceReport {
    pub name: String,
    /// Empty for the unknown-devices slot.
    pub mac: String,
    pub policy: String,
    pub blocked_classes: Vec<&'static str>,
    pub packets: u64,
    pub bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub dropped_by_class: BTreeMap<&'static str, u64>,
}

fn report(
    name: &str,
    mac: String,
    policy: &str,
    blocked: Vec<&'static str>,
    s: DeviceStats,
) -> DeviceReport {
    let dropped_by_class = s
        .dropped_by_class
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| (class::name(c as u8), *n))
        .collect();
    DeviceReport {
        name: name.to_string(),
        mac,
        policy: policy.to_string(),
        blocked_classes: blocked,
        packets: s.packets,
        bytes: s.bytes,
        dropped_packets: s.dropped_packets,
        dropped_bytes: s.dropped_bytes,
        dropped_by_class,
    }
}

/// Reads every counter the snapshot holds from the kernel.
pub fn collect(kernel: &Kernel, cfg: &Config, seq: u64) -> Result<Snapshot, KernelError> {
    let mut devices = Vec::with_capacity(cfg.devices.len() + 1);
    for d in &cfg.devices {
        let p = cfg.policy_of(d);
        devices.push(report(
            &d.name,
            d.mac.to_string(),
            &d.policy,
            p.blocked_names(),
            kernel.device_stats(d.id)?,
        ));
    }
    let unknown_policy = cfg
        .gateway
        .unknown_policy
        .as_deref()
        .unwrap_or("(built-in)");
    let unknown = moat_policy::Policy {
        blocked_classes: cfg.unknown_blocked(),
    };
    let stats = kernel.device_stats(UNKNOWN_DEVICE_ID)?;
    devices.push(report(
        "unknown",
        String::new(),
        unknown_policy,
        unknown.blocked_names(),
        stats,
    ));
    let named =
        |names: &[&'static str], values: Vec<u64>| names.iter().copied().zip(values).collect();
    Ok(Snapshot {
        seq,
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        devices,
        drop_reasons: named(&reason::NAMES, kernel.drop_reasons()?),
        health: named(&reason::HEALTH_NAMES, kernel.health()?),
    })
}

/// Writes the snapshot via a temporary file and rename (readers never see a
/// partial file). Mode 0640: counters reveal what devices do.
pub fn write(dir: &Path, snap: &Snapshot) -> std::io::Result<PathBuf> {
    // Created 0750 if missing; an existing directory keeps its owner's mode.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)?;
    let path = dir.join(FILE);
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let body = serde_json::to_vec_pretty(snap).map_err(std::io::Error::other)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    Ok(path)
}
