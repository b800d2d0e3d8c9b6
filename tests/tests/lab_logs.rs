//! Logs on real traffic: `[log] format = "json"` gives one JSON object per
//! line, and a device opening many blocked flows gets only its per-minute
//! budget of "blocked" lines; the rest are counted, not lost.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use anyhow::Result;
use moat_tests::{
    cmd::sh,
    lab::{Lab, INTERNET_V4},
    moat::{camera_and_laptop, counter, device},
    Moat,
};
use serde_json::Value;

const CAMERA: &str = "02:77:00:00:00:01";
const LAPTOP: &str = "02:77:00:00:00:02";
const BUDGET: usize = 3;
const FLOWS: usize = 10;

#[test]
fn blocked_flows_are_logged_as_json_within_the_budget() -> Result<()> {
    let lab = Lab::new(&[CAMERA, LAPTOP])?;
    let cam = lab.devices[0].clone();
    let config = camera_and_laptop(r#"["telnet"]"#)
        .replace("[defaults]", &format!("[log]\nformat = \"json\"\npacket_events_per_minute = {BUDGET}\n\n[defaults]"));
    let moat = Moat::start(&lab, &config)?;
    // Each connection is its own flow; the server's telnet banner is what gets it blocked.
    sh(
        &cam.ns,
        &format!("for i in $(seq {FLOWS}); do nc -4 -w 1 {INTERNET_V4} 23 </dev/null >/dev/null 2>&1 || true; done"),
    )?;
    let status = moat.status()?;
    let blocked = status["events"]["blocked"].as_u64().unwrap_or(0) as usize;
    assert!(blocked >= FLOWS, "every flow was blocked once: {}", status["events"]);
    assert!(counter(device(&status, "camera")?, "dropped_packets") >= FLOWS as u64);

    let text = moat.log_text();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let blocked_lines: Vec<&Value> = lines.iter().filter(|l| l["fields"]["message"] == "blocked").collect();
    assert_eq!(blocked_lines.len(), BUDGET, "only the budget is logged: {text}");
    let first = blocked_lines[0];
    assert_eq!(
        (&first["fields"]["device"], &first["fields"]["class"], &first["fields"]["reason"]),
        (&Value::from("camera"), &Value::from("telnet"), &Value::from("blocked_class"))
    );
    assert_eq!(first["fields"]["remote"], INTERNET_V4);
    assert_eq!(first["level"], "INFO");
    assert_eq!(status["log_suppressed"].as_u64(), Some((blocked - BUDGET) as u64), "the rest are counted");
    Ok(())
}
