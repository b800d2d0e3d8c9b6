//! Incremental transactions: changes that touch set and map elements only,
//! applied without replacing the tables (no rule is reloaded, no counter reset).

use std::{fmt::Write as _, net::IpAddr};

use super::{dest_set, device_mark, hosts_set, marks_set, policy_chain, services_chain, BRIDGE_TABLE, TABLE};
use crate::{
    model::{Allow, Lan},
    Config, Device,
};

/// The element changes that turn `old`'s device table into `new`'s, as one
/// transaction; `None` when anything but the devices changed (then the whole
/// ruleset must be replaced) or nothing changed at all.
pub fn device_changes(old: &Config, new: &Config) -> Option<String> {
    // Group membership follows device names: with groups, replace whole.
    let same_rest = old.gateway == new.gateway
        && old.policies == new.policies
        && old.defaults_blocked == new.defaults_blocked
        && old.mqtt == new.mqtt
        && old.groups.is_empty()
        && new.groups.is_empty();
    if !same_rest || old.devices == new.devices {
        return None;
    }
    let mut s = String::new();
    for d in &old.devices {
        if !new.devices.contains(d) {
            remove(&mut s, old, d);
        }
    }
    for d in &new.devices {
        if !old.devices.contains(d) {
            add(&mut s, new, d);
        }
    }
    Some(s)
}

fn maps_elements(d: &Device) -> [(String, String); 2] {
    let key = format!("{:#010x}", device_mark(d.id));
    [
        ("to_wan_policy".into(), format!("{key} : jump {}", policy_chain(&d.policy))),
        ("lan_in_policy".into(), format!("{key} : jump {}", services_chain(&d.policy))),
    ]
}

fn bridge_sets(cfg: &Config, d: &Device) -> Vec<String> {
    let mut sets = vec!["known".to_string()];
    match cfg.policy_of(d).lan {
        Lan::Isolated => sets.push("isolated".into()),
        Lan::Group => sets.push(format!("grp_{}", d.policy)),
        Lan::Open => {}
    }
    sets
}

/// The inet sets a device's MAC is in (MQTT-upgrade policies).
fn inet_mac_sets(cfg: &Config, d: &Device) -> Vec<String> {
    if cfg.policy_of(d).mqtt_upstream().is_some() {
        vec![super::macs_set(&d.policy)]
    } else {
        Vec::new()
    }
}

/// The inet sets a device's mark is in (rate-limited policies).
fn inet_sets(cfg: &Config, d: &Device) -> Vec<String> {
    if cfg.policy_of(d).rate_limit_kbps.is_some() {
        vec![marks_set(&d.policy)]
    } else {
        Vec::new()
    }
}

fn remove(s: &mut String, cfg: &Config, d: &Device) {
    for (map, _) in maps_elements(d) {
        let _ = writeln!(s, "delete element {TABLE} {map} {{ {:#010x} }}", device_mark(d.id));
    }
    for set in inet_sets(cfg, d) {
        let _ = writeln!(s, "delete element {TABLE} {set} {{ {:#010x} }}", device_mark(d.id));
    }
    for set in inet_mac_sets(cfg, d) {
        let _ = writeln!(s, "delete element {TABLE} {set} {{ {} }}", d.mac);
    }
    for set in bridge_sets(cfg, d) {
        let _ = writeln!(s, "delete element {BRIDGE_TABLE} {set} {{ {} }}", d.mac);
    }
}

fn add(s: &mut String, cfg: &Config, d: &Device) {
    for (map, element) in maps_elements(d) {
        let _ = writeln!(s, "add element {TABLE} {map} {{ {element} }}");
    }
    for set in inet_sets(cfg, d) {
        let _ = writeln!(s, "add element {TABLE} {set} {{ {:#010x} }}", device_mark(d.id));
    }
    for set in inet_mac_sets(cfg, d) {
        let _ = writeln!(s, "add element {TABLE} {set} {{ {} }}", d.mac);
    }
    for set in bridge_sets(cfg, d) {
        let _ = writeln!(s, "add element {BRIDGE_TABLE} {set} {{ {} }}", d.mac);
    }
}

/// Elements letting a policy's devices reach `addr`, learned from a DNS
/// answer for a name that `entries` allow, for `ttl` seconds.
pub fn dns_elements(policy: &str, addr: IpAddr, entries: &[&Allow], ttl: u32) -> Option<String> {
    let family = if addr.is_ipv4() { 4 } else { 6 };
    let keys: Vec<String> = entries
        .iter()
        .flat_map(|a| a.port_ranges().into_iter().map(move |p| format!("{addr} . {} . {p}", a.proto.name())))
        .collect();
    if keys.is_empty() {
        return None;
    }
    // `add` alone would keep an existing element's old expiry: add (so the
    // delete cannot fail), delete, add with the new timeout, in one transaction.
    let set = dest_set(policy, family);
    let plain = keys.join(", ");
    let timed: Vec<String> = keys.iter().map(|k| format!("{k} timeout {ttl}s")).collect();
    Some(format!(
        "add element {TABLE} {set} {{ {plain} }}\ndelete element {TABLE} {set} {{ {plain} }}\nadd element {TABLE} {set} {{ {} }}\n",
        timed.join(", ")
    ))
}

/// The element recording that a device of `policy` uses `addr` (inbound
/// openings apply to it), with its expiry restarted (add, delete, add: a
/// plain add would keep an existing element's old expiry).
pub fn host_elements(policy: &str, addr: IpAddr) -> String {
    let set = hosts_set(policy, if addr.is_ipv4() { 4 } else { 6 });
    format!("add element {TABLE} {set} {{ {addr} }}\ndelete element {TABLE} {set} {{ {addr} }}\nadd element {TABLE} {set} {{ {addr} }}\n")
}
