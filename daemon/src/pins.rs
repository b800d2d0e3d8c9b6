//! Pinned enforcement: the classifier's maps and links live in a bpffs
//! directory, so they keep working when moat stops or dies (`on_failure =
//! "closed"`), and a restarted moat adopts them instead of starting over.
//!
//! Layout: `<pin_dir>/v<MAP_LAYOUT_VERSION>/<MAP>` and `.../link_ingress`,
//! `.../link_egress`. The version directory keeps a moat with another map
//! layout from adopting maps it would misread.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use aya::maps::MapInfo;
use moat_common::maps as m;

use crate::kernel::Limits;

/// Bumped whenever a pinned map's key or value layout changes.
pub const MAP_LAYOUT_VERSION: u32 = 1;

/// Every map the object defines (all are pinned).
pub const MAPS: [&str; 12] = [
    m::DEVICES,
    m::UNKNOWN_POLICY,
    m::POLICY_GEN,
    m::DEVICE_STATS,
    m::DROP_REASONS,
    m::HEALTH,
    m::FLOWS,
    m::BLOCKED_FLOWS,
    m::UNKNOWN_SEEN,
    m::EVENTS,
    m::JUMP,
    m::PENDING,
];

/// Links pinned per attach point.
pub const LINK_INGRESS: &str = "link_ingress";
pub const LINK_EGRESS: &str = "link_egress";

#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    #[error("pin directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("mounting bpffs on {path}: {message}")]
    Mount { path: PathBuf, message: String },
    #[error(
        "pinned map {name} in {dir} has {what} {found}, this config needs {wanted}: \
         the pinned state is from another configuration or version; run `moat stop --remove` and start again"
    )]
    Incompatible { dir: PathBuf, name: &'static str, what: &'static str, found: u32, wanted: u32 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PinsError + '_ {
    move |source| PinsError::Io { path: path.to_path_buf(), source }
}

/// The versioned directory under `pin_dir`, on a bpffs (mounted there if
/// no bpffs covers it yet).
pub fn prepare(pin_dir: &Path) -> Result<PathBuf, PinsError> {
    fs::create_dir_all(pin_dir).map_err(io(pin_dir))?;
    if !on_bpffs(pin_dir) {
        let out = Command::new("mount").args(["-t", "bpf", "bpf"]).arg(pin_dir).output().map_err(io(pin_dir))?;
        if !out.status.success() {
            let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(PinsError::Mount { path: pin_dir.to_path_buf(), message });
        }
    }
    let dir = versioned(pin_dir);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

/// `<pin_dir>/v<layout>`.
pub fn versioned(pin_dir: &Path) -> PathBuf {
    pin_dir.join(format!("v{MAP_LAYOUT_VERSION}"))
}

/// Whether the longest mount point covering `path` is a bpffs.
fn on_bpffs(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return false };
    let mut best: Option<(usize, bool)> = None;
    for line in info.lines() {
        // "... mount_point options ... - fstype source options"
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mount_point), Some(dash)) = (fields.get(4), fields.iter().position(|f| *f == "-")) else { continue };
        let fstype = fields.get(dash + 1).copied().unwrap_or("");
        if path.starts_with(mount_point) && best.is_none_or(|(len, _)| mount_point.len() >= len) {
            best = Some((mount_point.len(), fstype == "bpf"));
        }
    }
    best.is_some_and(|(_, bpf)| bpf)
}

/// Refuses pinned maps sized for another config (a map's size is fixed
/// when it is created; adopting a wrong one would misbehave silently).
pub fn check_compatible(dir: &Path, limits: Limits) -> Result<(), PinsError> {
    for (name, wanted) in
        [(m::DEVICES, limits.max_devices), (m::DEVICE_STATS, limits.max_devices), (m::FLOWS, limits.flow_table_size)]
    {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let Ok(info) = MapInfo::from_pin(&path) else { continue };
        if info.max_entries() != wanted {
            let found = info.max_entries();
            return Err(PinsError::Incompatible { dir: dir.into(), name, what: "max_entries", found, wanted });
        }
    }
    Ok(())
}

/// Removes every pin (maps, links) under `pin_dir`: links without another
/// reference detach, maps are freed. Missing pins are not an error.
pub fn remove(pin_dir: &Path) -> Result<usize, PinsError> {
    let dir = versioned(pin_dir);
    let mut removed = 0;
    let Ok(entries) = fs::read_dir(&dir) else { return Ok(0) };
    for e in entries.flatten() {
        fs::remove_file(e.path()).map_err(io(&dir))?;
        removed += 1;
    }
    let _ = fs::remove_dir(&dir);
    Ok(removed)
}
