//! Config parsing and validation: every error names file, line and column.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::path::Path;

use moat_common::class;
use moat_policy::{Config, Diagnostics, MacAddr};

const GOOD: &str = r#"
[gateway]
lan = "br-lan"
wan = "wan0"
unknown_policy = "quarantine"

[policies.camera]
block = ["telnet"]

[policies.quarantine]
block = ["telnet"]

[policies.open]

[[devices]]
mac = "02:77:00:00:00:01"
name = "camera"
policy = "camera"

[[devices]]
mac = "02-77-00-00-00-02"
name = "laptop"
policy = "open"
"#;

fn parse(text: &str) -> Result<Config, Diagnostics> {
    Config::parse(Path::new("moat.toml"), text)
}

/// The only diagnostic for `text`, as `line:col: message`.
fn only_error(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(d) => {
            assert_eq!(d.0.len(), 1, "expected one error, got: {d}");
            let e = &d.0[0];
            assert_eq!(e.file, "moat.toml");
            format!("{}:{}: {}", e.line, e.col, e.message)
        }
    }
}

#[test]
fn good_config_is_modelled() {
    let cfg = parse(GOOD).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.gateway.lan, "br-lan");
    assert_eq!(cfg.gateway.wan, "wan0");
    assert_eq!(cfg.gateway.run_dir, "/run/moat");
    assert_eq!(cfg.devices.len(), 2);
    assert_eq!(cfg.devices[0].mac, MacAddr([2, 0x77, 0, 0, 0, 1]));
    assert_eq!(cfg.devices[1].mac, MacAddr([2, 0x77, 0, 0, 0, 2]));
    assert_eq!((cfg.devices[0].id, cfg.devices[1].id), (1, 2), "ids are 1-based, 0 is unknown");
    let defaults = class::bit(class::TELNET) | class::bit(class::FTP) | class::bit(class::TFTP);
    assert_eq!(cfg.defaults_blocked, defaults, "telnet, ftp and tftp are blocked for everyone by default");
    assert_eq!(cfg.policy_of(&cfg.devices[0]).blocked_classes, defaults);
    assert_eq!(cfg.policy_of(&cfg.devices[1]).blocked_classes, defaults, "even an open policy gets the defaults");
    assert_eq!(cfg.unknown_policy().blocked_classes, defaults);
    assert_eq!(cfg.devices[0].tags, Vec::<String>::new());
    assert_eq!(cfg.gateway.dns_ttl_floor, 120);
}

#[test]
fn unknown_devices_are_quarantined_by_default() {
    let text = GOOD
        .replace("unknown_policy = \"quarantine\"\n", "")
        .replace("[policies.quarantine]\nblock = [\"telnet\"]\n", "");
    let cfg = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.gateway.unknown_policy, "quarantine");
    let q = cfg.unknown_policy();
    assert!(q.quarantine, "built-in quarantine policy");
    assert_eq!(q.internet, moat_policy::model::Internet::None);
    assert_eq!(q.lan, moat_policy::model::Lan::Isolated);
    let services: Vec<&str> = q.services.iter().map(|s| s.name()).collect();
    assert_eq!(services, ["dns", "dhcp"]);
    assert!(cfg.policies.contains_key("quarantine"), "the built-in policy can be named by devices too");
    let none = format!("{text}\n[defaults]\nblock = []\n");
    let cfg = parse(&none).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.policy_of(&cfg.devices[1]).blocked_classes, 0, "[defaults] block = [] blocks nothing globally");
}

#[test]
fn unknown_key_is_located() {
    let text = GOOD.replace("wan = \"wan0\"", "wan = \"wan0\"\nlna = \"x\"");
    assert_eq!(
        only_error(&text),
        "5:1: unknown field `lna`, expected one of `lan`, `wan`, `run_dir`, `unknown_policy`, `approved_policy`, `dns_ttl_floor`, `mud_dir`, `state_dir`, `pin_dir`, `on_failure`"
    );
    let text = GOOD.replace("name = \"camera\"", "name = \"camera\"\ncolour = \"red\"");
    assert!(only_error(&text).starts_with("18:1: unknown field `colour`"), "{}", only_error(&text));
    let text = format!("{GOOD}\n[extra]\nx = 1\n");
    assert!(only_error(&text).starts_with("25:2: unknown field `extra`"), "{}", only_error(&text));
}

#[test]
fn bad_mac_is_located_with_hint() {
    let text = GOOD.replace("02:77:00:00:00:01", "02:77:00:00:00");
    assert_eq!(
        only_error(&text),
        "16:7: bad MAC address \"02:77:00:00:00\": expected six hex pairs separated by ':' or '-'"
    );
    let text = GOOD.replace("02:77:00:00:00:01", "ff:ff:ff:ff:ff:ff");
    assert!(only_error(&text).contains("multicast/broadcast"));
    let err = parse(&GOOD.replace("02:77:00:00:00:01", "nope")).err().map(|d| d.to_string()).unwrap_or_default();
    assert!(err.contains("hint: write it like \"02:77:00:00:00:01\""), "{err}");
}

#[test]
fn undefined_policy_is_located_with_the_defined_ones() {
    let text = GOOD.replace("policy = \"camera\"", "policy = \"camrea\"");
    assert_eq!(only_error(&text), "18:10: undefined policy \"camrea\"");
    let err = parse(&text).err().map(|d| d.to_string()).unwrap_or_default();
    assert!(err.contains("hint: defined policies: camera, open, quarantine"), "{err}");
    let text = GOOD.replace("unknown_policy = \"quarantine\"", "unknown_policy = \"nobody\"");
    assert_eq!(only_error(&text), "5:18: undefined policy \"nobody\"");
}

#[test]
fn duplicate_mac_points_at_the_second_and_names_the_first() {
    // Same address, different spelling: still a duplicate.
    let text = GOOD.replace("02-77-00-00-00-02", "02-77-00-00-00-01");
    assert_eq!(only_error(&text), "21:7: duplicate MAC 02:77:00:00:00:01");
    let err = parse(&text).err().map(|d| d.to_string()).unwrap_or_default();
    assert!(err.contains("first used on line 16"), "{err}");
}

#[test]
fn duplicate_name_unknown_class_and_same_interfaces() {
    let text = GOOD.replace("name = \"laptop\"", "name = \"camera\"");
    assert_eq!(only_error(&text), "22:8: duplicate device name \"camera\"");
    let text =
        GOOD.replace("block = [\"telnet\"]\n\n[policies.quarantine]", "block = [\"gopher\"]\n\n[policies.quarantine]");
    assert_eq!(only_error(&text), "8:10: unknown traffic class \"gopher\" in `block`");
    let text =
        GOOD.replace("block = [\"telnet\"]\n\n[policies.quarantine]", "block = [\"other\"]\n\n[policies.quarantine]");
    assert!(only_error(&text).contains("unknown traffic class \"other\""), "`other` is not blockable");
    let text = GOOD.replace("wan = \"wan0\"", "wan = \"br-lan\"");
    assert_eq!(only_error(&text), "4:7: `wan` is the same interface as `lan`");
    let text = GOOD.replace("lan = \"br-lan\"", "lan = \"br lan; drop\"");
    assert!(only_error(&text).starts_with("3:7: `lan` = \"br lan; drop\" is not a valid interface name"));
    let text = GOOD.replace("lan = \"br-lan\"", "lan = \"a-very-long-interface\"");
    assert!(only_error(&text).contains("not a valid interface name"));
}

#[test]
fn every_error_is_reported_in_file_order() {
    let text = GOOD
        .replace("02-77-00-00-00-02", "02-77-00-00-00-01")
        .replace("policy = \"camera\"", "policy = \"x\"")
        .replace("wan = \"wan0\"", "wan = \"br-lan\"");
    let d = parse(&text).err().unwrap_or_else(|| Diagnostics(vec![]));
    let lines: Vec<usize> = d.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![4, 18, 21]);
}

#[test]
fn syntax_errors_and_missing_sections() {
    assert!(only_error("[gateway\nlan = 1").starts_with("1:"));
    assert!(only_error("").contains("missing field `gateway`"));
    let text = "[gateway]\nlan = \"br-lan\"\n";
    assert!(only_error(text).contains("missing field `wan`"));
    let text = GOOD.replace("lan = \"br-lan\"", "lan = 7");
    assert!(only_error(&text).starts_with("3:7: invalid type"), "{}", only_error(&text));
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let err = Config::load(Path::new("/nonexistent/moat.toml")).err().map(|d| d.to_string()).unwrap_or_default();
    assert!(err.starts_with("/nonexistent/moat.toml:0:0: cannot read config"), "{err}");
}

#[test]
fn classifier_sizes_and_quarantine() {
    let cfg = parse(GOOD).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((cfg.classifier.max_devices, cfg.classifier.flow_table_size), (1024, 65536), "defaults");
    let sized = format!("{GOOD}\n[classifier]\nmax_devices = 4096\nflow_table_size = 1024\n");
    let cfg = parse(&sized).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((cfg.classifier.max_devices, cfg.classifier.flow_table_size), (4096, 1024));
    let bad = format!("{GOOD}\n[classifier]\nmax_devices = 1\n");
    assert_eq!(only_error(&bad), "26:15: `max_devices` = 1 is out of range");
    let bad = format!("{GOOD}\n[classifier]\nflow_table_size = 99999999999\n");
    assert_eq!(only_error(&bad), "26:19: `flow_table_size` = 99999999999 is out of range");
    let bad = format!("{GOOD}\n[classifier]\nflows = 5\n");
    assert!(only_error(&bad).starts_with("26:1: unknown field `flows`"), "{}", only_error(&bad));
    // Two device slots: one for unknown devices, one for a listed device.
    let tight = format!("{GOOD}\n[classifier]\nmax_devices = 2\n");
    let e = only_error(&tight);
    assert!(e.starts_with("20:1: too many devices: 2 (at most 1)"), "{e}");

    let jail = GOOD.replace("[policies.open]", "[policies.open]\nquarantine = true");
    let cfg = parse(&jail).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.policy_of(&cfg.devices[1]).quarantine);
    assert!(!cfg.policy_of(&cfg.devices[0]).quarantine);
}

#[test]
fn every_classifier_class_is_blockable() {
    for name in class::NAMES.iter().filter(|n| **n != "other") {
        let text = GOOD.replace(
            "block = [\"telnet\"]\n\n[policies.quarantine]",
            &format!("block = [\"{name}\"]\n\n[policies.quarantine]"),
        );
        let cfg = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = class::from_name(name).map(|c| class::bit(c) | cfg.defaults_blocked);
        assert_eq!(Some(cfg.policy_of(&cfg.devices[0]).blocked_classes), want, "{name}");
    }
}

#[test]
fn the_documented_example_is_valid() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md")).unwrap();
    let start = doc.find("```toml\n").map(|i| i + 8).expect("an example in docs/configuration.md");
    let end = doc[start..].find("```").map(|i| start + i).unwrap();
    let cfg = Config::parse(Path::new("docs/configuration.md"), &doc[start..end]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.devices.len(), 4);
    assert!(cfg.policies.contains_key("camera") && cfg.policies.contains_key("quarantine"));
    assert!(cfg.mqtt.is_some() && cfg.policies["sensors"].mqtt.is_some());
}
