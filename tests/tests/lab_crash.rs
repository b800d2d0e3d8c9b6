//! Never fail open: with `on_failure = "closed"`, a moat killed with SIGKILL
//! leaves enforcement exactly as it was, and a restarted moat adopts the
//! pinned classifier and the tables within a second, changing nothing.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::time::{Duration, Instant};

use anyhow::Result;
use moat_tests::{
    cmd::{output, run},
    lab::{connects, Lab, INTERNET_V4},
    moat::{binary, camera_and_laptop, device},
    Moat,
};

const CAMERA: &str = "02:77:00:00:00:01";
const LAPTOP: &str = "02:77:00:00:00:02";

fn banner(ns: &str, port: u16) -> Result<String> {
    let out = output(Some(ns), &["nc", "-w", "2", INTERNET_V4, &port.to_string()])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The tables without counters (a replace resets them; the rules must not change).
fn stateless_ruleset(lab: &Lab) -> Result<String> {
    run(Some(&lab.gw), &["nft", "-s", "list", "ruleset"])
}

#[test]
fn sigkill_keeps_enforcing_and_a_restart_adopts_within_a_second() -> Result<()> {
    let mut lab = Lab::new(&[CAMERA, LAPTOP])?;
    let (cam, laptop) = (lab.devices[0].clone(), lab.devices[1].clone());
    let config = camera_and_laptop(r#"["telnet"]"#).replace("on_failure = \"open\"", "on_failure = \"closed\"");
    let mut moat = Moat::start(&lab, &config)?;

    // An allowed long-lived connection runs across the crash and the restart.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/echo_client.py").display().to_string();
    let log = lab.dir.join("echo.log");
    let log_s = log.display().to_string();
    lab.spawn(&laptop.ns, &["python3", &script, INTERNET_V4, "7", "9", &log_s], "echo-client")?;
    let client_ends = Instant::now() + Duration::from_millis(9500);
    std::thread::sleep(Duration::from_millis(800));
    let before = moat.status()?;
    let rules_before = stateless_ruleset(&lab)?;

    moat.kill9()?;
    // moat is gone; the kernel keeps enforcing.
    let mut leaked = 0;
    for _ in 0..3 {
        leaked += usize::from(connects(&cam.ns, INTERNET_V4, 23)?);
        leaked += usize::from(banner(&cam.ns, 8023)?.contains("login"));
    }
    leaked += lab.accepted(23, &cam.ipv4) + lab.accepted(2323, &cam.ipv4);
    assert_eq!(leaked, 0, "blocked traffic leaked while moat was dead");
    assert!(connects(&laptop.ns, INTERNET_V4, 80)?, "new allowed connections still work while moat is dead");
    assert_eq!(stateless_ruleset(&lab)?, rules_before, "the tables stay as they were");

    // Restart: adopt, do not rebuild.
    let moat = Moat::start(&lab, &config)?;
    let line = moat.log_text().lines().find(|l| l.contains("enforcing")).unwrap_or_default().to_string();
    assert!(line.contains("adopted=true"), "the restarted moat adopted the pinned classifier: {line}");
    let ms: u64 = line
        .split("ms=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    eprintln!("adoption: {ms} ms");
    assert!(ms < 1000, "adoption took {ms} ms");
    assert_eq!(stateless_ruleset(&lab)?, rules_before, "adoption changed no rule");
    let after = moat.status()?;
    let dropped = |s: &serde_json::Value| device(s, "camera").map(|d| d["dropped_packets"].as_u64().unwrap_or(0));
    assert!(dropped(&after)? > dropped(&before)?, "the pinned counters kept counting through the outage");

    std::thread::sleep(client_ends.saturating_duration_since(Instant::now()));
    let text = std::fs::read_to_string(&log)?;
    assert!(!text.contains("error"), "the established connection never failed:\n{text}");
    let times: Vec<f64> = text.lines().filter_map(|l| l.parse().ok()).collect();
    let max_gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(times.len() >= 50 && max_gap < 1.0, "{} round trips, max gap {max_gap:.2} s", times.len());

    // Taking protection down is explicit.
    drop(moat);
    assert!(!connects(&cam.ns, INTERNET_V4, 23)?, "a clean stop with on_failure = closed keeps enforcing");
    let cfg_path = lab.dir.join("moat.toml");
    let bin = binary()?.display().to_string();
    run(Some(&lab.gw), &[&bin, "stop", "--remove", "--config", &cfg_path.display().to_string()])?;
    assert!(connects(&cam.ns, INTERNET_V4, 23)?, "after `moat stop --remove` nothing is enforced");
    assert!(output(Some(&lab.gw), &["nft", "list", "table", "inet", "moat"])?.status.code() != Some(0));
    Ok(())
}

/// A router that recreates its bridge (a network restart) leaves moat's
/// pinned links attached to an interface that is gone: the next moat
/// replaces them instead of failing to start.
#[test]
fn a_recreated_bridge_gets_fresh_links() -> Result<()> {
    let lab = Lab::new(&[CAMERA, LAPTOP])?;
    let (cam, laptop) = (lab.devices[0].clone(), lab.devices[1].clone());
    let config = camera_and_laptop(r#"["telnet"]"#).replace("on_failure = \"open\"", "on_failure = \"closed\"");
    let mut moat = Moat::start(&lab, &config)?;
    moat.stop()?;
    let recreate = format!(
        "ip link del {lan}
         ip link add {lan} type bridge stp_state 0 mcast_snooping 0
         ip link set {lan} up
         ip addr add {gw}/16 dev {lan}
         ip addr add {gw6}/64 dev {lan} nodad
         for p in $(ls /sys/class/net | grep '^lan'); do ip link set $p master {lan}; done",
        lan = moat_tests::lab::LAN_IF,
        gw = moat_tests::lab::GW_V4,
        gw6 = moat_tests::lab::GW_V6,
    );
    moat_tests::cmd::sh(&lab.gw, &recreate)?;
    assert!(!connects(&laptop.ns, INTERNET_V4, 80)?, "the tables refuse unmarked traffic: closed, not open");

    let moat = Moat::start(&lab, &config)?;
    assert!(moat.log_text().contains("pinned link is stale; attaching afresh"), "{}", moat.log_text());
    assert!(connects(&laptop.ns, INTERNET_V4, 80)?, "the new bridge is classified again");
    assert!(!connects(&cam.ns, INTERNET_V4, 23)?, "and the camera's telnet is blocked again");
    drop(moat);
    let bin = binary()?.display().to_string();
    run(Some(&lab.gw), &[&bin, "stop", "--remove", "--config", &lab.dir.join("moat.toml").display().to_string()])?;
    Ok(())
}

/// systemd integration without systemd: a notify socket of our own, the
/// environment systemd would set, and the messages moat sends.
#[test]
fn tells_systemd_when_it_is_ready_and_pings_the_watchdog() -> Result<()> {
    use std::os::unix::net::UnixDatagram;
    let lab = Lab::new(&[CAMERA])?;
    let sock_path = lab.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path)?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let config = lab.dir.join("moat.toml");
    std::fs::write(&config, lab.fill(&camera_and_laptop(r#"["telnet"]"#)))?;
    let bin = binary()?;
    // WATCHDOG_PID must be moat's own pid: the shell's, kept through exec.
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.gw, "sh", "-c", "export WATCHDOG_PID=$$; exec \"$0\" run --config \"$1\""])
        .arg(&bin)
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut buf = [0u8; 256];
    let started = Instant::now();
    let n = sock.recv(&mut buf)?;
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(first.contains("READY=1"), "first message: {first}");
    // Ready means enforcing: the table is there and telnet is blocked.
    assert!(
        run(Some(&lab.gw), &["nft", "list", "table", "inet", "moat"]).is_ok(),
        "READY after the tables are in place"
    );
    assert!(!connects(&lab.devices[0].ns, INTERNET_V4, 23)?);
    let mut pings = 0;
    while pings < 3 && started.elapsed() < Duration::from_secs(10) {
        let n = sock.recv(&mut buf)?;
        if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
            pings += 1;
        }
    }
    assert_eq!(pings, 3, "the watchdog is pinged at half of WATCHDOG_USEC");
    run(None, &["kill", "-TERM", &child.id().to_string()])?;
    assert!(child.wait()?.success(), "a clean SIGTERM exit");
    Ok(())
}
