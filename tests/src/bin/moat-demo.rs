//! `scripts/demo`: a gateway with three devices (camera, thermostat, an unknown
//! device), moat enforcing the bundled default config, a little real traffic
//! from each, and a summary of what moat counted and blocked.

use std::{path::Path, process::ExitCode};

use anyhow::{Context as _, Result};
use moat_tests::{
    cmd::output,
    lab::{Lab, INTERNET_V4},
    moat::{counter, device},
    Moat,
};
use serde_json::Value;

const DEVICES: [(&str, &str); 3] = [
    ("camera", "02:77:00:00:00:01"),
    ("thermostat", "02:77:00:00:00:02"),
    ("unknown", "02:77:00:00:00:99"),
];

fn main() -> ExitCode {
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<()> {
    let config_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/moat.example.toml");
    let config = std::fs::read_to_string(&config_path).context("reading the bundled config")?;
    let macs: Vec<&str> = DEVICES.iter().map(|(_, m)| *m).collect();
    let lab = Lab::new(&macs)?;
    // The bundled config as shipped; only the run directory moves into the lab.
    let config = config.replace("run_dir = \"/run/moat\"", "run_dir = \"@RUN_DIR@\"");
    let moat = Moat::start(&lab, &config)?;
    println!(
        "moat demo: a gateway with {} devices, moat enforcing packaging/moat.example.toml",
        DEVICES.len()
    );
    println!("\ntraffic (real tools in each device's network namespace):");
    for (i, (name, _)) in DEVICES.iter().enumerate() {
        let ns = &lab.devices[i].ns;
        attempt(
            name,
            "GET http://198.51.100.10/",
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "3",
                "http://198.51.100.10/",
            ],
            ns,
        )?;
        attempt(
            name,
            "ping x3",
            &["ping", "-c", "3", "-i", "0.2", "-W", "1", "-q", INTERNET_V4],
            ns,
        )?;
        for port in ["23", "2323"] {
            attempt(
                name,
                &format!("telnet {INTERNET_V4}:{port}"),
                &["nc", "-z", "-w", "2", INTERNET_V4, port],
                ns,
            )?;
        }
    }
    let cam = &lab.devices[0];
    attempt(
        "internet",
        &format!("connect to camera {}:80", cam.ipv4),
        &["nc", "-z", "-w", "2", &cam.ipv4, "80"],
        &lab.inet,
    )?;

    let status = moat.status()?;
    summary(&status, &lab)?;
    Ok(())
}

fn attempt(who: &str, what: &str, args: &[&str], ns: &str) -> Result<()> {
    let ok = output(Some(ns), args)?.status.success();
    println!(
        "  {who:<11} {what:<32} {}",
        if ok { "ok" } else { "BLOCKED / failed" }
    );
    Ok(())
}

fn human(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn summary(status: &Value, lab: &Lab) -> Result<()> {
    println!("\nwhat moat counted (LAN ingress, per device):");
    println!(
        "  {:<11} {:<17} {:<11} {:>7} {:>10} {:>8}  why dropped",
        "device", "mac", "policy", "packets", "bytes", "dropped"
    );
    for (i, (name, mac)) in DEVICES.iter().enumerate() {
        // Listed devices report under their name; the unlisted one under "unknown".
        let d = device(status, name)?;
        let why = match d["dropped_by_class"].as_object() {
            Some(m) if !m.is_empty() => m
                .iter()
                .map(|(class, n)| {
                    format!(
                        "{class} x{n} (policy '{}' blocks {class})",
                        d["policy"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => "-".into(),
        };
        println!(
            "  {name:<11} {mac:<17} {:<11} {:>7} {:>10} {:>8}  {why}",
            d["policy"].as_str().unwrap_or("?"),
            counter(d, "packets"),
            human(counter(d, "bytes")),
            counter(d, "dropped_packets"),
        );
        let ip = &lab.devices[i].ipv4;
        let telnet = lab.accepted(23, ip) + lab.accepted(2323, ip);
        println!(
            "  {:<11} internet host saw from it: {} http, {telnet} telnet connections",
            "",
            lab.accepted(80, ip)
        );
    }
    println!("\ndrops by reason: {}", status["drop_reasons"]);
    println!("classifier health: {}", status["health"]);
    Ok(())
}
