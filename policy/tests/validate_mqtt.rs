//! `[mqtt]`, upstreams and per-policy MQTT permissions: modelled as written,
//! every mistake reported at its place.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use moat_policy::mqtt::Overflow;

mod common;
use common::{error, parse};

#[test]
fn settings_and_permissions_are_modelled() {
    let cfg = parse(
        r#"
[mqtt]
tls_port = 8884
plaintext_port = 1884
queue_messages = 50
overflow = "disconnect"
client_certificates = true
names = ["Gateway.LAN"]
[mqtt.upstreams.cloud]
host = "broker.example"
address = "198.51.100.7"
ca_file = "/etc/moat/ca.pem"

[policies.sensor.mqtt]
publish = ["devices/%u/#"]
subscribe = ["devices/%u/cmd/+"]
plaintext = true
upstream = "cloud"
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let m = cfg.mqtt.as_ref().unwrap();
    assert_eq!((m.tls_port, m.plaintext_port, m.upgrade_port), (8884, Some(1884), 18830));
    assert_eq!((m.queue_messages, m.overflow, m.client_certificates), (50, Overflow::Disconnect, true));
    assert_eq!(m.names, vec!["gateway.lan"]);
    let up = &m.upstreams["cloud"];
    assert_eq!(
        (up.host.as_str(), up.port, up.address),
        ("broker.example", 8883, Some("198.51.100.7".parse().unwrap()))
    );
    let p = cfg.policies["sensor"].mqtt.as_ref().unwrap();
    assert_eq!(p.publish[0].as_str(), "devices/%u/#");
    assert_eq!((p.plaintext, p.upstream.as_deref()), (true, Some("cloud")));
    assert_eq!(cfg.policies["sensor"].mqtt_upstream(), Some("cloud"));
}

#[test]
fn no_mqtt_table_means_no_broker() {
    let cfg = parse("[policies.p]\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.mqtt.is_none());
    assert!(cfg.policies["p"].mqtt.is_none());
}

#[test]
fn mistakes_are_located() {
    assert_eq!(
        error("[mqtt]\n[policies.p.mqtt]\npublish = [\"a/#/b\"]\n"),
        "6:12: bad `publish` pattern \"a/#/b\": `#` must be a whole level and the last one"
    );
    assert_eq!(
        error("[mqtt]\n[policies.p.mqtt]\nsubscribe = [\"x/%uu\"]\n"),
        "6:14: bad `subscribe` pattern \"x/%uu\": `%u` and `%c` must be whole levels"
    );
    assert_eq!(error("[mqtt]\n[policies.p.mqtt]\nupstream = \"nope\"\n"), "6:12: undefined upstream \"nope\"");
    assert_eq!(
        error("[policies.p.mqtt]\npublish = [\"a\"]\n"),
        "4:1: this policy has MQTT permissions but there is no [mqtt] table"
    );
    assert_eq!(error("[mqtt]\noverflow = \"block\"\n"), "5:12: unknown overflow \"block\"");
    assert_eq!(error("[mqtt]\ntls_port = 70000\n"), "5:12: `tls_port` = 70000 is out of range");
    assert_eq!(error("[mqtt]\nnames = [\"bad name\"]\n"), "5:10: \"bad name\" is not a DNS host name");
    assert_eq!(error("[mqtt]\ntls_port = 18830\n"), "4:1: tls_port, plaintext_port and upgrade_port must differ");
    assert_eq!(
        error("[mqtt]\n[mqtt.upstreams.c]\nhost = \"h.example\"\nca_file = \"rel.pem\"\n"),
        "7:11: `ca_file` must be an absolute path"
    );
    assert_eq!(error("[mqtt]\nmax_packet_size = 10\n"), "5:19: `max_packet_size` = 10 is out of range");
    assert!(error("[mqtt]\nbogus = 1\n").contains("unknown field `bogus`"));
}

#[test]
fn a_policy_may_be_only_its_mqtt_table() {
    // `[policies.p.mqtt]` alone defines policy `p` (TOML's implicit table).
    let cfg = parse("[mqtt]\n[policies.p.mqtt]\npublish = [\"a\"]\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.policies["p"].mqtt.as_ref().map(|m| m.publish.len()), Some(1));
}
