//! The MQTT service's counters, summed over devices (a per-device label here
//! would multiply the device cap by every MQTT metric; the status snapshot
//! has the per-device numbers).

use super::scrape::{int, set_counter, Scrape};
use crate::mqtt::{Mqtt, Totals};

/// Nothing when MQTT is not configured; `moat_mqtt_up` 0 when it failed to start.
pub fn export(s: &Scrape, mqtt: &Result<Option<Mqtt>, String>) -> prometheus::Result<()> {
    let totals = match mqtt {
        Ok(None) => return Ok(()),
        Ok(Some(m)) => m.totals(),
        Err(_) => Totals::default(),
    };
    s.gauge(
        "moat_mqtt_up",
        "1 if the MQTT service for devices is running, 0 if it failed to start (see moat's log); absent when \
         [mqtt] is not configured.",
        i64::from(matches!(mqtt, Ok(Some(_)))),
    )?;
    export_totals(s, &totals)
}

fn export_totals(s: &Scrape, t: &Totals) -> prometheus::Result<()> {
    let d = &t.devices;
    s.gauge("moat_mqtt_connections_open", "MQTT connections from devices open now.", int(d.connections_open))?;
    s.gauge("moat_mqtt_sessions", "MQTT sessions the broker holds now (connected or kept).", int(t.sessions))?;
    s.counter(
        "moat_mqtt_connections_total",
        "MQTT CONNECTs from identified devices that reached the login check.",
        d.connections,
    )?;
    let pairs = [
        (
            "moat_mqtt_messages_total",
            "MQTT messages: published (accepted from devices) and delivered (sent to subscribers).",
            "direction",
            vec![("published", d.published), ("delivered", d.delivered)],
        ),
        (
            "moat_mqtt_acl_denials_total",
            "MQTT PUBLISH (and will topics) and SUBSCRIBE refused by the device's topic permissions.",
            "action",
            vec![("publish", d.publish_denied), ("subscribe", d.subscribe_denied)],
        ),
        (
            "moat_mqtt_auth_failures_total",
            "MQTT logins refused: bad_credentials (wrong password or certificate), identity_mismatch (another \
             device's credentials, or no configured device behind the connection).",
            "reason",
            vec![("bad_credentials", d.auth_failures), ("identity_mismatch", d.identity_mismatch)],
        ),
        (
            "moat_mqtt_connections_refused_total",
            "MQTT connections refused before login: rate_limited (connections per minute), over_capacity (the \
             service's connection limit), over_device_limit (the device's), unknown_peer (no configured device).",
            "reason",
            vec![
                ("rate_limited", d.rate_limited),
                ("over_capacity", t.over_capacity),
                ("over_device_limit", t.over_device_limit),
                ("unknown_peer", t.unknown_peer),
            ],
        ),
        (
            "moat_mqtt_handshake_failures_total",
            "MQTT connections that failed their TLS handshake (error) or did not finish it or CONNECT in time \
             (timeout).",
            "reason",
            vec![("error", t.handshake_failures), ("timeout", t.handshake_timeouts)],
        ),
        (
            "moat_mqtt_messages_dropped_total",
            "MQTT messages not delivered: queue_full (slow subscriber), on_close (still queued when the \
             connection closed), not_permitted (a reload took the subscription away).",
            "reason",
            vec![
                ("queue_full", d.dropped_queue_full),
                ("on_close", d.dropped_on_close),
                ("not_permitted", d.dropped_not_permitted),
            ],
        ),
    ];
    for (name, help, label, values) in pairs {
        let family = s.counters(name, help, &[label])?;
        for (value, n) in values {
            set_counter(&family, &[value], n)?;
        }
    }
    s.counter(
        "moat_mqtt_slow_disconnects_total",
        "MQTT connections closed because the device did not read its messages.",
        d.disconnected_slow,
    )?;
    s.counter("moat_mqtt_malformed_packets_total", "Malformed MQTT packets from devices.", d.malformed)?;
    s.counter(
        "moat_mqtt_upgraded_sessions_total",
        "Plaintext MQTT connections toward the internet carried to the policy's upstream broker over TLS.",
        d.upgraded_sessions,
    )
}
