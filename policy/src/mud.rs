//! MUD import (RFC 8520): turns a Manufacturer Usage Description (the
//! ietf-mud and ietf-access-control-list JSON) into a moat policy, as TOML a
//! person can review and paste. What does not map onto moat's model is
//! reported, never silently dropped.

use std::fmt::Write as _;

use serde_json::Value;

use crate::{mac::MacAddr, net::Cidr};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MudError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("missing {0}: is this a MUD file?")]
    Missing(&'static str),
    #[error("access list {0:?} is named by the MUD policy but not defined in ietf-access-control-list:acls")]
    UndefinedAcl(String),
}

/// The translation: TOML text plus what could not be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub policy_name: String,
    /// The file's own `mud-url`, if it has one.
    pub mud_url: Option<String>,
    pub toml: String,
    /// Constructs that were not translated, with where they are.
    pub unsupported: Vec<String>,
}

/// What the ACEs said, collected.
#[derive(Debug, Default)]
struct Collected {
    allow: Vec<String>,
    inbound: Vec<String>,
    local_networks: bool,
    same_manufacturer: bool,
    unsupported: Vec<String>,
}

/// Translates MUD JSON for the device `mac`.
pub fn import(json: &str, mac: MacAddr, name: &str) -> Result<Imported, MudError> {
    let doc: Value = serde_json::from_str(json).map_err(|e| MudError::Json(e.to_string()))?;
    let mud = doc.get("ietf-mud:mud").ok_or(MudError::Missing("\"ietf-mud:mud\""))?;
    let acls = doc
        .get("ietf-access-control-list:acls")
        .and_then(|a| a.get("acl"))
        .and_then(Value::as_array)
        .ok_or(MudError::Missing("\"ietf-access-control-list:acls\".acl"))?;
    let mut c = Collected::default();
    for (dir, key) in [(Dir::From, "from-device-policy"), (Dir::To, "to-device-policy")] {
        for acl_name in acl_names(mud, key) {
            let acl = acls
                .iter()
                .find(|a| a.get("name").and_then(Value::as_str) == Some(acl_name.as_str()))
                .ok_or_else(|| MudError::UndefinedAcl(acl_name.clone()))?;
            aces(&mut c, dir, &acl_name, acl);
        }
    }
    let url = mud.get("mud-url").and_then(Value::as_str).unwrap_or("(no mud-url)");
    let info = mud.get("systeminfo").and_then(Value::as_str).unwrap_or("");
    let policy_name = policy_name(url);
    let toml = render(&policy_name, url, info, mac, name, &c);
    let mud_url = mud.get("mud-url").and_then(Value::as_str).map(str::to_string);
    Ok(Imported { policy_name, mud_url, toml, unsupported: c.unsupported })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    From,
    To,
}

fn acl_names(mud: &Value, key: &str) -> Vec<String> {
    mud.get(key)
        .and_then(|p| p.get("access-lists"))
        .and_then(|a| a.get("access-list"))
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(|a| a.get("name").and_then(Value::as_str).map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `mud_` + the last path segment of the MUD URL, as a policy name.
fn policy_name(url: &str) -> String {
    let last = url.rsplit('/').next().unwrap_or("device").trim_end_matches(".json");
    let clean: String =
        last.chars().map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' { ch } else { '_' }).take(26).collect();
    format!("mud_{}", if clean.is_empty() { "device".into() } else { clean })
}

fn aces(c: &mut Collected, dir: Dir, acl_name: &str, acl: &Value) {
    let list = acl.get("aces").and_then(|a| a.get("ace")).and_then(Value::as_array).cloned().unwrap_or_default();
    for ace in &list {
        let ace_name = ace.get("name").and_then(Value::as_str).unwrap_or("?");
        let at = format!("acl {acl_name} ace {ace_name}");
        let action = ace.get("actions").and_then(|a| a.get("forwarding")).and_then(Value::as_str).unwrap_or("?");
        if action != "accept" {
            c.unsupported
                .push(format!("{at}: forwarding \"{action}\" (moat denies what is not allowed; rule not needed)"));
            continue;
        }
        ace_matches(c, dir, &at, ace.get("matches").unwrap_or(&Value::Null));
    }
}

fn ace_matches(c: &mut Collected, dir: Dir, at: &str, m: &Value) {
    if let Some(mud) = m.get("ietf-mud:mud") {
        abstractions(c, at, mud);
        return;
    }
    let l3 = m.get("ipv4").or_else(|| m.get("ipv6"));
    let proto_num = l3.and_then(|l| l.get("protocol")).and_then(Value::as_u64);
    let (proto, l4) = match proto_num {
        Some(6) => ("tcp", m.get("tcp")),
        Some(17) => ("udp", m.get("udp")),
        Some(n) => {
            c.unsupported.push(format!("{at}: IP protocol {n} (moat allowlists cover tcp and udp)"));
            return;
        }
        None => {
            c.unsupported.push(format!("{at}: no IP protocol given"));
            return;
        }
    };
    let initiated = l4.and_then(|l| l.get("ietf-mud:direction-initiated")).and_then(Value::as_str);
    let (dns_key, net_key, port_key) = match dir {
        Dir::From => {
            ("ietf-acldns:dst-dnsname", ["destination-ipv4-network", "destination-ipv6-network"], "destination-port")
        }
        Dir::To => ("ietf-acldns:src-dnsname", ["source-ipv4-network", "source-ipv6-network"], "source-port"),
    };
    // A to-device rule that is not for connections initiated from outside is
    // the reply half of a from-device rule: conntrack already lets replies in.
    if dir == Dir::To && initiated != Some("to-device") {
        c.unsupported.push(format!("{at}: reply traffic, covered by connection tracking (no rule needed)"));
        return;
    }
    // Likewise a from-device rule for connections started from outside.
    if dir == Dir::From && initiated == Some("to-device") {
        c.unsupported.push(format!("{at}: replies to inbound connections, covered by connection tracking"));
        return;
    }
    // A from-device rule that restricts only the source port would become
    // "all destination ports": refuse rather than widen it.
    let only_source_port = l4.is_some_and(|l| l.get("source-port").is_some() && l.get("destination-port").is_none());
    if dir == Dir::From && only_source_port {
        c.unsupported.push(format!("{at}: a source-port-only match (moat allowlists match destination ports)"));
        return;
    }
    let port = l4.and_then(|l| l.get(port_key)).map(|p| port_text(c, at, p)).unwrap_or(Some(String::new()));
    let Some(port) = port else { return };
    if dir == Dir::To {
        inbound(c, at, proto, l4);
        return;
    }
    let target = l3.and_then(|l| {
        l.get(dns_key).and_then(Value::as_str).and_then(|d| domain_text(c, at, d)).or_else(|| {
            net_key.iter().find_map(|k| l.get(*k).and_then(Value::as_str)).and_then(|n| cidr_text(c, at, n))
        })
    });
    match target {
        Some(t) if t.starts_with("domain") && port.contains('-') => {
            c.unsupported.push(format!("{at}: a port range to a domain (moat takes single ports for domains)"));
        }
        Some(t) => c.allow.push(format!("  {{ {t}, proto = \"{proto}\"{port} }},")),
        None => c.unsupported.push(format!("{at}: from-device rule without a destination name or network")),
    }
}

/// A TOML string literal (escaped): MUD text never becomes TOML syntax.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Comment text: one line, no control characters.
fn comment(s: &str) -> String {
    s.chars().map(|ch| if ch.is_control() { ' ' } else { ch }).collect()
}

fn domain_text(c: &mut Collected, at: &str, d: &str) -> Option<String> {
    match d.parse::<crate::net::DomainPattern>() {
        Ok(p) => Some(format!("domain = {}", quoted(&p.to_string()))),
        Err(e) => {
            c.unsupported.push(format!("{at}: domain {d:?}: {e}"));
            None
        }
    }
}

fn cidr_text(c: &mut Collected, at: &str, n: &str) -> Option<String> {
    match n.parse::<Cidr>() {
        Ok(cidr) => Some(format!("cidr = \"{cidr}\"")),
        Err(e) => {
            c.unsupported.push(format!("{at}: network {n:?}: {e}"));
            None
        }
    }
}

/// `, ports = [N]` or `, ports = ["A-B"]`; None (reported) if not expressible.
fn port_text(c: &mut Collected, at: &str, p: &Value) -> Option<String> {
    match p.get("operator").and_then(Value::as_str).unwrap_or("eq") {
        "eq" => match p.get("port").and_then(Value::as_u64) {
            Some(n) => Some(format!(", ports = [{n}]")),
            None => {
                c.unsupported.push(format!("{at}: port match without a port"));
                None
            }
        },
        "range" => {
            let (lo, hi) = (p.get("lower-port").and_then(Value::as_u64), p.get("upper-port").and_then(Value::as_u64));
            match (lo, hi) {
                (Some(lo), Some(hi)) => Some(format!(", ports = [\"{lo}-{hi}\"]")),
                _ => {
                    c.unsupported.push(format!("{at}: port range without bounds"));
                    None
                }
            }
        }
        op => {
            c.unsupported.push(format!("{at}: port operator \"{op}\""));
            None
        }
    }
}

fn inbound(c: &mut Collected, at: &str, proto: &str, l4: Option<&Value>) {
    let dport = l4.and_then(|l| l.get("destination-port"));
    let op = dport.and_then(|p| p.get("operator")).and_then(Value::as_str).unwrap_or("eq");
    if op != "eq" {
        c.unsupported.push(format!("{at}: inbound port operator \"{op}\" (moat opens single ports)"));
        return;
    }
    let port = dport.and_then(|p| p.get("port")).and_then(Value::as_u64).filter(|p| (1..=65535).contains(p));
    match port {
        Some(n) => {
            c.inbound.push(format!("  {{ proto = \"{proto}\", port = {n} }},"));
            c.unsupported.push(format!(
                "{at}: inbound {proto}/{n} opened from anywhere (moat openings carry no source restriction)"
            ));
        }
        None => c.unsupported.push(format!("{at}: inbound rule without a destination port")),
    }
}

fn abstractions(c: &mut Collected, at: &str, mud: &Value) {
    let Some(obj) = mud.as_object() else { return };
    for key in obj.keys() {
        match key.as_str() {
            "local-networks" => c.local_networks = true,
            "same-manufacturer" | "manufacturer" => {
                c.same_manufacturer = true;
                c.unsupported
                    .push(format!("{at}: \"{key}\" approximated as lan = \"group\" (devices with this policy)"));
            }
            other => c.unsupported.push(format!("{at}: \"{other}\" (no controller support in moat yet)")),
        }
    }
}

fn render(policy: &str, url: &str, info: &str, mac: MacAddr, name: &str, c: &Collected) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Imported from MUD {}", comment(url));
    if !info.is_empty() {
        let _ = writeln!(s, "# {}", comment(info));
    }
    for u in &c.unsupported {
        let _ = writeln!(s, "# not translated: {}", comment(u));
    }
    let _ = writeln!(s, "[policies.{policy}]");
    if c.allow.is_empty() {
        let _ = writeln!(s, "internet = \"none\"");
    } else {
        let _ = writeln!(s, "internet = \"allowlist\"\nallow = [\n{}\n]", c.allow.join("\n"));
    }
    let lan = if c.local_networks {
        "open"
    } else if c.same_manufacturer {
        "group"
    } else {
        "isolated"
    };
    let _ = writeln!(s, "lan = \"{lan}\"");
    if !c.inbound.is_empty() {
        let _ = writeln!(s, "inbound = [\n{}\n]", c.inbound.join("\n"));
    }
    let _ = writeln!(s, "\n[[devices]]\nmac = \"{mac}\"\nname = {}\npolicy = \"{policy}\"", quoted(name));
    s
}
