//! Validation of `[policies.NAME]` tables.

use std::collections::{BTreeMap, BTreeSet};

use moat_common::class;
use toml::Spanned;

use crate::{
    config::QUARANTINE,
    model::{Allow, Inbound, Internet, Lan, Policy, Proto, Service, Target},
    net::{Cidr, DomainPattern, Ports},
    raw::{RawAllow, RawInbound, RawPolicy},
    validate::{bounded, Checker},
};

/// Limits that keep a ruleset reviewable and a transaction small.
pub const MAX_ALLOW: usize = 256;
pub const MAX_PORTS: usize = 32;
pub const MAX_INBOUND: usize = 64;
const RATE_RANGE: (i64, i64) = (8, 10_000_000);

/// Every policy, plus the built-in `quarantine` unless the config defines one.
pub(crate) fn policies(
    c: &mut Checker<'_>,
    raw: &BTreeMap<Spanned<String>, Spanned<RawPolicy>>,
    defaults_blocked: u32,
) -> BTreeMap<String, Policy> {
    let mut out = BTreeMap::new();
    for (name, p) in raw {
        policy_name(c, name);
        let mut policy = policy(c, p);
        policy.blocked_classes |= defaults_blocked;
        out.insert(name.get_ref().clone(), policy);
    }
    out.entry(QUARANTINE.to_string()).or_insert_with(|| {
        let mut q = Policy::quarantine();
        q.blocked_classes |= defaults_blocked;
        q
    });
    out
}

/// Policy names become nftables identifiers (`pol_NAME`): a letter, then up
/// to 31 letters, digits, '-' or '_'.
fn policy_name(c: &mut Checker<'_>, name: &Spanned<String>) {
    let n = name.get_ref();
    let first_ok = n.chars().next().is_some_and(|ch| ch.is_ascii_alphabetic());
    let rest_ok = n.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
    if !first_ok || !rest_ok || n.len() > 32 {
        c.err(
            name,
            format!("policy name {n:?} is not allowed"),
            Some("a letter, then up to 31 letters, digits, '-' or '_'".into()),
        );
    }
}

/// A `block` list as a class bitmask.
pub(crate) fn classes(c: &mut Checker<'_>, list: &[Spanned<String>], key: &str) -> u32 {
    let mut blocked = 0u32;
    for entry in list {
        match class::from_name(entry.get_ref()) {
            Some(cl) if cl != class::OTHER => blocked |= class::bit(cl),
            _ => c.err(
                entry,
                format!("unknown traffic class {:?} in `{key}`", entry.get_ref()),
                Some(format!("blockable classes: {}", blockable_classes())),
            ),
        }
    }
    blocked
}

fn blockable_classes() -> String {
    class::NAMES.iter().filter(|n| **n != "other").copied().collect::<Vec<_>>().join(", ")
}

fn policy(c: &mut Checker<'_>, sp: &Spanned<RawPolicy>) -> Policy {
    let p = sp.get_ref();
    let internet = p.internet.as_ref().map_or(Internet::Open, |v| internet(c, v));
    let allow: Vec<Allow> = p.allow.iter().filter_map(|a| allow(c, a)).collect();
    if p.allow.len() > MAX_ALLOW {
        c.err(sp, format!("{} allow entries (at most {MAX_ALLOW})", p.allow.len()), None);
    }
    match (internet, p.allow.first()) {
        (Internet::Allowlist, None) => {
            let at = p.internet.as_ref().map_or(sp.span(), Spanned::span);
            c.errors.push(c.src.at(
                at,
                "internet = \"allowlist\" with no `allow` entries blocks all internet access",
                Some("say internet = \"none\" if that is the intent, or add allow entries".into()),
            ));
        }
        (Internet::Open | Internet::None, Some(first)) => c.err(
            first,
            "`allow` entries only apply with internet = \"allowlist\"",
            Some("set internet = \"allowlist\" in this policy, or remove the entries".into()),
        ),
        _ => {}
    }
    Policy {
        blocked_classes: classes(c, &p.block, "block"),
        quarantine: p.quarantine,
        internet,
        allow,
        lan: p.lan.as_ref().map_or(Lan::Open, |v| lan(c, v)),
        services: p.services.as_ref().map_or_else(crate::model::default_services, |v| services(c, v)),
        inbound: inbound(c, &p.inbound),
        rate_limit_kbps: p.rate_limit_kbps.as_ref().map(|v| bounded(c, Some(v), "rate_limit_kbps", RATE_RANGE, 0)),
        mqtt: p.mqtt.as_ref().map(|m| crate::validate_mqtt::policy_mqtt(c, m)),
    }
}

fn internet(c: &mut Checker<'_>, v: &Spanned<String>) -> Internet {
    match v.get_ref().as_str() {
        "open" => Internet::Open,
        "allowlist" => Internet::Allowlist,
        "none" => Internet::None,
        other => {
            c.err(
                v,
                format!("unknown internet mode {other:?}"),
                Some("one of \"open\", \"allowlist\", \"none\"".into()),
            );
            Internet::None
        }
    }
}

fn lan(c: &mut Checker<'_>, v: &Spanned<String>) -> Lan {
    match v.get_ref().as_str() {
        "open" => Lan::Open,
        "group" => Lan::Group,
        "isolated" => Lan::Isolated,
        other => {
            c.err(v, format!("unknown lan mode {other:?}"), Some("one of \"open\", \"group\", \"isolated\"".into()));
            Lan::Isolated
        }
    }
}

fn services(c: &mut Checker<'_>, list: &[Spanned<String>]) -> BTreeSet<Service> {
    let mut out = BTreeSet::new();
    for v in list {
        match Service::NAMES.iter().find(|(n, _)| *n == v.get_ref()) {
            Some((_, s)) => {
                out.insert(*s);
            }
            None => {
                let names: Vec<&str> = Service::NAMES.iter().map(|(n, _)| *n).collect();
                c.err(
                    v,
                    format!("unknown gateway service {:?}", v.get_ref()),
                    Some(format!("one of {}", names.join(", "))),
                );
            }
        }
    }
    out
}

fn proto(c: &mut Checker<'_>, v: Option<&Spanned<String>>) -> Proto {
    let Some(v) = v else { return Proto::Tcp };
    match v.get_ref().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => {
            c.err(v, format!("unknown protocol {other:?}"), Some("\"tcp\" or \"udp\"".into()));
            Proto::Tcp
        }
    }
}

fn allow(c: &mut Checker<'_>, sa: &Spanned<RawAllow>) -> Option<Allow> {
    let a = sa.get_ref();
    let target = match (&a.domain, &a.cidr) {
        (Some(d), None) => match d.get_ref().parse::<DomainPattern>() {
            Ok(p) => Target::Domain(p),
            Err(why) => {
                c.err(
                    d,
                    format!("bad domain {:?}: {why}", d.get_ref()),
                    Some("e.g. \"api.vendor.example\" or \"*.vendor.example\"".into()),
                );
                return None;
            }
        },
        (None, Some(n)) => match n.get_ref().parse::<Cidr>() {
            Ok(cidr) => Target::Cidr(cidr),
            Err(why) => {
                c.err(n, format!("bad cidr {:?}: {why}", n.get_ref()), None);
                return None;
            }
        },
        (Some(_), Some(n)) => {
            c.err(
                n,
                "an allow entry has either `domain` or `cidr`, not both",
                Some("split it into two entries".into()),
            );
            return None;
        }
        (None, None) => {
            c.err(sa, "an allow entry needs `domain` or `cidr`", None);
            return None;
        }
    };
    let ports = ports(c, a.ports.as_deref().unwrap_or(&[]), matches!(target, Target::Domain(_)));
    Some(Allow { target, proto: proto(c, a.proto.as_ref()), ports })
}

/// Port numbers or "low-high" ranges; domain entries take single ports only
/// (their addresses live in timeout sets, which hold no ranges).
fn ports(c: &mut Checker<'_>, list: &[Spanned<toml::Value>], single_only: bool) -> Vec<Ports> {
    if list.len() > MAX_PORTS {
        if let Some(v) = list.get(MAX_PORTS) {
            c.err(v, format!("{} ports in one entry (at most {MAX_PORTS})", list.len()), Some("use a range".into()));
        }
    }
    let mut out = Vec::new();
    for v in list {
        let parsed = match v.get_ref() {
            toml::Value::Integer(n) => u16::try_from(*n).ok().filter(|p| *p > 0).map(Ports::one),
            toml::Value::String(s) => s.split_once('-').and_then(|(a, b)| {
                let (lo, hi) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
                (lo > 0 && lo <= hi).then_some(Ports { low: lo, high: hi })
            }),
            _ => None,
        };
        match parsed {
            Some(p) if single_only && p.low != p.high => c.err(
                v,
                "domain entries take single ports, not ranges",
                Some("list the ports, or use a cidr entry".into()),
            ),
            Some(p) => out.push(p),
            None => {
                c.err(v, format!("bad port {}", v.get_ref()), Some("a number 1-65535 or a range \"8000-8100\"".into()))
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn inbound(c: &mut Checker<'_>, list: &[Spanned<RawInbound>]) -> Vec<Inbound> {
    let mut out: Vec<Inbound> = Vec::new();
    for (i, si) in list.iter().enumerate() {
        if i == MAX_INBOUND {
            c.err(si, format!("more than {MAX_INBOUND} inbound openings"), None);
        }
        let r = si.get_ref();
        let port = match u16::try_from(*r.port.get_ref()) {
            Ok(p) if p > 0 => p,
            _ => {
                c.err(&r.port, format!("bad port {}", r.port.get_ref()), Some("1-65535".into()));
                continue;
            }
        };
        let ib = Inbound { proto: proto(c, r.proto.as_ref()), port };
        if out.contains(&ib) {
            c.err(si, format!("duplicate inbound opening {}/{port}", ib.proto.name()), None);
            continue;
        }
        out.push(ib);
    }
    out
}
