//! Validation of `[mqtt]`, `[mqtt.upstreams.NAME]` and `[policies.NAME.mqtt]`.

use std::collections::BTreeMap;

use toml::Spanned;

use crate::{
    mqtt::{MqttSettings, Overflow, PolicyMqtt, TopicPattern, Upstream},
    raw::{RawMqtt, RawPolicy, RawPolicyMqtt, RawUpstream},
    validate::{bounded, Checker},
};

/// Patterns per list: a permission list a person can still review.
const MAX_PATTERNS: usize = 64;
const PORT_RANGE: (i64, i64) = (1, 65_535);

pub(crate) fn settings(c: &mut Checker<'_>, raw: &Spanned<RawMqtt>) -> MqttSettings {
    let r = raw.get_ref();
    let d = MqttSettings::default();
    let port = |c: &mut Checker<'_>, v: Option<&Spanned<i64>>, key: &str, dflt: u16| {
        bounded(c, v, key, PORT_RANGE, u32::from(dflt)) as u16
    };
    let s = MqttSettings {
        tls_port: port(c, r.tls_port.as_ref(), "tls_port", d.tls_port),
        plaintext_port: r.plaintext_port.as_ref().map(|v| port(c, Some(v), "plaintext_port", 0)),
        upgrade_port: port(c, r.upgrade_port.as_ref(), "upgrade_port", d.upgrade_port),
        max_packet_size: bounded(
            c,
            r.max_packet_size.as_ref(),
            "max_packet_size",
            (128, 268_435_455),
            d.max_packet_size,
        ),
        connections_per_minute: bounded(
            c,
            r.connections_per_minute.as_ref(),
            "connections_per_minute",
            (1, 60_000),
            d.connections_per_minute,
        ),
        max_connections: bounded(c, r.max_connections.as_ref(), "max_connections", (1, 100_000), d.max_connections),
        max_connections_per_device: bounded(
            c,
            r.max_connections_per_device.as_ref(),
            "max_connections_per_device",
            (1, 100_000),
            d.max_connections_per_device,
        ),
        publish_rate: bounded(c, r.publish_rate.as_ref(), "publish_rate", (1, 10_000_000), d.publish_rate),
        queue_messages: bounded(c, r.queue_messages.as_ref(), "queue_messages", (1, 1_000_000), d.queue_messages),
        queue_bytes: bounded(c, r.queue_bytes.as_ref(), "queue_bytes", (1024, 1 << 30), d.queue_bytes),
        overflow: overflow(c, r.overflow.as_ref()),
        handshake_timeout_ms: bounded(
            c,
            r.handshake_timeout_ms.as_ref(),
            "handshake_timeout_ms",
            (100, 120_000),
            d.handshake_timeout_ms,
        ),
        client_certificates: r.client_certificates.unwrap_or(false),
        names: r.names.iter().filter_map(|n| dns_name(c, n)).collect(),
        upstreams: r
            .upstreams
            .iter()
            .filter_map(|(n, u)| upstream(c, n, u).map(|u| (n.get_ref().clone(), u)))
            .collect(),
    };
    distinct_ports(c, raw, &s);
    s
}

fn distinct_ports(c: &mut Checker<'_>, raw: &Spanned<RawMqtt>, s: &MqttSettings) {
    let mut ports = vec![s.tls_port, s.upgrade_port];
    ports.extend(s.plaintext_port);
    let mut sorted = ports.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != ports.len() {
        c.err(raw, "tls_port, plaintext_port and upgrade_port must differ", None);
    }
}

fn overflow(c: &mut Checker<'_>, v: Option<&Spanned<String>>) -> Overflow {
    match v.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "drop-oldest")) => Overflow::DropOldest,
        Some((_, "disconnect")) => Overflow::Disconnect,
        Some((v, other)) => {
            c.err(v, format!("unknown overflow {other:?}"), Some("\"drop-oldest\" or \"disconnect\"".into()));
            Overflow::DropOldest
        }
    }
}

/// A DNS host name: letters, digits, '-' and '.', labels of 1 to 63.
fn dns_name(c: &mut Checker<'_>, v: &Spanned<String>) -> Option<String> {
    let n = v.get_ref();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
    };
    if n.len() > 253 || !n.split('.').all(label_ok) {
        c.err(v, format!("{n:?} is not a DNS host name"), Some("e.g. \"gateway.lan\"".into()));
        return None;
    }
    Some(n.to_ascii_lowercase())
}

fn upstream(c: &mut Checker<'_>, name: &Spanned<String>, u: &Spanned<RawUpstream>) -> Option<Upstream> {
    let r = u.get_ref();
    crate::validate::check_name(c, name, "upstream");
    let host = dns_name(c, &r.host)?;
    let address = match &r.address {
        None => None,
        Some(a) => match a.get_ref().parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                c.err(a, format!("{:?} is not an IP address", a.get_ref()), Some("e.g. \"198.51.100.10\"".into()));
                None
            }
        },
    };
    if !r.ca_file.get_ref().starts_with('/') {
        c.err(
            &r.ca_file,
            "`ca_file` must be an absolute path",
            Some("the PEM file of the CA that signed the broker".into()),
        );
    }
    let port = bounded(c, r.port.as_ref(), "port", PORT_RANGE, 8883) as u16;
    Some(Upstream { host, port, address, ca_file: r.ca_file.get_ref().clone() })
}

pub(crate) fn policy_mqtt(c: &mut Checker<'_>, raw: &Spanned<RawPolicyMqtt>) -> PolicyMqtt {
    let r = raw.get_ref();
    PolicyMqtt {
        publish: patterns(c, &r.publish, "publish"),
        subscribe: patterns(c, &r.subscribe, "subscribe"),
        plaintext: r.plaintext,
        upstream: r.upstream.as_ref().map(|u| u.get_ref().clone()),
    }
}

fn patterns(c: &mut Checker<'_>, list: &[Spanned<String>], key: &str) -> Vec<TopicPattern> {
    if let Some(extra) = list.get(MAX_PATTERNS) {
        c.err(extra, format!("more than {MAX_PATTERNS} `{key}` patterns"), None);
    }
    list.iter()
        .filter_map(|v| match TopicPattern::parse(v.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => {
                c.err(
                    v,
                    format!("bad `{key}` pattern {:?}: {e}", v.get_ref()),
                    Some("an MQTT filter such as \"devices/%u/#\" (%u = device name, %c = client id)".into()),
                );
                None
            }
        })
        .collect()
}

/// Upstream names used by policies exist; MQTT permissions need `[mqtt]`.
pub(crate) fn references(
    c: &mut Checker<'_>,
    policies: &BTreeMap<Spanned<String>, Spanned<RawPolicy>>,
    settings: Option<&MqttSettings>,
    has_mqtt: bool,
) {
    for p in policies.values() {
        let Some(m) = &p.get_ref().mqtt else { continue };
        if !has_mqtt {
            c.err(
                m,
                "this policy has MQTT permissions but there is no [mqtt] table",
                Some("add [mqtt] to run the gateway broker".into()),
            );
            continue;
        }
        let Some(up) = &m.get_ref().upstream else { continue };
        let known = settings.map(|s| s.upstreams.contains_key(up.get_ref())).unwrap_or(false);
        if !known {
            let names: Vec<String> = settings.map(|s| s.upstreams.keys().cloned().collect()).unwrap_or_default();
            let hint = if names.is_empty() {
                "define it as [mqtt.upstreams.NAME]".to_string()
            } else {
                format!("defined upstreams: {}", names.join(", "))
            };
            c.err(up, format!("undefined upstream {:?}", up.get_ref()), Some(hint));
        }
    }
}
