//! How each API answer reads in a terminal.

use serde_json::Value;

use crate::clock::unix_secs as now;

use super::table::{ago, bytes, clock, duration, table};

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `name=value` pairs of the nonzero entries of a JSON map of counts.
fn nonzero(v: &Value) -> String {
    let pairs: Vec<String> = v
        .as_object()
        .map(|m| m.iter().filter(|(_, n)| u(n) > 0).map(|(k, n)| format!("{k}={}", u(n))).collect())
        .unwrap_or_default();
    if pairs.is_empty() {
        "none".into()
    } else {
        pairs.join(" ")
    }
}

pub fn status(v: &Value) -> String {
    let devices = v["devices"].as_array().map_or(&[][..], Vec::as_slice);
    let configured = devices.iter().filter(|d| !s(&d["mac"]).is_empty()).count();
    let quarantined = devices.iter().filter(|d| !s(&d["mac"]).is_empty() && d["quarantine"] == true).count();
    let seen = v["inventory"]["devices"].as_array().map_or(0, Vec::len);
    let mut out = format!(
        "moat {} enforcing on {} for {} (config {})\n",
        s(&v["version"]),
        s(&v["lan"]),
        duration(u(&v["uptime_seconds"])),
        s(&v["config"])
    );
    out.push_str(&format!("devices:   {configured} configured ({quarantined} quarantined), {seen} seen\n"));
    out.push_str(&format!("flows:     {} active of {}\n", u(&v["flows"]["active"]), u(&v["flows"]["capacity"])));
    out.push_str(&format!("dropped:   {}\n", nonzero(&v["drop_reasons"])));
    out.push_str(&format!("health:    {}\n", nonzero(&v["health"])));
    let r = &v["reloads"];
    out.push_str(&format!("reloads:   {} ok, {} failed\n", u(&r["ok"]), u(&r["failed"])));
    if let Some(e) = r["last_error"].as_str() {
        out.push_str(&format!("  last error: {}\n", e.lines().next().unwrap_or("")));
    }
    out.push_str(&format!("inventory: {}\n", s(&v["inventory"]["state"])));
    out.push_str(&format!("mqtt:      {}\n", mqtt(&v["mqtt"])));
    if u(&v["log_suppressed"]) > 0 {
        out.push_str(&format!("log:       {} per-packet lines over the budget\n", u(&v["log_suppressed"])));
    }
    out
}

fn mqtt(v: &Value) -> String {
    match v {
        Value::Null => "not configured".into(),
        Value::Object(m) if m.contains_key("error") => format!("not running: {}", s(&v["error"])),
        _ => "running".into(),
    }
}

fn traffic(v: &Value, dir: &str) -> String {
    if v["traffic"].is_null() {
        return "-".into();
    }
    bytes(u(&v["traffic"]["total"][dir]["bytes"]))
}

pub fn devices(v: &Value) -> String {
    let list = v.as_array().map_or(&[][..], Vec::as_slice);
    if list.is_empty() {
        return "no devices configured or seen yet\n".into();
    }
    let now = now();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                d["name"].as_str().unwrap_or("-").to_string(),
                s(&d["mac"]).to_string(),
                s(&d["state"]).to_string(),
                s(&d["policy"]).to_string(),
                traffic(d, "from_device"),
                traffic(d, "to_device"),
                d["traffic"]["dropped_packets"].as_u64().map_or("-".into(), |n| n.to_string()),
                ago(d["seen"]["last_seen"].as_i64().unwrap_or(0), now),
                d["quarantine_reason"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    table(&["NAME", "MAC", "STATE", "POLICY", "SENT", "RECEIVED", "DROPPED", "LAST SEEN", "WHY"], &rows, &[4, 5, 6])
}

pub fn device(v: &Value) -> String {
    let mut out = String::new();
    let line = |out: &mut String, k: &str, val: &str| out.push_str(&format!("{k:<11}{val}\n"));
    line(&mut out, "name:", v["name"].as_str().unwrap_or("- (not in the config)"));
    line(&mut out, "mac:", s(&v["mac"]));
    line(&mut out, "state:", s(&v["state"]));
    line(&mut out, "policy:", s(&v["policy"]));
    if let Some(r) = v["quarantine_reason"].as_str() {
        line(&mut out, "why:", r);
    }
    let seen = &v["seen"];
    if seen.is_object() {
        let now = now();
        line(&mut out, "first seen:", &ago(seen["first_seen"].as_i64().unwrap_or(0), now));
        line(&mut out, "last seen:", &ago(seen["last_seen"].as_i64().unwrap_or(0), now));
        for (key, label) in [("hostname", "hostname:"), ("oui_vendor", "vendor:"), ("mud_url", "MUD URL:")] {
            if let Some(x) = seen[key].as_str() {
                line(&mut out, label, x);
            }
        }
        let addrs: Vec<&str> = seen["addresses"].as_array().map(|a| a.iter().map(s).collect()).unwrap_or_default();
        if !addrs.is_empty() {
            line(&mut out, "addresses:", &addrs.join(", "));
        }
    }
    let t = &v["traffic"];
    if t.is_object() {
        line(
            &mut out,
            "sent:",
            &format!(
                "{} in {} packets",
                bytes(u(&t["total"]["from_device"]["bytes"])),
                u(&t["total"]["from_device"]["packets"])
            ),
        );
        line(
            &mut out,
            "received:",
            &format!(
                "{} in {} packets",
                bytes(u(&t["total"]["to_device"]["bytes"])),
                u(&t["total"]["to_device"]["packets"])
            ),
        );
        line(&mut out, "dropped:", &format!("{} ({})", u(&t["dropped_packets"]), nonzero(&t["dropped_by_reason"])));
        out.push_str(&classes(&t["classes"]));
    }
    out
}

fn classes(v: &Value) -> String {
    let Some(m) = v.as_object().filter(|m| !m.is_empty()) else { return String::new() };
    let rows: Vec<Vec<String>> = m
        .iter()
        .map(|(class, dirs)| {
            vec![
                class.clone(),
                bytes(u(&dirs["from_device"]["bytes"])),
                u(&dirs["from_device"]["packets"]).to_string(),
                bytes(u(&dirs["to_device"]["bytes"])),
                u(&dirs["to_device"]["packets"]).to_string(),
            ]
        })
        .collect();
    format!("\n{}", table(&["CLASS", "SENT", "PACKETS", "RECEIVED", "PACKETS"], &rows, &[1, 2, 3, 4]))
}

/// After approve, quarantine or policy: the device's new standing.
pub fn decided(v: &Value) -> String {
    let name = v["name"].as_str().unwrap_or("(unnamed)");
    let mut out = format!("{name} ({}): {}, policy {}", s(&v["mac"]), s(&v["state"]), s(&v["policy"]));
    if let Some(r) = v["quarantine_reason"].as_str().filter(|_| v["state"] != "known") {
        out.push_str(&format!(" ({r})"));
    }
    out.push('\n');
    if let Some(w) = v["warning"].as_str() {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

pub fn forgotten(v: &Value) -> String {
    let mut done = Vec::new();
    for (key, what) in [
        ("decision", "decision removed"),
        ("inventory", "inventory deleted"),
        ("counters", "counters zeroed"),
        ("mqtt_password", "MQTT password removed"),
    ] {
        if v[key] == true {
            done.push(what.to_string());
        }
    }
    if u(&v["events"]) > 0 {
        done.push(format!("{} recent events dropped", u(&v["events"])));
    }
    format!("{}: forgotten ({})\n", s(&v["mac"]), done.join(", "))
}

pub fn reloaded(v: &Value) -> String {
    format!("reloaded: {} devices, {} policies\n", u(&v["devices"]), u(&v["policies"]))
}

/// NDJSON event lines, one readable line each.
pub fn event_lines(ndjson: &str) -> String {
    let mut out = String::new();
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(e) = serde_json::from_str::<Value>(line) else { continue };
        let when = e["time"].as_u64().map_or_else(|| "        ".to_string(), clock);
        let who = match (e["device"].as_str(), e["mac"].as_str()) {
            (Some(d), Some(m)) if d != m => format!("{d} ({m})"),
            (_, Some(m)) => m.to_string(),
            (Some(d), None) => d.to_string(),
            (None, None) => String::new(),
        };
        let what = match s(&e["kind"]) {
            "blocked" => format!("{} to {}:{} ({})", s(&e["class"]), s(&e["remote"]), u(&e["port"]), s(&e["reason"])),
            "quarantined" => format!("reason: {}", s(&e["reason"])),
            "approved" | "policy" => format!("policy {}", s(&e["policy"])),
            "lagged" => format!("{} events missed (this terminal was too slow)", u(&e["missed"])),
            _ => e["class"].as_str().unwrap_or("").to_string(),
        };
        out.push_str(&format!("{when}  {:<11} {who}  {what}\n", s(&e["kind"])));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test panics
mod tests {
    use super::*;

    #[test]
    fn events_read_as_one_line_each() {
        let ndjson = r#"{"time":3661,"kind":"blocked","device":"camera","mac":"02:00:00:00:00:01","class":"telnet","remote":"198.51.100.10","port":23,"reason":"policy"}
{"time":3662,"kind":"quarantined","device":"camera","mac":"02:00:00:00:00:01","reason":"scanning"}
"#;
        assert_eq!(
            event_lines(ndjson),
            "01:01:01  blocked     camera (02:00:00:00:00:01)  telnet to 198.51.100.10:23 (policy)\n\
             01:01:02  quarantined camera (02:00:00:00:00:01)  reason: scanning\n"
        );
    }

    #[test]
    fn devices_table_humanizes_bytes() {
        let v: Value = serde_json::from_str(
            r#"[{"name":"camera","mac":"02:00:00:00:00:01","state":"known","policy":"cam",
                 "traffic":{"total":{"from_device":{"bytes":2048},"to_device":{"bytes":10}},"dropped_packets":3}}]"#,
        )
        .unwrap();
        let t = devices(&v);
        assert!(t.lines().nth(1).unwrap().contains("2.0 KiB"), "{t}");
        assert!(t.starts_with("NAME    MAC"), "{t}");
    }
}
