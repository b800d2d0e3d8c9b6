//! `/metrics` of the real daemon in the lab: after traffic the test controls
//! (exact pings, counted telnet SYNs, a known number of HTTP flows, MQTT
//! logins), the scrape's values match what was sent and what the status
//! snapshot says; a reload is counted; devices over `max_labeled_devices`
//! are summed under `other`; `promtool check metrics` accepts the text; and
//! every metric the Grafana dashboard queries is in it.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{bail, Context as _, Result};
use moat_tests::{
    cmd::{output, run, sh},
    lab::{Lab, INTERNET_V4},
    moat::{device, lab_config, traffic},
    mqtt::{credentials, publish, Creds},
    LabDevice, Moat,
};

const CAMERA: &str = "02:77:00:00:00:01";
const LAPTOP: &str = "02:77:00:00:00:02";
const STRANGER: &str = "02:77:00:00:00:63";
const PINGS: u64 = 7;
const TELNET_ATTEMPTS: u64 = 3;
const HTTP_FLOWS: u64 = 3;

/// camera: telnet blocked, may publish to its own MQTT topics; laptop: open;
/// plug: configured but quarantined (no namespace, no traffic).
fn config(metrics: &str) -> String {
    lab_config(&format!(
        r#"
[metrics]
{metrics}

[mqtt]
names = ["gateway.lab"]

[defaults]
block = []

[policies.camera]
block = ["telnet"]
[policies.camera.mqtt]
publish = ["devices/%u/#"]

[policies.open]
block = []

[[devices]]
mac = "{CAMERA}"
name = "camera"
policy = "camera"

[[devices]]
mac = "{LAPTOP}"
name = "laptop"
policy = "open"

[[devices]]
mac = "02:77:00:00:00:0f"
name = "plug"
policy = "quarantine"
"#
    ))
}

/// One sample: metric name and its exact label set.
type Key = (String, BTreeMap<String, String>);

/// The samples of a text exposition.
#[derive(Debug)]
struct Scrape {
    text: String,
    samples: BTreeMap<Key, f64>,
}

impl Scrape {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.get(&(name.to_string(), want)).copied()
    }

    /// A sample that must be there.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("{name}{labels:?} not in the scrape:\n{}", self.text))
    }

    /// A sample, 0 when absent (counters that have not counted yet).
    fn or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    fn has_label(&self, name: &str, label: &str, value: &str) -> bool {
        self.samples.keys().any(|(n, l)| n == name && l.get(label).map(String::as_str) == Some(value))
    }
}

/// Parses `name{k="v",...} value` lines (the values moat writes have no
/// escaped quotes; a line that does not parse fails the test).
fn parse(text: &str) -> Result<BTreeMap<Key, f64>> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').with_context(|| format!("no value: {line}"))?;
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').with_context(|| format!("unclosed labels: {line}"))?),
            None => (series, ""),
        };
        let mut set = BTreeMap::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").with_context(|| format!("bad label in {line}"))?;
            set.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        let v: f64 = value.parse().with_context(|| format!("bad value in {line}"))?;
        out.insert((name.to_string(), set), v);
    }
    Ok(out)
}

/// Scrapes the daemon from inside the gateway namespace (it listens on loopback there).
fn scrape(lab: &Lab) -> Result<Scrape> {
    let text = run(Some(&lab.gw), &["curl", "-sS", "--max-time", "5", "http://127.0.0.1:9469/metrics"])?;
    Ok(Scrape { samples: parse(&text)?, text })
}

/// Where scripts/setup unpacks promtool (or `$PROMTOOL`).
fn promtool() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return Ok(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let tools = std::env::var_os("MOAT_TOOLS_DIR").map_or_else(|| root.join("target/tools"), PathBuf::from);
    let p = tools.join("prometheus/usr/bin/promtool");
    if !p.is_file() {
        bail!(
            "promtool not found at {}: run scripts/setup (it unpacks Debian's prometheus package there)",
            p.display()
        );
    }
    Ok(p)
}

/// `promtool check metrics` on the scrape text; fails with its complaints.
fn promtool_check(lab: &Lab, text: &str) -> Result<()> {
    let file = lab.dir.join("scrape.txt");
    std::fs::write(&file, text)?;
    let script = format!("'{}' check metrics < '{}'", promtool()?.display(), file.display());
    let out = output(None, &["sh", "-c", &script])?;
    if !out.status.success() {
        bail!(
            "promtool check metrics failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Metric names (`moat_...`) in every query of the Grafana dashboard.
fn dashboard_metrics() -> Result<Vec<String>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packaging/grafana/moat.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut queries = Vec::new();
    collect_queries(&json, &mut queries);
    let mut names: Vec<String> = queries
        .iter()
        .flat_map(|q| {
            q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("moat_"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Every `expr` (panel targets) and `query`/`definition` (template variables).
fn collect_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::Object(q)) => {
                        if let Some(s) = q.get("query").and_then(|s| s.as_str()) {
                            out.push(s.to_string());
                        }
                    }
                    _ => collect_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

/// No traffic from the device but what the test sends: no IPv6 (ND, MLD), no ARP.
fn quiet(lab: &Lab, d: &LabDevice) -> Result<()> {
    sh(&d.ns, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.eth0.disable_ipv6=1")?;
    lab.static_neighbours(d)
}

/// Counts telnet SYNs the device sends (nft in its own namespace): the
/// independent truth for the classifier's drop counter.
fn count_telnet_syns(ns: &str) -> Result<()> {
    sh(
        ns,
        "nft add table inet probe
         nft add chain inet probe out '{ type filter hook output priority 0; }'
         nft add rule inet probe out tcp dport 23 'tcp flags & (syn|ack) == syn' counter",
    )?;
    Ok(())
}

fn telnet_syns_sent(ns: &str) -> Result<u64> {
    let listing = run(Some(ns), &["nft", "list", "chain", "inet", "probe", "out"])?;
    let n = listing.split_whitespace().skip_while(|w| *w != "packets").nth(1).and_then(|n| n.parse().ok());
    n.with_context(|| format!("no counter in {listing}"))
}

fn ping(d: &LabDevice, n: u64) -> Result<()> {
    run(Some(&d.ns), &["ping", "-c", &n.to_string(), "-i", "0.05", "-s", "100", "-q", INTERNET_V4])?;
    Ok(())
}

#[test]
fn scrape_matches_controlled_traffic() -> Result<()> {
    let lab = Lab::new(&[CAMERA, LAPTOP, STRANGER])?;
    let (cam, stranger) = (lab.devices[0].clone(), lab.devices[2].clone());
    quiet(&lab, &cam)?;
    count_telnet_syns(&cam.ns)?;
    let cfg = config("");
    let moat = Moat::start(&lab, &cfg)?;

    // The stranger is unknown (and quarantined, so its http SYN is dropped):
    // it shows up in the inventory.
    let _ = output(Some(&stranger.ns), &["nc", "-4", "-z", "-w", "1", INTERNET_V4, "80"])?;

    // Exactly PINGS echo requests from the camera, and their replies.
    let (s0, st0) = (scrape(&lab)?, moat.status()?);
    ping(&cam, PINGS)?;
    let (s1, st1) = (scrape(&lab)?, moat.status()?);
    let other = |s: &Scrape, dir: &str, what: &str| {
        s.or_zero(&format!("moat_device_{what}_total"), &[("device", "camera"), ("direction", dir), ("class", "other")])
    };
    assert_eq!(other(&s1, "from_device", "packets") - other(&s0, "from_device", "packets"), PINGS as f64);
    // 14 Ethernet + 20 IPv4 + 8 ICMP + 100 payload.
    assert_eq!(other(&s1, "from_device", "bytes") - other(&s0, "from_device", "bytes"), (PINGS * 142) as f64);
    assert_eq!(other(&s1, "to_device", "packets") - other(&s0, "to_device", "packets"), PINGS as f64);
    // The status snapshot counts the same packets.
    let sent = |st: &serde_json::Value| traffic(device(st, "camera").unwrap(), "from_device", "packets");
    assert_eq!(sent(&st1) - sent(&st0), PINGS);
    let total_from = |s: &Scrape| -> f64 {
        s.samples
            .iter()
            .filter(|((n, l), _)| {
                n == "moat_device_packets_total" && l["device"] == "camera" && l["direction"] == "from_device"
            })
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(total_from(&s1), sent(&st1) as f64, "metrics and status agree on the camera's total");

    // Telnet attempts: every SYN dropped and counted; one blocked event per flow.
    for _ in 0..TELNET_ATTEMPTS {
        let _ = output(Some(&cam.ns), &["nc", "-4", "-z", "-w", "1", INTERNET_V4, "23"])?;
    }
    let (s2, st2) = (scrape(&lab)?, moat.status()?);
    let syns = telnet_syns_sent(&cam.ns)?;
    assert!(syns >= TELNET_ATTEMPTS, "at least one SYN per attempt, got {syns}");
    let blocked = s2.value("moat_device_blocked_packets_total", &[("device", "camera"), ("reason", "blocked_class")]);
    assert_eq!(blocked, syns as f64, "every telnet SYN was dropped and counted");
    assert_eq!(device(&st2, "camera")?["dropped_by_reason"]["blocked_class"].as_u64(), Some(syns));
    let telnet = s2
        .value("moat_device_packets_total", &[("device", "camera"), ("direction", "from_device"), ("class", "telnet")]);
    assert_eq!(telnet, syns as f64, "dropped packets are counted as traffic too");
    let blocked_events = |s: &Scrape| s.value("moat_classifier_events_total", &[("kind", "blocked")]);
    assert_eq!(blocked_events(&s2) - blocked_events(&s1), TELNET_ATTEMPTS as f64, "one event per blocked flow");
    assert_eq!(s2.value("moat_classifier_dropped_packets_total", &[("reason", "blocked_class")]), syns as f64);
    let unknown_drops =
        s2.value("moat_device_blocked_packets_total", &[("device", "unknown"), ("reason", "quarantine")]);
    assert!(unknown_drops >= 1.0, "the stranger's http SYNs were dropped: {unknown_drops}");

    // HTTP_FLOWS connections: each is one flow opened.
    for _ in 0..HTTP_FLOWS {
        run(Some(&cam.ns), &["curl", "-sS", "--max-time", "5", &format!("http://{INTERNET_V4}/")])?;
    }
    let s3 = scrape(&lab)?;
    let flows = |s: &Scrape| s.value("moat_device_flows_opened_total", &[("device", "camera")]);
    assert_eq!(flows(&s3) - flows(&s2), HTTP_FLOWS as f64);
    assert!(
        s3.value("moat_device_bytes_total", &[("device", "camera"), ("direction", "to_device"), ("class", "http")])
            > 0.0
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as f64;
    let last_seen = s3.value("moat_device_last_seen_timestamp_seconds", &[("device", "camera")]);
    assert!((now - 60.0..=now + 1.0).contains(&last_seen), "camera seen just now: {last_seen} vs {now}");

    // Devices by state: camera, laptop, plug known; plug quarantined; the stranger unknown.
    assert_eq!(s3.value("moat_devices", &[("state", "known")]), 3.0);
    assert_eq!(s3.value("moat_devices", &[("state", "quarantined")]), 1.0);
    assert_eq!(s3.value("moat_devices", &[("state", "unknown")]), 1.0);
    assert_eq!(s3.value("moat_device_quarantined", &[("device", "plug")]), 1.0);
    assert_eq!(s3.value("moat_device_quarantined", &[("device", "camera")]), 0.0);
    assert_eq!(s3.value("moat_device_quarantined", &[("device", "unknown")]), 1.0);
    assert_eq!(s3.value("moat_metrics_devices_folded", &[]), 0.0);
    assert_eq!(s3.value("moat_ebpf_map_entries", &[("map", "devices")]), 3.0);
    let fill = s3.value("moat_ebpf_map_fill_ratio", &[("map", "flows")]);
    assert!(fill > 0.0 && fill < 1.0, "some flows, far from full: {fill}");
    assert_eq!(s3.value("moat_metrics_scrape_errors", &[]), 0.0);
    let kernel = run(None, &["uname", "-r"])?;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(s3.value("moat_build_info", &[("version", version), ("kernel", kernel.trim())]), 1.0);

    // A reload: counted once, timed once.
    let applies = |s: &Scrape| s.value("moat_policy_applies_total", &[("result", "ok")]);
    let apply_count = |s: &Scrape| s.value("moat_policy_apply_duration_seconds_count", &[]);
    assert_eq!(s3.value("moat_config_reloads_total", &[("result", "ok")]), 0.0);
    let st4 = moat.reload(&cfg)?;
    assert_eq!(st4["reloads"]["ok"].as_u64(), Some(1));
    let s4 = scrape(&lab)?;
    assert_eq!(s4.value("moat_config_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(s4.value("moat_config_reloads_total", &[("result", "invalid")]), 0.0);
    assert_eq!(applies(&s4) - applies(&s3), 1.0);
    assert_eq!(apply_count(&s4) - apply_count(&s3), 1.0);
    let inf = s4.value("moat_policy_apply_duration_seconds_bucket", &[("le", "+Inf")]);
    assert_eq!(inf, apply_count(&s4));
    // An invalid file is counted as such and changes nothing.
    let st5 = moat.reload("this is not toml")?;
    assert_eq!(st5["reloads"]["failed"].as_u64(), Some(1));
    let s5 = scrape(&lab)?;
    assert_eq!(s5.value("moat_config_reloads_total", &[("result", "invalid")]), 1.0);
    assert_eq!(apply_count(&s5), apply_count(&s4), "an invalid config is never applied");
    // The file back as it was (the credentials command below reads it).
    std::fs::write(&moat.config, lab.fill(&cfg))?;

    // MQTT: one message published, one wrong password.
    let creds = credentials(&moat, "camera")?;
    publish(&cam.ns, &creds, "devices/camera/temp", "21.5", &[])?;
    let wrong = Creds { password: "not-the-password".into(), ..creds.clone() };
    assert!(publish(&cam.ns, &wrong, "devices/camera/temp", "x", &[]).is_err(), "wrong password refused");
    let (s6, st6) = (scrape(&lab)?, moat.status()?);
    assert_eq!(s6.value("moat_mqtt_up", &[]), 1.0);
    assert_eq!(s6.value("moat_mqtt_messages_total", &[("direction", "published")]), 1.0);
    assert_eq!(s6.value("moat_mqtt_auth_failures_total", &[("reason", "bad_credentials")]), 1.0);
    assert_eq!(s6.value("moat_mqtt_connections_total", &[]), 2.0);
    let mqtt_camera = &st6["mqtt"]["devices"]["camera"];
    assert_eq!(mqtt_camera["published"].as_u64(), Some(1), "status agrees: {mqtt_camera}");
    assert_eq!(mqtt_camera["auth_failures"].as_u64(), Some(1));

    // The text is valid exposition format, and the dashboard's metrics exist.
    promtool_check(&lab, &s6.text)?;
    let names = dashboard_metrics()?;
    assert!(names.len() >= 10, "the dashboard queries moat's metrics: {names:?}");
    let missing: Vec<&String> = names.iter().filter(|n| !s6.samples.keys().any(|(m, _)| m == *n)).collect();
    assert!(missing.is_empty(), "dashboard queries metrics the scrape lacks: {missing:?}\n{}", s6.text);
    Ok(())
}

#[test]
fn devices_over_the_label_cap_are_summed_under_other() -> Result<()> {
    let lab = Lab::new(&[CAMERA, LAPTOP])?;
    let (cam, laptop) = (lab.devices[0].clone(), lab.devices[1].clone());
    for d in [&cam, &laptop] {
        quiet(&lab, d)?;
    }
    let _moat = Moat::start(&lab, &config("max_labeled_devices = 1"))?;
    let before = scrape(&lab)?;
    ping(&cam, 3)?;
    ping(&laptop, 5)?;
    let after = scrape(&lab)?;

    // camera (id 1) keeps its label; laptop and plug are folded.
    assert_eq!(after.value("moat_metrics_devices_folded", &[]), 2.0);
    let out = |s: &Scrape, dev: &str| {
        s.or_zero("moat_device_packets_total", &[("device", dev), ("direction", "from_device"), ("class", "other")])
    };
    assert_eq!(out(&after, "camera") - out(&before, "camera"), 3.0);
    assert_eq!(out(&after, "other") - out(&before, "other"), 5.0, "the laptop's pings, under other");
    assert!(!after.has_label("moat_device_packets_total", "device", "laptop"), "no label of its own");
    assert!(!after.has_label("moat_device_quarantined", "device", "plug"));
    assert_eq!(after.value("moat_device_quarantined", &[("device", "other")]), 1.0, "plug, among the folded");

    // A flow of the laptop's (pings are not flows: no ports) counts under other.
    run(Some(&laptop.ns), &["curl", "-sS", "--max-time", "5", &format!("http://{INTERNET_V4}/")])?;
    let last = scrape(&lab)?;
    let flows = |s: &Scrape, dev: &str| s.value("moat_device_flows_opened_total", &[("device", dev)]);
    assert_eq!(flows(&last, "other") - flows(&after, "other"), 1.0);
    assert_eq!(flows(&last, "camera"), flows(&after, "camera"));
    promtool_check(&lab, &last.text)
}
