//! The status snapshot: per-device counters (by class and direction), drop
//! reasons, classifier health, flow-table fill and recent events, written
//! atomically to `<run_dir>/status.json` (periodically, on SIGUSR1, and at exit).

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use moat_common::{
    class::{self, dir},
    event,
    maps::UNKNOWN_DEVICE_ID,
    reason, DeviceStats,
};
use moat_policy::{Config, Policy};
use serde::Serialize;

use crate::{
    events::{Event, Events},
    kernel::{Kernel, KernelError},
    run::Daemon,
};

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
    pub flows: FlowReport,
    pub events: BTreeMap<&'static str, u64>,
    pub recent_events: Vec<Event>,
    pub learned: BTreeMap<&'static str, u64>,
    pub reloads: Reloads,
    pub inventory: InventoryReport,
    /// Per-packet log lines (blocked, new device) over the `[log]` budget, not logged.
    pub log_suppressed: u64,
    /// MQTT service counters (`null`: not configured; `{"error": ...}`: not running).
    pub mqtt: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct InventoryReport {
    /// "ok", or why the inventory is unavailable.
    pub state: String,
    pub devices: Vec<crate::inventory::Record>,
}

#[derive(Debug, Serialize)]
pub struct Reloads {
    pub ok: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FlowReport {
    pub active: usize,
    pub capacity: u32,
    /// Flows per class, over the whole table.
    pub by_class: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize, Default)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct DeviceReport {
    pub name: String,
    pub id: u32,
    /// Empty for the unknown-devices slot.
    pub mac: String,
    pub policy: String,
    pub blocked_classes: Vec<&'static str>,
    pub quarantine: bool,
    /// Totals per direction (`from_device`, `to_device`).
    pub total: BTreeMap<&'static str, Traffic>,
    /// Class → direction → traffic, classes with traffic only.
    pub classes: BTreeMap<&'static str, BTreeMap<&'static str, Traffic>>,
    pub dropped_packets: u64,
    pub dropped_by_class: BTreeMap<&'static str, u64>,
    pub dropped_by_reason: BTreeMap<&'static str, u64>,
}

fn nonzero(names: &[&'static str], values: &[u64]) -> BTreeMap<&'static str, u64> {
    names.iter().zip(values).filter(|(_, n)| **n > 0).map(|(k, n)| (*k, *n)).collect()
}

pub(crate) fn report(
    name: &str,
    id: u32,
    mac: String,
    policy_name: &str,
    policy: &Policy,
    s: &DeviceStats,
) -> DeviceReport {
    let mut classes = BTreeMap::new();
    for (c, per_dir) in s.traffic.iter().enumerate() {
        let dirs: BTreeMap<_, _> = per_dir
            .iter()
            .enumerate()
            .filter(|(_, t)| t.packets > 0)
            .map(|(d, t)| (dir::NAMES[d], Traffic { packets: t.packets, bytes: t.bytes }))
            .collect();
        if !dirs.is_empty() {
            classes.insert(class::name(c as u8), dirs);
        }
    }
    let total = (0..dir::COUNT)
        .map(|d| {
            let t = s.total(d);
            (dir::NAMES[d], Traffic { packets: t.packets, bytes: t.bytes })
        })
        .collect();
    DeviceReport {
        name: name.to_string(),
        id,
        mac,
        policy: policy_name.to_string(),
        blocked_classes: policy.blocked_names(),
        quarantine: policy.quarantine,
        total,
        classes,
        dropped_packets: s.dropped(),
        dropped_by_class: nonzero(&class::NAMES, &s.dropped_by_class),
        dropped_by_reason: nonzero(&reason::NAMES, &s.dropped_by_reason),
    }
}

/// Reads every counter the snapshot holds from the kernel.
pub fn collect(d: &Daemon, seq: u64) -> Result<Snapshot, KernelError> {
    let (kernel, cfg, events) = (&d.kernel, &d.cfg, &d.events);
    let mut devices = Vec::with_capacity(cfg.devices.len() + 1);
    for d in &cfg.devices {
        let s = kernel.device_stats(d.id)?;
        devices.push(report(&d.name, d.id, d.mac.to_string(), &d.policy, &cfg.policy_of(d), &s));
    }
    let unknown_name = cfg.gateway.unknown_policy.as_str();
    let s = kernel.device_stats(UNKNOWN_DEVICE_ID)?;
    devices.push(report("unknown", UNKNOWN_DEVICE_ID, String::new(), unknown_name, &cfg.unknown_policy(), &s));
    let named = |names: &[&'static str], values: Vec<u64>| names.iter().copied().zip(values).collect();
    Ok(Snapshot {
        seq,
        unix_time: crate::clock::unix_secs().unsigned_abs(),
        devices,
        drop_reasons: named(&reason::NAMES, kernel.drop_reasons()?),
        health: named(&reason::HEALTH_NAMES, kernel.health()?),
        flows: flows(kernel, cfg),
        events: events_report(events),
        recent_events: events.recent.iter().cloned().collect(),
        learned: [
            ("dns_addresses", d.learner.dns_learned),
            ("dns_unparsed", d.learner.dns_unparsed),
            ("hosts", d.learner.hosts_learned),
            ("hosts_unverified", d.learner.hosts_unverified),
            ("apply_errors", d.apply_errors),
        ]
        .into_iter()
        .collect(),
        reloads: Reloads { ok: d.reloads_ok, failed: d.reloads_failed, last_error: d.last_reload_error.clone() },
        inventory: match &d.inventory {
            Ok(inv) => InventoryReport { state: "ok".into(), devices: inv.records().cloned().collect() },
            Err(e) => InventoryReport { state: e.clone(), devices: Vec::new() },
        },
        log_suppressed: d.packet_log.suppressed_total,
        mqtt: match &d.mqtt {
            Ok(Some(m)) => m.status(),
            Ok(None) => serde_json::Value::Null,
            Err(e) => serde_json::json!({ "error": e }),
        },
    })
}

fn flows(kernel: &Kernel, cfg: &Config) -> FlowReport {
    let mut by_class = BTreeMap::new();
    let all = kernel.flows();
    for (_, v) in &all {
        *by_class.entry(class::name(v.class)).or_insert(0) += 1;
    }
    FlowReport { active: all.len(), capacity: cfg.classifier.flow_table_size, by_class }
}

fn events_report(events: &Events) -> BTreeMap<&'static str, u64> {
    let mut m: BTreeMap<&'static str, u64> = event::KIND_NAMES.iter().copied().zip(events.counts).skip(1).collect();
    m.insert("undecodable", events.undecodable);
    m
}

/// Writes the snapshot via a temporary file and rename (readers never see a
/// partial file). Mode 0640: counters reveal what devices do.
pub fn write(dir: &Path, snap: &Snapshot) -> std::io::Result<PathBuf> {
    // Created 0750 if missing; an existing directory keeps its owner's mode.
    fs::DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    let path = dir.join(FILE);
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let body = serde_json::to_vec_pretty(snap).map_err(std::io::Error::other)?;
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o640).open(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    Ok(path)
}
