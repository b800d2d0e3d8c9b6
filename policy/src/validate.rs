//! Typed validation of a parsed config: every problem found is reported with
//! its location and a hint, not just the first.

use std::collections::{BTreeMap, HashMap};

use moat_common::class;
use toml::Spanned;

use crate::{
    config::{
        Classifier, Config, Device, Gateway, OnFailure, DEFAULT_BLOCKED, DEFAULT_DNS_TTL_FLOOR, DEFAULT_PIN_DIR,
        DEFAULT_RUN_DIR, DEFAULT_STATE_DIR, QUARANTINE,
    },
    diag::Source,
    mac::MacAddr,
    model::Policy,
    raw::{RawClassifier, RawConfig, RawDefaults, RawDevice, RawGateway},
    Diagnostic, Diagnostics,
};

/// Linux IFNAMSIZ - 1.
const MAX_IFNAME: usize = 15;
const MAX_NAME: usize = 64;

pub(crate) struct Checker<'a> {
    pub src: &'a Source<'a>,
    pub errors: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub fn err<T>(&mut self, at: &Spanned<T>, message: impl Into<String>, hint: Option<String>) {
        self.errors.push(self.src.at(at.span(), message, hint));
    }
}

pub(crate) fn validate(src: &Source<'_>, raw: RawConfig) -> Result<Config, Diagnostics> {
    let mut c = Checker { src, errors: Vec::new() };
    let defaults_blocked = defaults(&mut c, raw.defaults.as_ref());
    let policies = crate::validate_policy::policies(&mut c, &raw.policies, defaults_blocked);
    let gateway = gateway(&mut c, &raw.gateway, &policies);
    let classifier = classifier(&mut c, raw.classifier.as_ref());
    let devices = devices(&mut c, &raw.devices, &policies, classifier.max_devices);
    let groups = groups(&mut c, &raw.groups, &devices);
    let mqtt = raw.mqtt.as_ref().map(|m| crate::validate_mqtt::settings(&mut c, m));
    crate::validate_mqtt::references(&mut c, &raw.policies, mqtt.as_ref(), raw.mqtt.is_some());
    let api = crate::validate_service::api(&mut c, raw.api.as_ref(), &gateway.run_dir);
    let metrics = crate::validate_service::metrics(&mut c, raw.metrics.as_ref());
    let log = crate::validate_service::log(&mut c, raw.log.as_ref());
    if c.errors.is_empty() {
        Ok(Config { gateway, classifier, defaults_blocked, policies, devices, groups, mqtt, api, metrics, log })
    } else {
        c.errors.sort_by_key(|d| (d.line, d.col));
        Err(Diagnostics(c.errors))
    }
}

fn ifname(c: &mut Checker<'_>, key: &str, v: &Spanned<String>) {
    let name = v.get_ref();
    let ok_char = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | '@');
    if name.is_empty() || name.len() > MAX_IFNAME || !name.chars().all(ok_char) || name == "." || name == ".." {
        c.err(
            v,
            format!("`{key}` = {name:?} is not a valid interface name"),
            Some(format!("1 to {MAX_IFNAME} characters of A-Z a-z 0-9 - _ . @ (e.g. \"br-lan\")")),
        );
    }
}

fn gateway(c: &mut Checker<'_>, g: &Spanned<RawGateway>, policies: &BTreeMap<String, Policy>) -> Gateway {
    let raw = g.get_ref();
    ifname(c, "lan", &raw.lan);
    ifname(c, "wan", &raw.wan);
    if raw.lan.get_ref() == raw.wan.get_ref() {
        c.err(
            &raw.wan,
            "`wan` is the same interface as `lan`",
            Some("moat needs the LAN side (devices) and the WAN side (internet) apart".into()),
        );
    }
    for p in [&raw.unknown_policy, &raw.approved_policy].into_iter().flatten() {
        check_policy_ref(c, p, policies);
    }
    Gateway {
        lan: raw.lan.get_ref().clone(),
        wan: raw.wan.get_ref().clone(),
        run_dir: raw.run_dir.clone().unwrap_or_else(|| DEFAULT_RUN_DIR.into()),
        unknown_policy: raw.unknown_policy.as_ref().map_or_else(|| QUARANTINE.to_string(), |p| p.get_ref().clone()),
        approved_policy: raw.approved_policy.as_ref().map(|p| p.get_ref().clone()),
        dns_ttl_floor: bounded(c, raw.dns_ttl_floor.as_ref(), "dns_ttl_floor", (0, 86_400), DEFAULT_DNS_TTL_FLOOR),
        mud_dir: raw.mud_dir.as_ref().map(|v| abs_dir(c, Some(v), "mud_dir", "/etc/moat/mud")),
        state_dir: abs_dir(c, raw.state_dir.as_ref(), "state_dir", DEFAULT_STATE_DIR),
        pin_dir: abs_dir(c, raw.pin_dir.as_ref(), "pin_dir", DEFAULT_PIN_DIR),
        on_failure: on_failure(c, raw.on_failure.as_ref()),
    }
}

fn abs_dir(c: &mut Checker<'_>, v: Option<&Spanned<String>>, key: &str, default: &str) -> String {
    let Some(v) = v else { return default.to_string() };
    if !v.get_ref().starts_with('/') || v.get_ref().contains("..") {
        c.err(
            v,
            format!("`{key}` = {:?} must be an absolute path without \"..\"", v.get_ref()),
            Some(format!("e.g. {default:?}")),
        );
    }
    v.get_ref().trim_end_matches('/').to_string()
}

fn on_failure(c: &mut Checker<'_>, v: Option<&Spanned<String>>) -> OnFailure {
    match v.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "closed")) => OnFailure::Closed,
        Some((_, "open")) => OnFailure::Open,
        Some((v, other)) => {
            c.err(v, format!("unknown on_failure {other:?}"), Some("\"closed\" (keep enforcing) or \"open\"".into()));
            OnFailure::Closed
        }
    }
}

/// `[defaults] block`: classes blocked for everyone (telnet, ftp, tftp if absent).
fn defaults(c: &mut Checker<'_>, raw: Option<&Spanned<RawDefaults>>) -> u32 {
    match raw.and_then(|d| d.get_ref().block.as_ref()) {
        Some(list) => crate::validate_policy::classes(c, list, "block"),
        None => DEFAULT_BLOCKED.iter().fold(0, |m, cl| m | class::bit(*cl)),
    }
}

pub(crate) fn check_name(c: &mut Checker<'_>, name: &Spanned<String>, what: &str) {
    let n = name.get_ref();
    if n.is_empty() || n.len() > MAX_NAME || n.chars().any(char::is_control) {
        c.err(name, format!("{what} name {n:?} must be 1 to {MAX_NAME} printable characters"), None);
    }
}

fn check_policy_ref(c: &mut Checker<'_>, p: &Spanned<String>, policies: &BTreeMap<String, Policy>) {
    if !policies.contains_key(p.get_ref()) {
        let known: Vec<&str> = policies.keys().map(String::as_str).collect();
        let hint = if known.is_empty() {
            "no policies are defined; add a [policies.NAME] table".to_string()
        } else {
            format!("defined policies: {}", known.join(", "))
        };
        c.err(p, format!("undefined policy {:?}", p.get_ref()), Some(hint));
    }
}

/// Device slots: at least 2 (unknown + one), at most what the packet mark can carry.
const DEVICES_RANGE: (i64, i64) = (2, 1 << 20);
/// Flow table: small routers to big hubs.
const FLOWS_RANGE: (i64, i64) = (256, 1 << 22);

pub(crate) fn bounded(
    c: &mut Checker<'_>,
    v: Option<&Spanned<i64>>,
    key: &str,
    (lo, hi): (i64, i64),
    default: u32,
) -> u32 {
    let Some(v) = v else { return default };
    let n = *v.get_ref();
    if n < lo || n > hi {
        c.err(v, format!("`{key}` = {n} is out of range"), Some(format!("between {lo} and {hi}")));
        return default;
    }
    u32::try_from(n).unwrap_or(default)
}

fn classifier(c: &mut Checker<'_>, raw: Option<&Spanned<RawClassifier>>) -> Classifier {
    let d = Classifier::default();
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return d;
    };
    Classifier {
        max_devices: bounded(c, raw.max_devices.as_ref(), "max_devices", DEVICES_RANGE, d.max_devices),
        flow_table_size: bounded(c, raw.flow_table_size.as_ref(), "flow_table_size", FLOWS_RANGE, d.flow_table_size),
    }
}

fn devices(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawDevice>],
    policies: &BTreeMap<String, Policy>,
    max_devices: u32,
) -> Vec<Device> {
    let max = (max_devices - 1) as usize;
    if raw.len() > max {
        if let Some(first_extra) = raw.get(max) {
            c.err(
                first_extra,
                format!("too many devices: {} (at most {max})", raw.len()),
                Some("raise [classifier] max_devices".into()),
            );
        }
    }
    let mut seen_mac: HashMap<MacAddr, usize> = HashMap::new();
    let mut seen_name: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, d) in raw.iter().enumerate() {
        let d = d.get_ref();
        check_name(c, &d.name, "device");
        check_policy_ref(c, &d.policy, policies);
        if let Some(first) = seen_name.insert(d.name.get_ref(), d.name.span().start) {
            let (line, _) = c.src.line_col(first);
            c.err(
                &d.name,
                format!("duplicate device name {:?}", d.name.get_ref()),
                Some(format!("first used on line {line}; names must be unique")),
            );
        }
        let mac = match d.mac.get_ref().parse::<MacAddr>() {
            Ok(mac) => mac,
            Err(e) => {
                c.err(
                    &d.mac,
                    format!("bad MAC address {:?}: {e}", d.mac.get_ref()),
                    Some("write it like \"02:77:00:00:00:01\"".into()),
                );
                continue;
            }
        };
        if let Some(first) = seen_mac.insert(mac, d.mac.span().start) {
            let (line, _) = c.src.line_col(first);
            c.err(
                &d.mac,
                format!("duplicate MAC {mac}"),
                Some(format!("first used on line {line}; a MAC identifies one device")),
            );
        }
        let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let tags = d.tags.iter().map(|t| tag(c, t)).collect();
        out.push(Device { mac, name: d.name.get_ref().clone(), policy: d.policy.get_ref().clone(), id, tags });
    }
    out
}

fn tag(c: &mut Checker<'_>, t: &Spanned<String>) -> String {
    let v = t.get_ref();
    let ok = !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        c.err(t, format!("bad tag {v:?}"), Some("1 to 32 letters, digits, '-' or '_'".into()));
    }
    v.clone()
}

/// `[groups.NAME] members = [device names]`.
fn groups(
    c: &mut Checker<'_>,
    raw: &BTreeMap<Spanned<String>, Spanned<crate::raw::RawGroup>>,
    devices: &[Device],
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (name, g) in raw {
        let n = name.get_ref();
        let ok = n.chars().next().is_some_and(|ch| ch.is_ascii_alphabetic())
            && n.len() <= 32
            && n.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !ok {
            c.err(
                name,
                format!("group name {n:?} is not allowed"),
                Some("a letter, then up to 31 letters, digits, '-' or '_'".into()),
            );
        }
        let mut members: Vec<String> = Vec::new();
        for m in &g.get_ref().members {
            if !devices.iter().any(|d| &d.name == m.get_ref()) {
                c.err(
                    m,
                    format!("group {n:?}: no device named {:?}", m.get_ref()),
                    Some("members are device names from [[devices]]".into()),
                );
            } else if members.contains(m.get_ref()) {
                c.err(m, format!("group {n:?}: {:?} is listed twice", m.get_ref()), None);
            } else {
                members.push(m.get_ref().clone());
            }
        }
        out.insert(n.clone(), members);
    }
    out
}
