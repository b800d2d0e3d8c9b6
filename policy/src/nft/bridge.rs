//! `table bridge moat`: LAN isolation. Traffic between two LAN devices is
//! bridged, so it never reaches the inet forward hook or the classifier on the
//! bridge device; the bridge family's forward hook sees every frame between
//! ports. Frames to or from the gateway itself are not bridge-forwarded and are
//! not affected here. Device groups (`[groups.NAME]`) come first: their
//! members reach each other whatever their policies' `lan` modes.

use std::fmt::Write as _;

use super::{devices_with, elements, BRIDGE_TABLE};
use crate::{model::Lan, Config};

/// Unicast destinations only: broadcast/multicast frames (ARP requests, mDNS)
/// carry the group bit.
const UNICAST: &str = "ether daddr & 01:00:00:00:00:00 == 00:00:00:00:00:00";

pub(super) fn table(s: &mut String, cfg: &Config) {
    let _ = writeln!(s, "table {BRIDGE_TABLE}\ndelete table {BRIDGE_TABLE}\ntable {BRIDGE_TABLE} {{");
    let all: Vec<String> = cfg.devices.iter().map(|d| d.mac.to_string()).collect();
    let isolated: Vec<String> =
        cfg.devices.iter().filter(|d| cfg.policy_of(d).lan == Lan::Isolated).map(|d| d.mac.to_string()).collect();
    set(s, "known", &all);
    set(s, "isolated", &isolated);
    let groups: Vec<&String> = cfg.policies.iter().filter(|(_, p)| p.lan == Lan::Group).map(|(n, _)| n).collect();
    for name in &groups {
        let members: Vec<String> = devices_with(cfg, name).map(|d| d.mac.to_string()).collect();
        set(s, &format!("grp_{name}"), &members);
    }
    for name in cfg.groups.keys() {
        let members: Vec<String> = cfg.group_members(name).iter().map(|d| d.mac.to_string()).collect();
        set(s, &format!("members_{name}"), &members);
    }
    let _ = writeln!(s, "\tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;");
    // Device groups first: members talk to each other whatever their policies.
    for name in cfg.groups.keys() {
        let m = format!("@members_{name}");
        let _ = writeln!(s, "\t\tether saddr {m} ether daddr {m} accept comment \"group {name}\"");
    }
    let _ = writeln!(s, "\t\tether saddr @isolated counter drop comment \"lan: isolated\"");
    let _ = writeln!(s, "\t\tether daddr @isolated counter drop comment \"lan: isolated\"");
    // Unknown devices follow the unknown-device policy ("group" counts as
    // isolated: unknown devices have nothing in common).
    if cfg.unknown_policy().lan != Lan::Open {
        let _ = writeln!(s, "\t\tether saddr != @known counter drop comment \"lan: unknown device\"");
        let _ = writeln!(s, "\t\t{UNICAST} ether daddr != @known counter drop comment \"lan: unknown device\"");
    }
    for name in groups {
        let g = format!("@grp_{name}");
        let _ =
            writeln!(s, "\t\tether saddr {g} {UNICAST} ether daddr != {g} counter drop comment \"lan: group {name}\"");
        let _ = writeln!(s, "\t\tether daddr {g} ether saddr != {g} counter drop comment \"lan: group {name}\"");
    }
    let _ = writeln!(s, "\t}}\n}}");
}

fn set(s: &mut String, name: &str, macs: &[String]) {
    let _ = writeln!(s, "\tset {name} {{\n\t\ttype ether_addr{}\n\t}}", elements(macs));
}
