//! The classifier's own state: drops by reason, health counters, events by
//! kind, and how full its maps are (a full flow table means flows evicted
//! and re-classified; a full device map means devices treated as unknown).

use moat_common::{class, event, maps::BLOCKED_FLOWS_SIZE, reason};

use super::scrape::{int, set_counter, set_gauge, Scrape};
use crate::{events::Events, kernel::Kernel};

/// Drop reasons and health counters (read from the kernel now).
pub fn export_counters(s: &Scrape, kernel: &Kernel) -> Result<(), super::Error> {
    let drops = s.counters(
        "moat_classifier_dropped_packets_total",
        "Packets the classifier dropped, over all devices, by reason (blocked_class: the policy blocks the \
         class; quarantine; malformed: a header the decision needs was cut short or invalid).",
        &["reason"],
    )?;
    for (why, n) in reason::NAMES.iter().zip(kernel.drop_reasons()?) {
        set_counter(&drops, &[why], n)?;
    }
    let health = s.counters(
        "moat_classifier_health_events_total",
        "Classifier health counters: truncated and bad_header (parse failures), ext_header_limit (IPv6 \
         extension chain too long), flow_insert_failed, ringbuf_full (events lost), tail_call_failed, \
         tcp_fragment (dropped TCP fragments).",
        &["counter"],
    )?;
    for (name, n) in reason::HEALTH_NAMES.iter().zip(kernel.health()?) {
        set_counter(&health, &[name], n)?;
    }
    Ok(())
}

/// Events received from the classifier's ring buffer, by kind.
pub fn export_events(s: &Scrape, events: &Events) -> prometheus::Result<()> {
    let by_kind = s.counters(
        "moat_classifier_events_total",
        "Events received from the classifier since moat started, by kind (new_device, new_flow, blocked, \
         dns_response, dhcp_request).",
        &["kind"],
    )?;
    // Index 0 is "invalid": never counted (undecodable records are, below).
    for (kind, n) in event::KIND_NAMES.iter().zip(events.counts).skip(1) {
        set_counter(&by_kind, &[kind], n)?;
    }
    s.counter(
        "moat_classifier_events_undecodable_total",
        "Ring buffer records moat could not decode (too short or of an unknown kind).",
        events.undecodable,
    )
}

/// Entries and capacity of the maps that can fill up.
pub fn export_maps(s: &Scrape, kernel: &Kernel, cfg: &moat_policy::Config) -> Result<(), super::Error> {
    let flows = kernel.flows();
    let by_class = s.gauges(
        "moat_classifier_active_flows",
        "Flows in the classifier's flow table now, by traffic class.",
        &["class"],
    )?;
    let mut counts = [0i64; class::COUNT];
    for (_, v) in &flows {
        if let Some(n) = counts.get_mut(usize::from(v.class)) {
            *n += 1;
        }
    }
    for (c, n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
        set_gauge(&by_class, &[class::name(c as u8)], *n)?;
    }
    let maps = [
        ("flows", flows.len(), cfg.classifier.flow_table_size),
        ("devices", cfg.devices.len(), cfg.classifier.max_devices),
        ("blocked_flows", kernel.blocked_flows()?.len(), BLOCKED_FLOWS_SIZE),
    ];
    let entries = s.gauges(
        "moat_ebpf_map_entries",
        "Entries in a classifier map now (flows: the LRU flow table; devices: configured devices; \
         blocked_flows: flows remembered as blocked).",
        &["map"],
    )?;
    let capacity = s.gauges("moat_ebpf_map_capacity", "Entries a classifier map can hold (its size).", &["map"])?;
    let fill = s.ratios(
        "moat_ebpf_map_fill_ratio",
        "moat_ebpf_map_entries / moat_ebpf_map_capacity: 1 means full (flows: the oldest are evicted and \
         re-classified; devices: no room for more).",
        &["map"],
    )?;
    for (map, n, cap) in maps {
        set_gauge(&entries, &[map], int(n))?;
        set_gauge(&capacity, &[map], i64::from(cap))?;
        let ratio = if cap == 0 { 0.0 } else { n as f64 / f64::from(cap) };
        fill.get_metric_with_label_values(&[map])?.set(ratio);
    }
    Ok(())
}
