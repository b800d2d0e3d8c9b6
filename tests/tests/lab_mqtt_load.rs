//! Overload: 100 publishers at full speed and one subscriber that reads one
//! message per millisecond, through moat's TLS front. Every message the
//! broker acknowledged is either delivered or counted as dropped (nothing
//! lost silently), and moat's memory stays bounded.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use moat_tests::{
    lab::{Lab, GW_V4},
    moat::lab_config,
    mqtt::{count, counters, credentials, load_binary, rss_kb},
    Moat,
};

const LOADER: &str = "02:77:00:00:00:01";
/// Queue bound per connection (messages) in this test.
const QUEUE: u64 = 100;
/// Memory allowed per open connection (measured ~90 kB idle in a release
/// build, ~0.7 MB in this debug build under load: TLS, buffers, the queue).
const PER_CONNECTION_KB: u64 = 1024;
/// Buffers in flight and the allocator's slack.
const SHARED_KB: u64 = 16 * 1024;

#[test]
fn slow_subscriber_every_message_delivered_or_counted_and_memory_bounded() -> Result<()> {
    let mut lab = Lab::new(&[LOADER])?;
    let cfg = lab_config(&format!(
        r#"
[mqtt]
names = ["gateway.lab"]
queue_messages = {QUEUE}
connections_per_minute = 6000
max_connections_per_device = 200
publish_rate = 20000

[policies.loader]
[policies.loader.mqtt]
publish = ["load/#"]
subscribe = ["load/#"]

[[devices]]
mac = "{LOADER}"
name = "loader"
policy = "loader"
"#
    ));
    let moat = Moat::start(&lab, &cfg)?;
    let c = credentials(&moat, "loader")?;
    let creds = lab.dir.join("creds");
    std::fs::write(&creds, format!("{} {}\n", c.user, c.password))?;
    let bin = load_binary()?.display().to_string();
    let (ca, creds) = (c.ca.display().to_string(), creds.display().to_string());
    let args = [
        bin.as_str(),
        "throughput",
        "--host",
        "gateway.lab",
        "--connect-addr",
        GW_V4,
        "--port",
        "8883",
        "--ca",
        &ca,
        "--creds",
        &creds,
        "--subscriber-user",
        "loader",
        "--publishers",
        "100",
        "--messages",
        "20000",
        "--qos",
        "1",
        "--payload",
        "64",
        "--slow-ms",
        "1",
        "--duration-s",
        "120",
    ];
    let ns = lab.devices[0].ns.clone();
    lab.spawn(&ns, &args, "load")?;
    let log = lab.dir.join("load.log");
    let pid = moat.pid().context("moat pid")?;
    let idle = rss_kb(pid);
    let (start, mut peak) = (Instant::now(), 0u64);
    let result: serde_json::Value = loop {
        peak = peak.max(rss_kb(pid));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(v) = text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).next() {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(150), "load generator did not finish: {text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let s = counters(&moat, "loader")?;
    let n = |k: &str| result[k].as_u64().unwrap_or(0);
    let dropped = count(&s, "dropped_queue_full") + count(&s, "dropped_on_close");
    eprintln!("load: {result}\nmoat: {s}\nRSS idle {idle} kB, peak {peak} kB, after {} kB", rss_kb(pid));
    assert_eq!(n("connect_failures"), 0, "{result}");
    assert_eq!(n("acked"), 20_000, "every publish acknowledged: {result}");
    assert!(count(&s, "dropped_queue_full") > 0, "the slow subscriber overflowed its queue: {s}");
    assert_eq!(n("acked"), n("delivered") + dropped, "acknowledged == delivered + counted drops: {result} {s}");
    let bound = idle + 101 * PER_CONNECTION_KB + SHARED_KB;
    assert!(peak < bound, "moat RSS peaked at {peak} kB (bound {bound} kB = idle {idle} + 101 connections + log)");
    Ok(())
}
