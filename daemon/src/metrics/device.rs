//! Per-device metrics: traffic by class and direction, blocked packets by
//! reason, flows opened, last seen and quarantine state, one row per
//! `device` label (see `labels`): labeled devices, then `other` (the folded
//! devices summed), then `unknown` (the kernel's slot for unlisted MACs).

use std::collections::{HashMap, HashSet};

use moat_common::{
    class::{self, dir},
    maps::UNKNOWN_DEVICE_ID,
    reason, DeviceStats,
};
use moat_policy::{Config, Device};

use super::{
    activity::Activity,
    labels::{Labels, OTHER, UNKNOWN},
    scrape::{int, set_counter, set_gauge, Scrape},
};
use crate::{inventory::Record, kernel::KernelError};

/// What one `device` label reports.
#[derive(Debug, Default)]
pub struct Row {
    pub label: String,
    pub stats: DeviceStats,
    pub flows_opened: u64,
    /// Unix time; `None` when nothing was seen since the inventory began.
    pub last_seen: Option<i64>,
    /// 0/1 for one device; for `other`, how many folded devices are quarantined.
    pub quarantined: i64,
}

/// When devices were last seen, from the inventory (which outlives restarts).
#[derive(Debug, Default)]
pub struct Sightings {
    by_mac: HashMap<String, i64>,
    /// Inventory devices that are not configured.
    pub unknown: usize,
    pub unknown_last_seen: Option<i64>,
}

impl Sightings {
    pub fn of<'a>(cfg: &Config, records: impl Iterator<Item = &'a Record>) -> Self {
        let configured: HashSet<String> = cfg.devices.iter().map(|d| d.mac.to_string()).collect();
        let mut s = Sightings::default();
        for r in records {
            if configured.contains(&r.mac) {
                s.by_mac.insert(r.mac.clone(), r.last_seen);
            } else {
                s.unknown += 1;
                s.unknown_last_seen = s.unknown_last_seen.max(Some(r.last_seen));
            }
        }
        s
    }
}

/// The rows for `cfg`'s devices; `stats_of` reads a device id's counters.
pub fn rows(
    cfg: &Config,
    labels: &Labels<'_>,
    activity: &Activity,
    sightings: &Sightings,
    stats_of: impl Fn(u32) -> Result<DeviceStats, KernelError>,
) -> Result<Vec<Row>, KernelError> {
    let mut rows = Vec::with_capacity(labels.labeled.len() + 2);
    for (d, label) in &labels.labeled {
        let mut row = Row { label: label.clone(), ..Row::default() };
        add_device(&mut row, cfg, d, activity, sightings, &stats_of)?;
        rows.push(row);
    }
    if !labels.folded.is_empty() {
        let mut row = Row { label: OTHER.to_string(), ..Row::default() };
        for d in &labels.folded {
            add_device(&mut row, cfg, d, activity, sightings, &stats_of)?;
        }
        rows.push(row);
    }
    let unknown = activity.get(UNKNOWN_DEVICE_ID, "");
    rows.push(Row {
        label: UNKNOWN.to_string(),
        stats: stats_of(UNKNOWN_DEVICE_ID)?,
        flows_opened: unknown.map_or(0, |s| s.flows_opened),
        last_seen: sightings.unknown_last_seen.max(unknown.map(|s| s.last_seen)),
        quarantined: i64::from(cfg.unknown_policy().quarantine),
    });
    Ok(rows)
}

/// Adds one device to a row (a row of its own, or `other`).
fn add_device(
    row: &mut Row,
    cfg: &Config,
    d: &Device,
    activity: &Activity,
    sightings: &Sightings,
    stats_of: &impl Fn(u32) -> Result<DeviceStats, KernelError>,
) -> Result<(), KernelError> {
    let mac = d.mac.to_string();
    row.stats.add(&stats_of(d.id)?);
    let seen = activity.get(d.id, &mac);
    row.flows_opened += seen.map_or(0, |s| s.flows_opened);
    let last = sightings.by_mac.get(&mac).copied().max(seen.map(|s| s.last_seen));
    row.last_seen = row.last_seen.max(last);
    row.quarantined += i64::from(cfg.policy_of(d).quarantine);
    Ok(())
}

/// Writes the rows' families into the scrape.
pub fn export(s: &Scrape, rows: &[Row]) -> prometheus::Result<()> {
    let labels = ["device", "direction", "class"];
    let bytes = s.counters(
        "moat_device_bytes_total",
        "Bytes the classifier counted for the device (Ethernet frames, dropped ones included), by direction \
         (from_device, to_device) and traffic class; only class/direction pairs with traffic appear.",
        &labels,
    )?;
    let packets = s.counters(
        "moat_device_packets_total",
        "Packets the classifier counted for the device (dropped ones included), by direction and traffic class; \
         only class/direction pairs with traffic appear.",
        &labels,
    )?;
    let blocked = s.counters(
        "moat_device_blocked_packets_total",
        "Packets of the device the classifier dropped, by reason (blocked_class, quarantine, malformed); \
         only reasons with drops appear.",
        &["device", "reason"],
    )?;
    let flows = s.counters(
        "moat_device_flows_opened_total",
        "Flows the device opened (new_flow events received since moat started; events lost to a full ring \
         buffer are counted in moat_classifier_health_events_total{counter=\"ringbuf_full\"}).",
        &["device"],
    )?;
    let last_seen = s.gauges(
        "moat_device_last_seen_timestamp_seconds",
        "Unix time the device was last seen (inventory and classifier events); absent if never seen.",
        &["device"],
    )?;
    let quarantined = s.gauges(
        "moat_device_quarantined",
        "1 if the device's policy quarantines it, else 0; for device=\"other\", how many folded devices are \
         quarantined.",
        &["device"],
    )?;
    for r in rows {
        let dev = r.label.as_str();
        for (c, per_dir) in r.stats.traffic.iter().enumerate() {
            for (d, t) in per_dir.iter().enumerate().filter(|(_, t)| t.packets > 0) {
                let l = [dev, dir::NAMES.get(d).copied().unwrap_or("invalid"), class::name(c as u8)];
                set_counter(&bytes, &l, t.bytes)?;
                set_counter(&packets, &l, t.packets)?;
            }
        }
        for (why, n) in reason::NAMES.iter().zip(r.stats.dropped_by_reason).filter(|(_, n)| *n > 0) {
            set_counter(&blocked, &[dev, why], n)?;
        }
        set_counter(&flows, &[dev], r.flows_opened)?;
        if let Some(t) = r.last_seen {
            set_gauge(&last_seen, &[dev], t)?;
        }
        set_gauge(&quarantined, &[dev], int(r.quarantined))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::panic)] // a failing test panics
mod tests {
    use moat_common::maps::Counter;

    use super::*;

    const CONFIG: &str = r#"
[gateway]
lan = "br-lan"
wan = "wan0"

[metrics]
max_labeled_devices = 1

[policies.open]
block = []

[policies.jail]
quarantine = true

[[devices]]
mac = "02:77:00:00:00:01"
name = "camera"
policy = "open"

[[devices]]
mac = "02:77:00:00:00:02"
name = "laptop"
policy = "jail"

[[devices]]
mac = "02:77:00:00:00:03"
name = "plug"
policy = "open"
"#;

    fn config() -> Config {
        Config::parse(std::path::Path::new("test.toml"), CONFIG).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Device id n sent n packets of n*100 bytes as TLS, and had n drops for its class.
    fn stats(id: u32) -> Result<DeviceStats, KernelError> {
        let mut s = DeviceStats::default();
        let n = u64::from(id);
        s.traffic[usize::from(class::TLS)][dir::FROM_DEVICE] = Counter { packets: n, bytes: n * 100 };
        s.dropped_by_reason[reason::BLOCKED_CLASS as usize] = n;
        Ok(s)
    }

    fn record(mac: &str, last_seen: i64) -> Record {
        Record { mac: mac.into(), last_seen, ..Record::default() }
    }

    #[test]
    fn folded_devices_are_summed_under_other() {
        let cfg = config();
        let inventory =
            [record("02:77:00:00:00:02", 500), record("02:77:00:00:00:03", 700), record("02:77:00:00:00:99", 900)];
        let sightings = Sightings::of(&cfg, inventory.iter());
        assert_eq!((sightings.unknown, sightings.unknown_last_seen), (1, Some(900)));
        let rows =
            rows(&cfg, &Labels::of(&cfg), &Activity::default(), &sightings, stats).unwrap_or_else(|e| panic!("{e}"));
        let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["camera", "other", "unknown"]);
        let tls = |r: &Row| r.stats.traffic[usize::from(class::TLS)][dir::FROM_DEVICE];
        assert_eq!((tls(&rows[0]).packets, tls(&rows[1]).packets, tls(&rows[1]).bytes), (1, 5, 500), "ids 2 + 3");
        assert_eq!(rows[1].quarantined, 1, "laptop's policy quarantines it");
        assert_eq!(rows[1].last_seen, Some(700), "the latest of the folded devices");
        assert_eq!(rows[0].last_seen, None, "camera was never seen");
        assert_eq!((rows[2].last_seen, rows[2].quarantined), (Some(900), 1), "unknown devices are quarantined");
    }

    #[test]
    fn export_writes_exact_samples() {
        let cfg = config();
        let rows = rows(&cfg, &Labels::of(&cfg), &Activity::default(), &Sightings::default(), stats)
            .unwrap_or_else(|e| panic!("{e}"));
        let s = Scrape::new();
        export(&s, &rows).unwrap_or_else(|e| panic!("{e}"));
        let text =
            prometheus::TextEncoder::new().encode_to_string(&s.registry().gather()).unwrap_or_else(|e| panic!("{e}"));
        for line in [
            r#"moat_device_packets_total{class="tls",device="other",direction="from_device"} 5"#,
            r#"moat_device_bytes_total{class="tls",device="camera",direction="from_device"} 100"#,
            r#"moat_device_blocked_packets_total{device="other",reason="blocked_class"} 5"#,
            r#"moat_device_flows_opened_total{device="unknown"} 0"#,
            r#"moat_device_quarantined{device="camera"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(!text.contains("direction=\"to_device\""), "no traffic, no sample:\n{text}");
        assert!(!text.contains("moat_device_last_seen_timestamp_seconds{"), "never seen, no sample");
    }
}
