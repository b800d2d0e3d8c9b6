//! `table inet moat`: LAN→WAN by per-policy chains reached through a verdict
//! map on the classifier's mark, WAN→LAN only through inbound openings, and
//! the gateway's own services per policy.

use std::fmt::Write as _;

use super::{dest_set, device_mark, elements, hosts_set, policy_chain, quote, services_chain, TABLE};
use crate::{
    model::{Internet, Policy, Proto, Service, Target},
    Config,
};

/// Device addresses remembered per policy for inbound openings.
pub(super) const HOSTS_MAX: u32 = 4096;
/// How long a learned device address keeps its inbound openings.
const HOST_TIMEOUT: &str = "1h";

pub(super) fn table(s: &mut String, cfg: &Config) {
    let _ = writeln!(s, "table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{");
    maps(s, cfg);
    for (name, p) in &cfg.policies {
        sets(s, cfg, name, p);
    }
    base_chains(s, cfg);
    for (name, p) in &cfg.policies {
        policy_chain_rules(s, name, p);
        services_chain_rules(s, name, p, &mqtt_ports(cfg, p));
    }
    let _ = writeln!(s, "}}");
}

/// Device mark → policy chain, for traffic to the WAN and to the gateway.
/// Device 0 (any MAC not configured) gets the unknown-device policy.
fn maps(s: &mut String, cfg: &Config) {
    let mut to_wan = vec![format!("{:#010x} : jump {}", device_mark(0), policy_chain(&cfg.gateway.unknown_policy))];
    let mut lan_in = vec![format!("{:#010x} : jump {}", device_mark(0), services_chain(&cfg.gateway.unknown_policy))];
    for d in &cfg.devices {
        to_wan.push(format!("{:#010x} : jump {}", device_mark(d.id), policy_chain(&d.policy)));
        lan_in.push(format!("{:#010x} : jump {}", device_mark(d.id), services_chain(&d.policy)));
    }
    for (name, items) in [("to_wan_policy", to_wan), ("lan_in_policy", lan_in)] {
        let _ = writeln!(s, "\tmap {name} {{\n\t\ttype mark : verdict{}\n\t}}", elements(&items));
    }
}

fn sets(s: &mut String, cfg: &Config, name: &str, p: &Policy) {
    if p.internet == Internet::Allowlist {
        for (family, addr) in [(4u8, "ipv4_addr"), (6, "ipv6_addr")] {
            let items = static_elements(p, family);
            let _ = writeln!(
                s,
                "\tset {} {{\n\t\ttype {addr} . inet_proto . inet_service\n\t\tflags interval, timeout{}\n\t}}",
                dest_set(name, family),
                elements(&items)
            );
        }
    }
    if !p.inbound.is_empty() {
        for (family, addr) in [(4u8, "ipv4_addr"), (6, "ipv6_addr")] {
            let _ = writeln!(
                s,
                "\tset {} {{\n\t\ttype {addr}\n\t\tsize {HOSTS_MAX}\n\t\tflags timeout\n\t\ttimeout {HOST_TIMEOUT}\n\t}}",
                hosts_set(name, family)
            );
        }
    }
    if p.rate_limit_kbps.is_some() {
        let _ = writeln!(
            s,
            "\tset pol_{name}_rate {{\n\t\ttype ether_addr\n\t\tflags dynamic, timeout\n\t\ttimeout 1m\n\t}}"
        );
        let ids = policy_marks(cfg, name);
        let _ = writeln!(s, "\tset {} {{\n\t\ttype mark{}\n\t}}", super::marks_set(name), elements(&ids));
    }
    if p.mqtt_upstream().is_some() {
        let macs: Vec<String> = super::devices_with(cfg, name).map(|d| d.mac.to_string()).collect();
        let _ = writeln!(s, "\tset {} {{\n\t\ttype ether_addr{}\n\t}}", super::macs_set(name), elements(&macs));
    }
}

/// CIDR allow entries as set elements (`prefix . proto . ports`).
fn static_elements(p: &Policy, family: u8) -> Vec<String> {
    let mut out = Vec::new();
    for a in &p.allow {
        let Target::Cidr(c) = &a.target else { continue };
        if c.is_v4() != (family == 4) {
            continue;
        }
        for ports in a.port_ranges() {
            out.push(format!("{c} . {} . {ports}", a.proto.name()));
        }
    }
    out
}

/// Device marks of a policy's devices (and of unknown devices, if it is the
/// unknown-device policy).
fn policy_marks(cfg: &Config, name: &str) -> Vec<String> {
    let mut ids: Vec<String> =
        cfg.devices.iter().filter(|d| d.policy == name).map(|d| format!("{:#010x}", device_mark(d.id))).collect();
    if cfg.gateway.unknown_policy == name {
        ids.push(format!("{:#010x}", device_mark(0)));
    }
    ids
}

/// Upload rate limits: before the established-connection shortcut, so every
/// packet counts, not only a connection's first.
fn rate_rules(cfg: &Config, lan: &str) -> String {
    let mut out = String::new();
    for (name, p) in &cfg.policies {
        let Some(kbps) = p.rate_limit_kbps else { continue };
        let kbytes = (kbps / 8).max(1);
        let _ = writeln!(
            out,
            "\t\tiifname {lan} meta mark & {mask:#010x} @{ids} update @pol_{name}_rate {{ ether saddr limit rate over {kbytes} kbytes/second }} counter drop comment \"{name}: rate limit\"",
            mask = super::DEVICE_MARK_MASK,
            ids = super::marks_set(name)
        );
    }
    out
}

fn base_chains(s: &mut String, cfg: &Config) {
    let lan = quote(&cfg.gateway.lan);
    let rates = rate_rules(cfg, &lan);
    let _ = writeln!(
        s,
        "\tchain forward {{
\t\ttype filter hook forward priority filter; policy accept;
{rates}\t\tiifname {lan} oifname != {lan} meta mark & {cls:#010x} == {mqtt:#010x} counter drop comment \"plaintext mqtt leaving the LAN\"
\t\tct state established,related accept
\t\tct state invalid counter drop comment \"invalid\"
\t\tiifname {lan} oifname {lan} meta mark & {moat:#010x} == 0 accept comment \"bridged (br_netfilter): the bridge table decides\"
\t\tiifname {lan} oifname {lan} counter drop comment \"lan: routed back into the LAN\"
\t\tiifname {lan} jump to_wan
\t\toifname {lan} jump from_wan
\t}}
\tchain to_wan {{
\t\tmeta mark & {mask:#010x} vmap @to_wan_policy
\t\tcounter drop comment \"no moat mark: classifier not running\"
\t}}",
        mask = super::DEVICE_MARK_MASK,
        moat = moat_common::mark::MOAT_BIT,
        cls = moat_common::mark::MOAT_BIT | moat_common::mark::CLASS_MASK,
        mqtt = moat_common::mark::MOAT_BIT | u32::from(moat_common::class::MQTT)
    );
    upgrade_chain(s, cfg, &lan);
    let _ = writeln!(s, "\tchain from_wan {{");
    for (name, p) in &cfg.policies {
        for ib in &p.inbound {
            let proto = ib.proto.name();
            for (family, ip) in [(4u8, "ip"), (6, "ip6")] {
                let set = hosts_set(name, family);
                let _ =
                    writeln!(s, "\t\t{ip} daddr @{set} {proto} dport {} accept comment \"{name}: inbound\"", ib.port);
            }
        }
    }
    let _ = writeln!(s, "\t\tcounter drop comment \"wan-inbound\"\n\t}}");
    // ICMP by protocol number: nft resolves names such as ipv6-icmp through
    // /etc/protocols, which minimal systems and containers may not have.
    let _ = writeln!(
        s,
        "\tchain input {{
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname {lan} jump lan_in
\t}}
\tchain lan_in {{
\t\tct state established,related accept
\t\tmeta l4proto {{ 1, 58 }} accept comment \"icmp, ipv6-icmp\"
\t\tmeta mark & {mask:#010x} vmap @lan_in_policy
\t\tcounter drop comment \"no moat mark: classifier not running\"
\t}}",
        mask = super::DEVICE_MARK_MASK
    );
}

fn policy_chain_rules(s: &mut String, name: &str, p: &Policy) {
    let _ = writeln!(s, "\tchain {} {{", policy_chain(name));
    match p.internet {
        Internet::Open => {
            let _ = writeln!(s, "\t\taccept");
        }
        Internet::Allowlist => {
            let _ = writeln!(s, "\t\tip daddr . meta l4proto . th dport @{} accept", dest_set(name, 4));
            let _ = writeln!(s, "\t\tip6 daddr . meta l4proto . th dport @{} accept", dest_set(name, 6));
            let _ = writeln!(s, "\t\tcounter drop comment \"{name}: not on the allowlist\"");
        }
        Internet::None => {
            let _ = writeln!(s, "\t\tcounter drop comment \"{name}: no internet\"");
        }
    }
    let _ = writeln!(s, "\t}}");
}

/// Ports of each gateway service.
fn service_ports(svc: Service) -> &'static [(Proto, u16)] {
    match svc {
        Service::Dns => &[(Proto::Udp, 53), (Proto::Tcp, 53)],
        Service::Dhcp => &[(Proto::Udp, 67), (Proto::Udp, 547)],
        Service::Ntp => &[(Proto::Udp, 123)],
        Service::Mqtt => &[(Proto::Tcp, 1883), (Proto::Tcp, 8883)],
        Service::All => &[],
    }
}

/// Broker ports a policy's devices may reach on the gateway: the TLS port
/// for any policy with MQTT permissions, the plaintext port where the policy
/// opts in, the upgrade port where it names an upstream.
fn mqtt_ports(cfg: &Config, p: &Policy) -> Vec<u16> {
    let (Some(m), Some(pm)) = (&cfg.mqtt, &p.mqtt) else { return Vec::new() };
    let mut ports = vec![m.tls_port];
    if pm.plaintext {
        ports.extend(m.plaintext_port);
    }
    if pm.upstream.is_some() {
        ports.push(m.upgrade_port);
    }
    ports
}

/// Plaintext MQTT (tcp/1883) of devices whose policy names an upstream is
/// redirected to the gateway, which carries it to the upstream over TLS.
fn upgrade_chain(s: &mut String, cfg: &Config, lan: &str) {
    let Some(m) = &cfg.mqtt else { return };
    let policies: Vec<&String> =
        cfg.policies.iter().filter(|(_, p)| p.mqtt_upstream().is_some()).map(|(n, _)| n).collect();
    if policies.is_empty() {
        return;
    }
    let _ = writeln!(s, "\tchain mqtt_upgrade {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;");
    for name in policies {
        let _ = writeln!(
            s,
            "\t\tiifname {lan} ether saddr @{macs} tcp dport {port} fib daddr type != local redirect to :{up} comment \"{name}: mqtt upgrade\"",
            macs = super::macs_set(name),
            port = crate::mqtt::PLAINTEXT_PORT,
            up = m.upgrade_port
        );
    }
    let _ = writeln!(s, "\t}}");
}

fn services_chain_rules(s: &mut String, name: &str, p: &Policy, mqtt: &[u16]) {
    let _ = writeln!(s, "\tchain {} {{", services_chain(name));
    if p.services.contains(&Service::All) {
        let _ = writeln!(s, "\t\taccept\n\t}}");
        return;
    }
    for proto in [Proto::Udp, Proto::Tcp] {
        let mut ports: Vec<u16> = p
            .services
            .iter()
            .flat_map(|svc| service_ports(*svc))
            .filter(|(pr, _)| *pr == proto)
            .map(|(_, port)| *port)
            .collect();
        if proto == Proto::Tcp {
            ports.extend(mqtt);
        }
        ports.sort_unstable();
        ports.dedup();
        if !ports.is_empty() {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            let _ = writeln!(s, "\t\t{} dport {{ {} }} accept", proto.name(), list.join(", "));
        }
    }
    let _ = writeln!(s, "\t\tcounter drop comment \"{name}: gateway service not allowed\"\n\t}}");
}
