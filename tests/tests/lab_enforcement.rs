//! The real moat binary in a lab gateway, enforcing on real traffic from
//! device namespaces to a real server in the "internet" namespace.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use anyhow::Result;
use moat_tests::{
    cmd::{output, run, sh},
    lab::{connects, Lab, INTERNET_V4, INTERNET_V6},
    moat::{camera_and_laptop, counter, device, traffic},
    Moat,
};

const CAMERA: &str = "02:77:00:00:00:01";
const LAPTOP: &str = "02:77:00:00:00:02";
const STRANGER: &str = "02:77:00:00:00:63";

const CAMERA_BLOCKS: &str = r#"["telnet"]"#;

/// Counts SYNs a device sends to telnet ports, with nft in the device's own
/// namespace: the independent truth the classifier's drop counter must match.
fn count_telnet_syns(ns: &str) -> Result<()> {
    sh(
        ns,
        "nft add table inet probe
            nft add chain inet probe out '{ type filter hook output priority 0; }'
            nft add rule inet probe out tcp dport '{ 23, 2323 }' 'tcp flags & (syn|ack) == syn' counter",
    )?;
    Ok(())
}

fn telnet_syns_sent(ns: &str) -> Result<u64> {
    let listing = run(Some(ns), &["nft", "list", "chain", "inet", "probe", "out"])?;
    let n = listing
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    Ok(n)
}

#[test]
fn telnet_blocked_per_device_policy_on_real_traffic() -> Result<()> {
    let lab = Lab::new(&[CAMERA, LAPTOP, STRANGER])?;
    let (cam, laptop, stranger) = (lab.devices[0].clone(), lab.devices[1].clone(), lab.devices[2].clone());
    for d in [&cam, &stranger] {
        count_telnet_syns(&d.ns)?;
    }
    let mut moat = Moat::start(&lab, &camera_and_laptop(CAMERA_BLOCKS))?;

    // The camera reaches the web but not telnet, on either port or family.
    let body = run(Some(&cam.ns), &["curl", "-sS", "--max-time", "5", &format!("http://{INTERNET_V4}/")])?;
    assert_eq!(body, "moat-lab\n");
    assert!(connects(&cam.ns, INTERNET_V6, 80)?, "camera reaches http over IPv6");
    assert!(!connects(&cam.ns, INTERNET_V4, 23)?, "camera telnet/23 must be blocked");
    assert!(!connects(&cam.ns, INTERNET_V4, 2323)?, "camera telnet/2323 must be blocked");
    assert!(!connects(&cam.ns, INTERNET_V6, 23)?, "camera IPv6 telnet must be blocked");
    // The laptop's policy allows telnet.
    assert!(connects(&laptop.ns, INTERNET_V4, 23)?, "laptop reaches telnet");
    assert!(connects(&laptop.ns, INTERNET_V6, 2323)?, "laptop reaches telnet over IPv6");
    // An unlisted device gets the built-in unknown policy: telnet blocked.
    // An unlisted device gets the built-in quarantine policy.
    assert!(!connects(&stranger.ns, INTERNET_V4, 80)?, "quarantined unknown device: no http");
    assert!(!connects(&stranger.ns, INTERNET_V4, 23)?, "quarantined unknown device: no telnet");

    // What the internet saw.
    assert_eq!(lab.accepted(80, &cam.ipv4), 1);
    assert_eq!(lab.accepted(23, &cam.ipv4) + lab.accepted(2323, &cam.ipv4), 0);
    assert_eq!(lab.accepted(23, &cam.ipv6) + lab.accepted(2323, &cam.ipv6), 0);
    assert_eq!(lab.accepted(23, &laptop.ipv4), 1);
    assert_eq!(lab.accepted(2323, &laptop.ipv6), 1);
    assert_eq!(lab.accepted(23, &stranger.ipv4), 0);

    // What moat counted: every telnet SYN the camera sent was dropped and
    // attributed to it, none of the laptop's.
    let status = moat.status()?;
    let cam_syns = telnet_syns_sent(&cam.ns)?;
    assert!(cam_syns >= 3, "camera sent at least one SYN per attempt, got {cam_syns}");
    let camera = device(&status, "camera")?;
    assert_eq!(camera["dropped_by_class"]["telnet"].as_u64(), Some(cam_syns), "{status}");
    assert_eq!(counter(camera, "dropped_packets"), cam_syns);
    assert!(traffic(camera, "from_device", "packets") > cam_syns, "camera's allowed packets are counted too");
    assert!(traffic(camera, "to_device", "packets") > 0, "and what it received");
    let lap = device(&status, "laptop")?;
    assert_eq!(counter(lap, "dropped_packets"), 0);
    assert!(traffic(lap, "from_device", "packets") >= 6, "laptop's two connections were counted");
    let unknown = device(&status, "unknown")?;
    let stranger_syns = telnet_syns_sent(&stranger.ns)?;
    assert!(counter(unknown, "dropped_packets") > stranger_syns, "its http and telnet SYNs were all dropped");
    assert_eq!(unknown["dropped_by_reason"]["quarantine"], counter(unknown, "dropped_packets"));
    assert_eq!(lab.accepted(80, &stranger.ipv4), 0);
    assert_eq!(status["drop_reasons"]["blocked_class"].as_u64(), Some(cam_syns));

    // A clean stop removes the table and detaches the classifier: telnet
    // from the camera works again.
    let (exit, _) = moat.stop()?;
    assert!(exit.success(), "moat exit: {exit}\n{}", moat.log_text());
    let table = output(Some(&lab.gw), &["nft", "list", "table", "inet", "moat"])?;
    assert!(!table.status.success(), "table inet moat must be gone after stop");
    assert!(connects(&cam.ns, INTERNET_V4, 23)?, "after stop nothing is enforced");
    Ok(())
}

#[test]
fn counters_match_the_packets_a_device_sent() -> Result<()> {
    let lab = Lab::new(&[CAMERA])?;
    let cam = lab.devices[0].clone();
    // Nothing but our pings may leave the device: no IPv6 (ND, MLD), no ARP.
    sh(&cam.ns, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.eth0.disable_ipv6=1")?;
    lab.static_neighbours(&cam)?;
    let moat = Moat::start(&lab, &camera_and_laptop(CAMERA_BLOCKS))?;

    let before = moat.status()?;
    let tx_before = lab.tx_packets(&cam)?;
    run(Some(&cam.ns), &["ping", "-c", "7", "-i", "0.05", "-s", "100", "-q", INTERNET_V4])?;
    let tx_after = lab.tx_packets(&cam)?;
    let after = moat.status()?;

    let sent = tx_after - tx_before;
    assert_eq!(sent, 7, "the device sent exactly the 7 echo requests");
    let (b, a) = (device(&before, "camera")?, device(&after, "camera")?);
    let out = |d: &serde_json::Value, what| traffic(d, "from_device", what);
    assert_eq!(out(a, "packets") - out(b, "packets"), sent);
    // 14 Ethernet + 20 IPv4 + 8 ICMP + 100 payload.
    assert_eq!(out(a, "bytes") - out(b, "bytes"), sent * 142);
    // The replies went through the egress classifier.
    let back = |d: &serde_json::Value| traffic(d, "to_device", "packets");
    assert_eq!(back(a) - back(b), sent, "every echo reply was counted on its way to the device");
    assert_eq!(counter(a, "dropped_packets"), 0);
    Ok(())
}

#[test]
fn wan_initiated_connections_are_dropped() -> Result<()> {
    let mut lab = Lab::new(&[LAPTOP])?;
    let laptop = lab.devices[0].clone();
    let inet = lab.inet.clone();
    lab.spawn(&laptop.ns, &["nc", "-lk", "8080"], "listener")?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(connects(&inet, &laptop.ipv4, 8080)?, "without moat the internet reaches the device");
    let _moat = Moat::start(&lab, &camera_and_laptop(CAMERA_BLOCKS))?;
    assert!(!connects(&inet, &laptop.ipv4, 8080)?, "with moat WAN-initiated connections are dropped");
    assert!(!connects(&inet, &laptop.ipv6, 8080)?, "also over IPv6");
    // Connections the device starts still work, replies included.
    assert!(connects(&laptop.ns, INTERNET_V4, 80)?, "outbound still works");
    let rules = run(Some(&lab.gw), &["nft", "list", "table", "inet", "moat"])?;
    let wan_rule = rules.lines().find(|l| l.contains("wan-inbound")).unwrap_or_default();
    assert!(!wan_rule.contains("packets 0 "), "the wan-inbound rule counted the drops: {wan_rule}");
    Ok(())
}
