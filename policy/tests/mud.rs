//! MUD import on files written from RFC 8520's examples and abstractions.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::path::Path;

use moat_policy::{
    model::{Internet, Lan, Proto, Target},
    mud::{import, MudError},
    net::Ports,
    Config, MacAddr,
};

const MAC: MacAddr = MacAddr([2, 0x77, 0, 0, 0, 7]);

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mud").join(name)).unwrap()
}

/// The imported TOML must be a valid moat config (under a gateway table).
fn as_config(toml: &str) -> Config {
    let text = format!("[gateway]\nlan = \"br-lan\"\nwan = \"wan0\"\n\n{toml}");
    Config::parse(Path::new("imported.toml"), &text)
        .unwrap_or_else(|e| panic!("import produced an invalid config: {e}\n{toml}"))
}

#[test]
fn names_networks_and_ports_become_an_allowlist() {
    let out = import(&fixture("lightbulb.json"), MAC, "bulb").unwrap();
    assert_eq!(out.policy_name, "mud_lightbulb2000");
    assert!(out.unsupported.iter().all(|u| u.contains("covered by connection tracking")), "{:?}", out.unsupported);
    assert_eq!(out.mud_url.as_deref(), Some("https://lighting.example.com/lightbulb2000.json"));
    let cfg = as_config(&out.toml);
    let p = &cfg.policies["mud_lightbulb2000"];
    assert_eq!(p.internet, Internet::Allowlist);
    assert_eq!(p.allow.len(), 2, "{}", out.toml);
    assert!(matches!(&p.allow[0].target, Target::Domain(d) if d.name == "service.lighting.example.com" && !d.wildcard));
    assert_eq!((p.allow[0].proto, p.allow[0].ports.clone()), (Proto::Tcp, vec![Ports::one(443)]));
    assert!(matches!(&p.allow[1].target, Target::Cidr(c) if c.to_string() == "203.0.113.0/24"));
    assert_eq!((p.allow[1].proto, p.allow[1].ports.clone()), (Proto::Udp, vec![Ports { low: 5000, high: 5010 }]));
    assert_eq!(p.lan, Lan::Isolated, "no local-networks rule: isolated");
    assert!(p.inbound.is_empty(), "to-device reply rules need no openings");
    assert_eq!((cfg.devices[0].mac, cfg.devices[0].name.as_str()), (MAC, "bulb"));
    assert!(out.toml.starts_with("# Imported from MUD https://lighting.example.com/lightbulb2000.json\n"));
}

#[test]
fn abstractions_map_or_are_reported() {
    let out = import(&fixture("abstractions.json"), MAC, "thermo").unwrap();
    let cfg = as_config(&out.toml);
    let p = &cfg.policies["mud_thermostat-x"];
    assert_eq!(p.lan, Lan::Open, "local-networks");
    assert_eq!(p.allow.len(), 1, "only the v6 network rule maps: {}", out.toml);
    assert!(matches!(&p.allow[0].target, Target::Cidr(c) if c.to_string() == "2001:db8:44::/48"));
    assert_eq!(p.inbound.len(), 1);
    let reported = out.unsupported.join("\n");
    for expected in [
        "acl fr ace ctrl: \"my-controller\" (no controller support in moat yet)",
        "acl fr ace mfg: \"same-manufacturer\" approximated as lan = \"group\"",
        "acl fr ace ping: IP protocol 58",
        "acl fr ace nope: forwarding \"drop\"",
        "acl to ace in: inbound tcp/8080 opened from anywhere",
    ] {
        assert!(reported.contains(expected), "missing report {expected:?} in:\n{reported}");
    }
    assert!(out.toml.contains("# not translated: acl fr ace ping"), "reports are in the TOML too");
}

#[test]
fn broken_files_give_clear_errors() {
    assert!(matches!(import("{", MAC, "x"), Err(MudError::Json(_))));
    assert_eq!(import("{}", MAC, "x"), Err(MudError::Missing("\"ietf-mud:mud\"")));
    let no_acls = r#"{"ietf-mud:mud": {"mud-url": "https://a.example/x.json"}}"#;
    assert_eq!(import(no_acls, MAC, "x"), Err(MudError::Missing("\"ietf-access-control-list:acls\".acl")));
    let dangling = r#"{"ietf-mud:mud": {"from-device-policy": {"access-lists": {"access-list": [{"name": "gone"}]}}},
                       "ietf-access-control-list:acls": {"acl": []}}"#;
    assert_eq!(import(dangling, MAC, "x"), Err(MudError::UndefinedAcl("gone".into())));
    // Nothing allowed at all: internet none, still a valid policy.
    let empty = r#"{"ietf-mud:mud": {"mud-url": "https://a.example/quiet.json"}, "ietf-access-control-list:acls": {"acl": []}}"#;
    let out = import(empty, MAC, "quiet").unwrap();
    assert_eq!(as_config(&out.toml).policies["mud_quiet"].internet, Internet::None);
}

#[test]
fn mud_text_never_becomes_config_syntax() {
    let evil = r#"{
      "ietf-mud:mud": {
        "mud-url": "https://evil.example/x.json\n[policies.mud_x]\ninternet = \"open\"",
        "systeminfo": "line one\r\n[[devices]]",
        "from-device-policy": { "access-lists": { "access-list": [ { "name": "fr" } ] } }
      },
      "ietf-access-control-list:acls": { "acl": [ { "name": "fr", "aces": { "ace": [
        { "name": "inj\n[groups.g]", "matches": { "ipv4": { "ietf-acldns:dst-dnsname": "a.example\" }, { cidr = \"0.0.0.0/0", "protocol": 6 },
                                             "tcp": { "destination-port": { "operator": "eq", "port": 443 } } },
          "actions": { "forwarding": "accept" } },
        { "name": "srconly", "matches": { "ipv4": { "destination-ipv4-network": "198.51.100.0/24", "protocol": 6 },
                                          "tcp": { "source-port": { "operator": "eq", "port": 1234 } } },
          "actions": { "forwarding": "accept" } }
      ] } } ] }
    }"#;
    let out = import(evil, MAC, "name \" with quote").unwrap();
    let cfg = as_config(&out.toml);
    assert_eq!(cfg.policies.len(), 2, "only the imported policy and the built-in quarantine: {}", out.toml);
    assert!(cfg.groups.is_empty(), "{}", out.toml);
    let p = cfg.policies.values().find(|p| p.internet != Internet::None || !p.quarantine).unwrap();
    assert_eq!(p.internet, Internet::None, "nothing translated, so no internet: {}", out.toml);
    assert_eq!(cfg.devices[0].name, "name \" with quote");
    let reported = out.unsupported.join("\n");
    assert!(reported.contains("bad") || reported.contains("domain"), "{reported}");
    assert!(reported.contains("source-port-only"), "{reported}");
}
