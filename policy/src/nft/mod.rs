//! Compiles a config to the nftables rulesets moat owns: `table inet moat`
//! (forwarding LAN↔WAN, gateway services) and `table bridge moat` (LAN
//! isolation between bridge ports).
//!
//! The text form is what `nft -f` applies in one atomic transaction and what a
//! person reviews (`moat plan`). Each table is replaced whole: a leading
//! `table X` + `delete table X` pair makes the apply a replace whether or not
//! the table exists. Established connections survive a replace (conntrack is
//! untouched), so re-applying never cuts allowed flows.

mod bridge;
mod elements;
mod inet;

use std::fmt::Write as _;

pub use elements::{device_changes, dns_elements, host_elements};

use crate::{Config, Device};

/// Family and name of moat's tables.
pub const TABLE: &str = "inet moat";
pub const BRIDGE_TABLE: &str = "bridge moat";

/// The mask that keeps the device id of a moat packet mark (see
/// moat_common::mark): the moat bit and the id, not the class.
pub const DEVICE_MARK_MASK: u32 = 0xffff_ff00;

/// The masked mark nftables sees for a device id.
pub fn device_mark(id: u32) -> u32 {
    moat_common::mark::encode(id, 0) & DEVICE_MARK_MASK
}

/// Chain holding a policy's internet rules.
pub fn policy_chain(policy: &str) -> String {
    format!("pol_{policy}")
}

/// Chain holding a policy's gateway-service rules.
pub fn services_chain(policy: &str) -> String {
    format!("svc_{policy}")
}

/// A policy's destination set for one family (`4` or `6`).
pub fn dest_set(policy: &str, family: u8) -> String {
    format!("pol_{policy}_v{family}")
}

/// The device marks of a rate-limited policy.
pub fn marks_set(policy: &str) -> String {
    format!("pol_{policy}_ids")
}

/// The device MACs of a policy whose plaintext MQTT is upgraded. By MAC, not
/// mark: with br_netfilter the nat prerouting hook runs in the bridge, before
/// the classifier on the bridge device has marked the packet.
pub fn macs_set(policy: &str) -> String {
    format!("pol_{policy}_macs")
}

/// A policy's set of device addresses (for inbound openings).
pub fn hosts_set(policy: &str, family: u8) -> String {
    format!("pol_{policy}_hosts{family}")
}

/// The complete ruleset: both tables, one transaction.
pub fn ruleset(cfg: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# moat ruleset: generated from the config; do not edit");
    inet::table(&mut s, cfg);
    bridge::table(&mut s, cfg);
    s
}

/// The transaction that removes moat's tables.
pub fn teardown() -> String {
    format!("table {TABLE}\ndelete table {TABLE}\ntable {BRIDGE_TABLE}\ndelete table {BRIDGE_TABLE}\n")
}

/// Devices with a given policy.
fn devices_with<'a>(cfg: &'a Config, policy: &'a str) -> impl Iterator<Item = &'a Device> + 'a {
    cfg.devices.iter().filter(move |d| d.policy == policy)
}

/// nft string literal. Interface names are validated (no quotes, spaces or
/// control characters), so quoting is enough.
fn quote(s: &str) -> String {
    format!("\"{s}\"")
}

/// An `elements = { a, b }` line (with its leading newline and indent), or
/// nothing for an empty list.
fn elements(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("\n\t\telements = {{ {} }}", items.join(", "))
    }
}
