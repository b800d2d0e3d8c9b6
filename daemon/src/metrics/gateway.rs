//! Gateway-wide metrics read at scrape time: devices by state, what was
//! learned into the nft sets, the inventory, build info.

use super::{
    device::Sightings,
    labels::Labels,
    scrape::{int, set_gauge, Scrape},
};
use crate::run::Daemon;

/// Devices by state, and how many were folded under `other`.
pub fn export_devices(s: &Scrape, d: &Daemon, labels: &Labels<'_>, sightings: &Sightings) -> prometheus::Result<()> {
    let cfg = &d.cfg;
    let quarantined = cfg.devices.iter().filter(|dev| cfg.policy_of(dev).quarantine).count();
    let states = s.gauges(
        "moat_devices",
        "Devices by state: known (configured or approved), unknown (in the inventory, not configured), \
         quarantined (configured, with a quarantine policy).",
        &["state"],
    )?;
    set_gauge(&states, &["known"], int(cfg.devices.len()))?;
    set_gauge(&states, &["unknown"], int(sightings.unknown))?;
    set_gauge(&states, &["quarantined"], int(quarantined))?;
    s.gauge(
        "moat_metrics_devices_folded",
        "Configured devices over [metrics] max_labeled_devices, summed under device=\"other\".",
        int(labels.folded.len()),
    )?;
    s.gauge(
        "moat_metrics_max_labeled_devices",
        "The [metrics] max_labeled_devices setting: devices (by id) that get their own device label.",
        i64::from(cfg.metrics.max_labeled_devices),
    )?;
    s.gauge(
        "moat_inventory_available",
        "1 if the device inventory database is in use, 0 if it failed (moat enforces without it; unknown \
         devices and last-seen times then come from events only).",
        i64::from(d.inventory.is_ok()),
    )
}

/// What the learner put into the nft sets.
pub fn export_learned(s: &Scrape, d: &Daemon) -> prometheus::Result<()> {
    let l = &d.learner;
    s.counter(
        "moat_dns_learned_addresses_total",
        "Addresses added to allowlist sets from DNS answers to devices (each answer for an allowed domain counts).",
        l.dns_learned,
    )?;
    s.counter(
        "moat_dns_answers_unparsed_total",
        "DNS answers to devices that could not be parsed (nothing learned from them).",
        l.dns_unparsed,
    )?;
    s.counter(
        "moat_host_addresses_learned_total",
        "Device addresses added to hosts sets (for a policy's inbound openings).",
        l.hosts_learned,
    )?;
    s.counter(
        "moat_host_addresses_unverified_total",
        "Flow source addresses not added to hosts sets because the neighbour table did not (yet) tie them to \
         the device's MAC.",
        l.hosts_unverified,
    )?;
    s.counter(
        "moat_nft_learned_apply_errors_total",
        "nft transactions adding learned elements that nft rejected.",
        d.apply_errors,
    )?;
    let live = l.live();
    let sets = s.gauges(
        "moat_nft_learned_addresses",
        "Addresses moat added to learned nft sets whose timeout has not passed, by set kind (dns_allowlist, \
         hosts). Moat's own record, not read back from nft; one DNS address is one set element per allowed \
         protocol and port.",
        &["set"],
    )?;
    set_gauge(&sets, &["dns_allowlist"], int(live.dns))?;
    set_gauge(&sets, &["hosts"], int(live.hosts))
}

/// Build info, start time, and the log lines the per-packet budget held back.
pub fn export_process(s: &Scrape, d: &Daemon) -> prometheus::Result<()> {
    let info = s.gauges(
        "moat_build_info",
        "Always 1; the labels say which moat (version) runs on which kernel (release).",
        &["version", "kernel"],
    )?;
    set_gauge(&info, &[env!("CARGO_PKG_VERSION"), d.metrics.kernel_release()], 1)?;
    s.gauge(
        "moat_start_time_seconds",
        "Unix time moat started (counters kept by moat itself start again from 0 then; the kernel's do not).",
        d.metrics.started(),
    )?;
    s.counter(
        "moat_log_suppressed_lines_total",
        "Per-packet log lines (blocked flows, new devices) over the [log] packet_events_per_minute budget: \
         counted, not logged.",
        d.packet_log.suppressed_total,
    )
}
