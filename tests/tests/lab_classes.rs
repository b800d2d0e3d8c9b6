//! Payload classification on real traffic: protocols recognised on ports that
//! are not theirs, verdicts taken on the class, events reaching the daemon.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use anyhow::Result;
use moat_tests::{
    cmd::{output, run},
    lab::{Lab, INTERNET_V4},
    moat::{camera_and_laptop, device},
    Moat,
};
use serde_json::Value;

const CAMERA: &str = "02:77:00:00:00:01";
const LAPTOP: &str = "02:77:00:00:00:02";

const CAMERA_BLOCKS: &str = r#"["telnet", "mqtt"]"#;

/// What a device receives from host:port within 3 s of connecting.
fn banner(ns: &str, port: u16) -> Result<String> {
    let out = output(Some(ns), &["nc", "-w", "3", INTERNET_V4, &port.to_string()])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn events<'a>(status: &'a Value, kind: &str, remote_port: u64) -> Vec<&'a Value> {
    status["recent_events"]
        .as_array()
        .map(|all| all.iter().filter(|e| e["kind"] == kind && e["flow"]["remote_port"] == remote_port).collect())
        .unwrap_or_default()
}

#[test]
fn telnet_on_8023_is_blocked_and_tls_on_1883_passes() -> Result<()> {
    let lab = Lab::new(&[CAMERA, LAPTOP])?;
    let (cam, laptop) = (lab.devices[0].clone(), lab.devices[1].clone());
    let moat = Moat::start(&lab, &camera_and_laptop(CAMERA_BLOCKS))?;

    // Telnet on a port no port-based filter knows: the server's negotiation
    // never reaches the camera; the laptop (open policy) gets the banner.
    assert_eq!(banner(&cam.ns, 8023)?, "", "camera must receive nothing from a telnet server on 8023");
    assert!(banner(&laptop.ns, 8023)?.contains("login:"), "laptop reaches telnet on 8023");
    // TLS on the MQTT port is TLS, and passes for the camera that blocks mqtt.
    let body = run(Some(&cam.ns), &["curl", "-sSk", "--max-time", "5", &format!("https://{INTERNET_V4}:1883/")])?;
    assert_eq!(body, "moat-lab\n", "TLS on 1883 passes");

    let status = moat.status()?;
    let blocked = events(&status, "blocked", 8023);
    assert_eq!(blocked.len(), 1, "one blocked event for the camera's 8023 flow: {status:#}");
    let b = blocked[0];
    assert_eq!((b["class"].as_str(), b["reason"].as_str()), (Some("telnet"), Some("blocked_class")));
    assert_eq!(
        (b["mac"].as_str(), b["device_id"].as_u64(), b["direction"].as_str()),
        (Some(CAMERA), Some(1), Some("to_device"))
    );
    assert_eq!(
        (b["flow"]["lan"].as_str(), b["flow"]["remote"].as_str(), b["flow"]["proto"].as_u64()),
        (Some(cam.ipv4.as_str()), Some(INTERNET_V4), Some(6))
    );

    let tls = events(&status, "new_flow", 1883);
    assert!(
        tls.iter().any(|e| e["class"] == "tls" && e["mac"] == CAMERA),
        "new_flow tls on 1883 from the camera: {tls:?}"
    );
    let lap_telnet = events(&status, "new_flow", 8023);
    assert!(lap_telnet.iter().any(|e| e["class"] == "telnet" && e["mac"] == LAPTOP), "{lap_telnet:?}");

    let camera = device(&status, "camera")?;
    assert!(camera["dropped_by_class"]["telnet"].as_u64().unwrap_or(0) >= 1);
    assert!(
        camera["classes"]["tls"]["from_device"]["packets"].as_u64().unwrap_or(0) >= 3,
        "TLS traffic counted under tls"
    );
    let lap = device(&status, "laptop")?;
    assert!(lap["classes"]["telnet"]["to_device"]["packets"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(lap["dropped_packets"].as_u64(), Some(0));
    assert!(status["flows"]["by_class"]["tls"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(status["health"]["ringbuf_full"].as_u64(), Some(0));
    assert_eq!(status["health"]["tail_call_failed"].as_u64(), Some(0));
    Ok(())
}
