//! Policy tables: every element parses into the model, every mistake is
//! reported at its place.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::path::Path;

use moat_policy::{
    model::{Inbound, Internet, Lan, Proto, Service, Target},
    net::Ports,
    Config, Diagnostics,
};

mod common;
use common::{error, HEAD};

fn parse(text: &str) -> Result<Config, Diagnostics> {
    Config::parse(Path::new("p.toml"), text)
}

const CAMERA: &str = r#"
[policies.camera]
internet = "allowlist"
allow = [
  { domain = "*.vendor.example", ports = [443] },
  { domain = "time.vendor.example", proto = "udp", ports = [123] },
  { cidr = "203.0.113.0/24", proto = "udp", ports = [123, "5000-5010"] },
  { cidr = "2001:db8:5::/48" },
]
block = ["mqtt"]
lan = "group"
services = ["dns", "dhcp", "mqtt"]
inbound = [{ proto = "tcp", port = 8080 }]
rate_limit_kbps = 2000

[[devices]]
mac = "02:77:00:00:00:01"
name = "cam"
policy = "camera"
tags = ["porch", "video"]
"#;

#[test]
fn a_full_policy_is_modelled() {
    let cfg = parse(&format!("{HEAD}{CAMERA}")).unwrap_or_else(|e| panic!("{e}"));
    let p = &cfg.policies["camera"];
    assert_eq!(p.internet, Internet::Allowlist);
    assert_eq!(p.allow.len(), 4);
    assert!(matches!(&p.allow[0].target, Target::Domain(d) if d.wildcard && d.name == "vendor.example"));
    assert_eq!((p.allow[0].proto, p.allow[0].ports.clone()), (Proto::Tcp, vec![Ports::one(443)]), "tcp by default");
    assert_eq!(p.allow[2].ports, vec![Ports::one(123), Ports { low: 5000, high: 5010 }]);
    assert_eq!(p.allow[3].port_ranges(), vec![Ports::ALL], "no ports = all ports");
    assert_eq!(p.lan, Lan::Group);
    assert_eq!(p.services.iter().copied().collect::<Vec<_>>(), vec![Service::Dns, Service::Dhcp, Service::Mqtt]);
    assert_eq!(p.inbound, vec![Inbound { proto: Proto::Tcp, port: 8080 }]);
    assert_eq!(p.rate_limit_kbps, Some(2000));
    assert_eq!(p.domains().count(), 2);
    assert_eq!(cfg.devices[0].tags, vec!["porch", "video"]);
}

#[test]
fn modes_services_and_protocols_are_checked() {
    assert_eq!(error("[policies.a]\ninternet = \"some\"\n"), "5:12: unknown internet mode \"some\"");
    assert_eq!(error("[policies.a]\nlan = \"closed\"\n"), "5:7: unknown lan mode \"closed\"");
    assert_eq!(error("[policies.a]\nservices = [\"dns\", \"ssh\"]\n"), "5:20: unknown gateway service \"ssh\"");
    let e = error("[policies.a]\ninternet = \"allowlist\"\nallow = [{ cidr = \"10.0.0.0/8\", proto = \"icmp\" }]\n");
    assert_eq!(e, "6:41: unknown protocol \"icmp\"");
}

#[test]
fn allow_entries_are_checked() {
    let al = |entry: &str| error(&format!("[policies.a]\ninternet = \"allowlist\"\nallow = [{entry}]\n"));
    assert_eq!(
        al("{ domain = \"a.example\", cidr = \"10.0.0.0/8\" }"),
        "6:41: an allow entry has either `domain` or `cidr`, not both"
    );
    assert_eq!(al("{ proto = \"tcp\" }"), "6:10: an allow entry needs `domain` or `cidr`");
    assert!(al("{ domain = \"example\" }").starts_with("6:21: bad domain \"example\": needs at least two labels"));
    assert!(al("{ domain = \"bad_-.example\" }").contains("bad domain"));
    assert_eq!(
        al("{ cidr = \"203.0.113.5/24\" }"),
        "6:19: bad cidr \"203.0.113.5/24\": has host bits set; the network is 203.0.113.0/24"
    );
    assert!(al("{ cidr = \"10.0.0.0/40\" }").contains("prefix length 40 is too long"));
    assert_eq!(al("{ cidr = \"10.0.0.0/8\", ports = [0] }"), "6:42: bad port 0");
    assert_eq!(al("{ cidr = \"10.0.0.0/8\", ports = [70000] }"), "6:42: bad port 70000");
    assert_eq!(al("{ cidr = \"10.0.0.0/8\", ports = [\"9-3\"] }"), "6:42: bad port \"9-3\"");
    assert_eq!(
        al("{ domain = \"a.example\", ports = [\"1-9\"] }"),
        "6:43: domain entries take single ports, not ranges"
    );
    assert_eq!(
        al("{ cidr = \"10.0.0.0/8\", color = 1 }"),
        "6:33: unknown field `color`, expected one of `domain`, `cidr`, `proto`, `ports`"
    );
    let many: Vec<String> = (1..=33).map(|p| p.to_string()).collect();
    assert!(al(&format!("{{ cidr = \"10.0.0.0/8\", ports = [{}] }}", many.join(", ")))
        .contains("33 ports in one entry (at most 32)"));
}

#[test]
fn conflicting_internet_settings() {
    assert_eq!(
        error("[policies.a]\ninternet = \"allowlist\"\n"),
        "5:12: internet = \"allowlist\" with no `allow` entries blocks all internet access"
    );
    assert_eq!(
        error("[policies.a]\nallow = [{ cidr = \"10.0.0.0/8\" }]\n"),
        "5:10: `allow` entries only apply with internet = \"allowlist\""
    );
    assert_eq!(
        error("[policies.a]\ninternet = \"none\"\nallow = [{ cidr = \"10.0.0.0/8\" }]\n"),
        "6:10: `allow` entries only apply with internet = \"allowlist\""
    );
}

#[test]
fn inbound_rate_limit_tags_and_defaults_are_checked() {
    assert_eq!(error("[policies.a]\ninbound = [{ port = 0 }]\n"), "5:21: bad port 0");
    assert_eq!(
        error("[policies.a]\ninbound = [{ port = 80 }, { port = 80, proto = \"tcp\" }]\n"),
        "5:27: duplicate inbound opening tcp/80"
    );
    assert_eq!(error("[policies.a]\nrate_limit_kbps = 1\n"), "5:19: `rate_limit_kbps` = 1 is out of range");
    let dev = "[policies.a]\n[[devices]]\nmac = \"02:77:00:00:00:01\"\nname = \"x\"\npolicy = \"a\"\ntags = [\"ok\", \"not ok\"]\n";
    assert_eq!(error(dev), "9:15: bad tag \"not ok\"");
    assert_eq!(error("[defaults]\nblock = [\"gopher\"]\n"), "5:10: unknown traffic class \"gopher\" in `block`");
    assert_eq!(
        error("[gateway2]\n"),
        "4:2: unknown field `gateway2`, expected one of `gateway`, `classifier`, `defaults`, `policies`, `devices`, `groups`, `mqtt`, `api`, `metrics`, `log`"
    );
    assert_eq!(
        error("[policies.a]\n[gateway.x]\n"),
        "5:10: unknown field `x`, expected one of `lan`, `wan`, `run_dir`, `unknown_policy`, `approved_policy`, `dns_ttl_floor`, `mud_dir`, `state_dir`, `pin_dir`, `on_failure`"
    );
}

#[test]
fn policy_names_become_nft_identifiers() {
    assert_eq!(error("[policies.\"2cams\"]\n"), "4:11: policy name \"2cams\" is not allowed");
    assert_eq!(error("[policies.\"cam era\"]\n"), "4:11: policy name \"cam era\" is not allowed");
    assert!(parse(&format!("{HEAD}[policies.cam-v2_b]\n")).is_ok());
}

#[test]
fn groups_name_existing_devices() {
    let devs = "[policies.a]\n[[devices]]\nmac = \"02:77:00:00:00:01\"\nname = \"cam\"\npolicy = \"a\"\n[[devices]]\nmac = \"02:77:00:00:00:02\"\nname = \"tv\"\npolicy = \"a\"\n";
    let cfg =
        parse(&format!("{HEAD}{devs}[groups.living]\nmembers = [\"cam\", \"tv\"]\n")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.groups["living"], vec!["cam", "tv"]);
    assert_eq!(cfg.group_members("living").len(), 2);
    assert_eq!(
        error(&format!("{devs}[groups.living]\nmembers = [\"cam\", \"radio\"]\n")),
        "14:19: group \"living\": no device named \"radio\""
    );
    assert_eq!(
        error(&format!("{devs}[groups.living]\nmembers = [\"cam\", \"cam\"]\n")),
        "14:19: group \"living\": \"cam\" is listed twice"
    );
    assert_eq!(error(&format!("{devs}[groups.\"9x\"]\nmembers = []\n")), "13:9: group name \"9x\" is not allowed");
}
