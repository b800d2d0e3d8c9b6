//! `scripts/bench mqtt`: moat's TLS front (with its embedded broker) against
//! mosquitto, same machine, same run, same load generator (`moat-mqtt-load`),
//! same path (a device namespace through the lab bridge to the gateway), same
//! server certificate and an ACL on both. Baseline = mosquitto.
//!
//! Measured: delivered msgs/s and p50/p99 publish-to-delivery latency for 1
//! and 100 publishers → 1 subscriber (QoS 1, 64-byte payloads, 100k
//! messages), acknowledged vs delivered; RSS with 1,000 idle TLS connections;
//! moat's RSS over a soak with a slow subscriber (`MOAT_BENCH_SOAK_S`,
//! default 600 s).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::{
    bench::Report,
    cmd,
    lab::{wait_for, Lab, GW_V4},
    moat::lab_config,
    mqtt::{credentials, load_binary, rss_kb},
    Moat,
};

const LOADER: &str = "02:77:00:00:00:01";
const MOSQUITTO_PORT: u16 = 18883;
const MESSAGES: &str = "100000";

/// The bench config; `publish_rate` per device (the soak runs at a device's
/// default, the throughput runs unpaced like mosquitto).
fn config(publish_rate: u32) -> String {
    lab_config(&format!(
        r#"
[mqtt]
names = ["gateway.lab"]
connections_per_minute = 60000
max_connections = 4096
max_connections_per_device = 4096
queue_messages = 200000
queue_bytes = 67108864
publish_rate = {publish_rate}

[policies.loader]
services = ["all"]
[policies.loader.mqtt]
publish = ["load/#"]
subscribe = ["load/#"]

[[devices]]
mac = "{LOADER}"
name = "loader"
policy = "loader"
"#
    ))
}

/// mosquitto in the gateway namespace on GW:18883 with moat's server
/// certificate, the loader's password and an ACL. Returns its pid.
pub(crate) fn start_mosquitto(lab: &mut Lab, state: &Path, user: &str, pass: &str) -> Result<u32> {
    let d = lab.dir.join("mosq");
    std::fs::create_dir_all(&d)?;
    let p = |f: &str| d.join(f).display().to_string();
    let mqtt = state.join("mqtt");
    cmd::run(None, &["mosquitto_passwd", "-c", "-b", &p("passwd"), user, pass])?;
    std::fs::write(d.join("acl"), format!("user {user}\ntopic readwrite load/#\n"))?;
    let conf = format!(
        "user root\nper_listener_settings false\nallow_anonymous false\npassword_file {pw}\nacl_file {acl}\n\
         max_queued_messages 0\nlog_dest stdout\n\
         listener {MOSQUITTO_PORT} {GW_V4}\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\n",
        pw = p("passwd"),
        acl = p("acl"),
        ca = mqtt.join("ca.pem").display(),
        crt = mqtt.join("server.pem").display(),
        key = mqtt.join("server.key").display(),
    );
    std::fs::write(d.join("mosquitto.conf"), conf)?;
    let gw = lab.gw.clone();
    let pid = lab.spawn(&gw, &["mosquitto", "-c", &p("mosquitto.conf")], "mosquitto")?;
    wait_for(Duration::from_secs(10), || crate::lab::connects(&gw, GW_V4, MOSQUITTO_PORT))?;
    Ok(pid)
}

/// Runs the load generator in the device namespace; returns its JSON line.
fn load(lab: &Lab, ca: &str, creds: &str, port: u16, args: &[&str]) -> Result<Value> {
    let bin = load_binary()?.display().to_string();
    let port = port.to_string();
    let mut all = vec![bin.as_str(), args[0], "--host", "gateway.lab", "--connect-addr", GW_V4, "--port", &port];
    all.extend(["--ca", ca, "--creds", creds]);
    all.extend(&args[1..]);
    let ns = &lab.devices[0].ns;
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "exec", ns]).args(&all);
    let out = c.output().context("running moat-mqtt-load")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).with_context(|| {
        format!(
            "moat-mqtt-load {args:?}: {line:?} {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        )
    })
}

fn throughput(lab: &Lab, ca: &str, creds: &str, port: u16, publishers: &str) -> Result<Value> {
    load(
        lab,
        ca,
        creds,
        port,
        &[
            "throughput",
            "--publishers",
            publishers,
            "--messages",
            MESSAGES,
            "--qos",
            "1",
            "--payload",
            "64",
            "--subscriber-user",
            "loader",
        ],
    )
}

/// RSS of `pid` before, while 1,000 idle TLS connections are held, and 3 s
/// after they closed; and how many connected.
fn idle_rss(lab: &Lab, ca: &str, creds: &str, port: u16, pid: u32) -> Result<(u64, u64, u64, f64)> {
    let before = rss_kb(pid);
    let bin = load_binary()?.display().to_string();
    let port_s = port.to_string();
    let args = [
        "netns",
        "exec",
        &lab.devices[0].ns,
        &bin,
        "idle",
        "--host",
        "gateway.lab",
        "--connect-addr",
        GW_V4,
        "--port",
        &port_s,
        "--ca",
        ca,
        "--creds",
        creds,
        "--connections",
        "1000",
        "--hold-s",
        "60",
    ];
    let mut child = std::process::Command::new("ip")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // (stdout is read once the run ends: it is one short JSON line)
    let start = Instant::now();
    let mut peak = 0;
    while start.elapsed() < Duration::from_secs(55) && child.try_wait()?.is_none() {
        peak = peak.max(rss_kb(pid));
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = child.wait_with_output()?;
    std::thread::sleep(Duration::from_secs(3));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Ok((before, peak, rss_kb(pid), num(&v, "connected")))
}

/// moat's RSS every 5 s while 10 publishers send `rate` msgs/s for `secs`
/// into a subscriber reading one message per millisecond; the subscriber
/// then drains what is left, so every message ends delivered or counted.
fn soak(lab: &Lab, ca: &str, creds: &str, pid: u32, secs: u64, rate: u64) -> Result<(Vec<u64>, Value)> {
    let bin = load_binary()?.display().to_string();
    let (total, cap) = ((rate * secs).to_string(), (secs + 300).to_string());
    let args = [
        "netns",
        "exec",
        &lab.devices[0].ns,
        &bin,
        "throughput",
        "--host",
        "gateway.lab",
        "--connect-addr",
        GW_V4,
        "--port",
        "8883",
        "--ca",
        ca,
        "--creds",
        creds,
        "--publishers",
        "10",
        "--messages",
        &total,
        "--qos",
        "1",
        "--payload",
        "64",
        "--subscriber-user",
        "loader",
        "--slow-ms",
        "1",
        "--duration-s",
        &cap,
    ];
    let mut child = std::process::Command::new("ip").args(args).stdout(std::process::Stdio::piped()).spawn()?;
    let mut samples = Vec::new();
    while child.try_wait()?.is_none() {
        samples.push(rss_kb(pid));
        std::thread::sleep(Duration::from_secs(5));
    }
    let out = child.wait_with_output()?;
    // The subscriber's session ends with its connection: its queue is counted then.
    std::thread::sleep(Duration::from_secs(1));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    Ok((samples, serde_json::from_str(text.lines().last().unwrap_or("null")).unwrap_or(Value::Null)))
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

pub fn run() -> Result<Report> {
    let mut lab = Lab::new(&[LOADER])?;
    let moat = Moat::start(&lab, &config(10_000_000))?;
    let moat_pid = moat.pid().context("moat pid")?;
    let c = credentials(&moat, "loader")?;
    let creds = lab.dir.join("creds");
    std::fs::write(&creds, format!("{} {}\n", c.user, c.password))?;
    let (ca, creds) = (c.ca.display().to_string(), creds.display().to_string());
    let state = lab.dir.join("state");
    let mosq_pid = start_mosquitto(&mut lab, &state, &c.user, &c.password)?;
    let mut r = Report::new("mqtt");
    let dropped = |m: &Moat| -> Result<f64> {
        let d = m.status()?["mqtt"]["devices"]["loader"].clone();
        Ok(d["dropped_queue_full"].as_f64().unwrap_or(0.0) + d["dropped_on_close"].as_f64().unwrap_or(0.0))
    };
    // Idle connections first, while both brokers are fresh.
    let (m0, m1, m2, mc) = idle_rss(&lab, &ca, &creds, 8883, moat_pid)?;
    let (q0, q1, q2, qc) = idle_rss(&lab, &ca, &creds, MOSQUITTO_PORT, mosq_pid)?;
    r.results.insert("idle_1000_tls_rss_after_close_kb".into(), m2 as f64);
    r.baseline.insert("idle_1000_tls_rss_after_close_kb".into(), q2 as f64);
    r.results.insert("idle_connected".into(), mc);
    r.baseline.insert("idle_connected".into(), qc);
    r.results.insert("idle_1000_tls_rss_kb".into(), m1 as f64);
    r.results.insert("idle_1000_tls_rss_growth_kb".into(), m1.saturating_sub(m0) as f64);
    r.baseline.insert("idle_1000_tls_rss_kb".into(), q1 as f64);
    r.baseline.insert("idle_1000_tls_rss_growth_kb".into(), q1.saturating_sub(q0) as f64);
    r.ratio.insert("idle_1000_rss_vs_mosquitto".into(), m1 as f64 / q1.max(1) as f64);
    // MOAT_BENCH_ONLY=idle: just the idle-connection memory (quick).
    if std::env::var("MOAT_BENCH_ONLY").is_ok_and(|v| v == "idle") {
        return Ok(r);
    }
    for pubs in ["1", "100"] {
        let before = dropped(&moat)?;
        let m = throughput(&lab, &ca, &creds, 8883, pubs)?;
        r.results.insert(format!("{pubs}_publishers_dropped_counted"), dropped(&moat)? - before);
        let q = throughput(&lab, &ca, &creds, MOSQUITTO_PORT, pubs)?;
        for (key, unit) in [("msgs_per_s", "msgs/s delivered"), ("p50_ms", "ms"), ("p99_ms", "ms")] {
            let k = format!("{pubs}_publishers_{key}");
            r.results.insert(k.clone(), num(&m, key));
            r.baseline.insert(k.clone(), num(&q, key));
            r.unit.insert(k, unit.into());
        }
        for key in ["acked", "delivered"] {
            r.results.insert(format!("{pubs}_publishers_{key}"), num(&m, key));
            r.baseline.insert(format!("{pubs}_publishers_{key}"), num(&q, key));
        }
        r.at_least(
            &format!("{pubs}_publishers_throughput_vs_mosquitto"),
            num(&m, "msgs_per_s") / num(&q, "msgs_per_s"),
            1.0,
        );
        r.at_most(&format!("{pubs}_publishers_p99_vs_mosquitto"), num(&m, "p99_ms") / num(&q, "p99_ms"), 1.0, "ratio");
    }
    let secs = std::env::var("MOAT_BENCH_SOAK_S").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    // The soak: one device's publishers at its publish rate (default 1000/s
    // would take hours to overflow anything; 20,000/s swamps the subscriber).
    const SOAK_RATE: u64 = 20_000;
    let mut soak_cfg = config(SOAK_RATE as u32).replace("queue_messages = 200000", "queue_messages = 1000");
    soak_cfg = soak_cfg.replace("queue_bytes = 67108864", "queue_bytes = 1048576");
    moat.reload(&soak_cfg)?;
    let dropped_before = dropped(&moat)?;
    let (samples, soak_result) = soak(&lab, &ca, &creds, moat_pid, secs, SOAK_RATE)?;
    let first = samples.iter().take(samples.len() / 2).max().copied().unwrap_or(0);
    let last = samples.iter().skip(samples.len() / 2).max().copied().unwrap_or(0);
    r.results.insert("soak_seconds".into(), secs as f64);
    r.results.insert("soak_rss_peak_first_half_kb".into(), first as f64);
    r.results.insert("soak_rss_peak_second_half_kb".into(), last as f64);
    r.results.insert("soak_acked".into(), num(&soak_result, "acked"));
    r.results.insert("soak_delivered".into(), num(&soak_result, "delivered"));
    let counted = dropped(&moat)? - dropped_before;
    r.results.insert("soak_dropped_counted".into(), counted);
    // Every acknowledged message delivered or counted: the difference is what went missing.
    r.results.insert("soak_unaccounted".into(), num(&soak_result, "acked") - num(&soak_result, "delivered") - counted);
    // Bounded: the second half peaks no higher than the first (+10 %).
    r.at_most("soak_rss_growth_second_vs_first_half", last as f64 / first.max(1) as f64, 1.1, "ratio");
    Ok(r)
}

pub fn print(r: &Report) {
    println!("MQTT benchmark: moat (TLS front + embedded broker) vs mosquitto, same lab path, same run");
    println!("  {:<44} {:>14} {:>14}", "", "moat", "mosquitto");
    for (k, v) in &r.results {
        let base = r.baseline.get(k).map(|b| format!("{b:>14.2}")).unwrap_or_default();
        println!("  {k:<44} {v:>14.2} {base}");
    }
    println!("  ratios:");
    for (k, v) in &r.ratio {
        let met = r.met.get(k).map(|m| if *m { "  met" } else { "  NOT met" }).unwrap_or("");
        let target = r.target.get(k).map(|t| format!(" (target {t})")).unwrap_or_default();
        println!("    {k:<44} {v:>10.3}{target}{met}");
    }
}
