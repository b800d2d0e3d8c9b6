//! `scripts/demo`: a gateway with three devices (camera, thermostat, an unknown
//! device), moat enforcing the bundled default config, a little real traffic
//! from each, and a summary of what moat counted and blocked.

use std::{path::Path, process::ExitCode};

use anyhow::{Context as _, Result};
use moat_tests::{
    cmd::output,
    lab::{Lab, INTERNET_V4},
    moat::{counter, device, traffic},
    Moat,
};
use serde_json::Value;

const DEVICES: [(&str, &str); 3] =
    [("camera", "02:77:00:00:00:01"), ("thermostat", "02:77:00:00:00:02"), ("unknown", "02:77:00:00:00:99")];

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
    // The bundled config as shipped; only the run and pin directories move into the lab.
    let config = config
        .replace("run_dir = \"/run/moat\"", "run_dir = \"@RUN_DIR@\"")
        .replace("pin_dir = \"/sys/fs/bpf/moat\"", "pin_dir = \"@PIN_DIR@\"\nstate_dir = \"@STATE_DIR@\"");
    let moat = Moat::start(&lab, &config)?;
    println!("moat demo: a gateway with {} devices, moat enforcing packaging/moat.example.toml", DEVICES.len());
    println!("\ntraffic (real tools in each device's network namespace, to a server in the lab's 'internet'):");
    let web = format!("http://{INTERNET_V4}/");
    let tls_1883 = format!("https://{INTERNET_V4}:1883/");
    for (i, (name, _)) in DEVICES.iter().enumerate() {
        let ns = &lab.devices[i].ns;
        attempt(name, "web page (http)", &["curl", "-s", "-o", "/dev/null", "--max-time", "3", &web], ns)?;
        attempt(name, "TLS on port 1883", &["curl", "-sk", "-o", "/dev/null", "--max-time", "3", &tls_1883], ns)?;
        attempt(name, "ping x3", &["ping", "-c", "3", "-i", "0.2", "-W", "1", "-q", INTERNET_V4], ns)?;
        attempt(name, "telnet to port 23", &["nc", "-z", "-w", "2", INTERNET_V4, "23"], ns)?;
        let banner = output(Some(ns), &["nc", "-w", "2", INTERNET_V4, "8023"])?;
        let got = String::from_utf8_lossy(&banner.stdout).contains("login:");
        println!(
            "  {name:<11} {:<32} {}",
            "telnet hidden on port 8023",
            if got { "login prompt received" } else { "BLOCKED (nothing received)" }
        );
    }
    let cam = &lab.devices[0];
    let inbound = format!("internet -> camera {}:80", cam.ipv4);
    attempt("internet", &inbound, &["nc", "-z", "-w", "2", &cam.ipv4, "80"], &lab.inet)?;

    let status = moat.status()?;
    summary(&status, &lab)?;
    steer(&moat, &lab, &web)
}

/// The CLI on the running daemon: the device table, then approving the
/// unknown device, whose web traffic then passes.
fn steer(moat: &Moat, lab: &Lab, web: &str) -> Result<()> {
    let show = |args: &[&str]| -> Result<()> {
        let run = moat.cli(args)?;
        let quoted: Vec<String> =
            args.iter().map(|a| if a.contains(' ') { format!("{a:?}") } else { a.to_string() }).collect();
        println!("\n$ moat {}", quoted.join(" "));
        for line in run.stdout.lines().chain(run.stderr.lines()) {
            println!("  {line}");
        }
        Ok(())
    };
    show(&["devices"])?;
    let (_, mac) = DEVICES[2];
    show(&["device", mac, "approve", "--policy", "thermostat", "--name", "printer"])?;
    let ns = &lab.devices[2].ns;
    attempt(
        "printer",
        "web page (http), once approved",
        &["curl", "-s", "-o", "/dev/null", "--max-time", "3", web],
        ns,
    )?;
    show(&["device", "printer", "quarantine", "--reason", "demo: cut off again"])?;
    attempt("printer", "web page (http), quarantined", &["curl", "-s", "-o", "/dev/null", "--max-time", "3", web], ns)?;
    Ok(())
}

fn attempt(who: &str, what: &str, args: &[&str], ns: &str) -> Result<()> {
    let ok = output(Some(ns), args)?.status.success();
    println!("  {who:<11} {what:<32} {}", if ok { "ok" } else { "BLOCKED" });
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
    println!("\nwhat moat counted (per device; out = sent by the device, in = sent to it):");
    println!(
        "  {:<11} {:<17} {:<11} {:>9} {:>9} {:>7}  classes seen",
        "device", "mac", "policy", "out", "in", "dropped"
    );
    for (i, (name, mac)) in DEVICES.iter().enumerate() {
        // Listed devices report under their name; the unlisted one under "unknown".
        let d = device(status, name)?;
        let classes: Vec<&str> =
            d["classes"].as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
        println!(
            "  {name:<11} {mac:<17} {:<11} {:>9} {:>9} {:>7}  {}",
            d["policy"].as_str().unwrap_or("?"),
            human(traffic(d, "from_device", "bytes")),
            human(traffic(d, "to_device", "bytes")),
            counter(d, "dropped_packets"),
            classes.join(" "),
        );
        if let Some(m) = d["dropped_by_class"].as_object() {
            for (class, n) in m {
                println!(
                    "  {:<11} dropped {n} {class} packet(s): policy '{}' blocks {class}",
                    "",
                    d["policy"].as_str().unwrap_or("?")
                );
            }
        }
        let ip = &lab.devices[i].ipv4;
        let telnet = lab.accepted(23, ip) + lab.accepted(2323, ip);
        println!("  {:<11} internet saw from it: {} http, {telnet} telnet/23 connections", "", lab.accepted(80, ip));
    }
    println!("\nrecent events (from the classifier's ring buffer):");
    let events = status["recent_events"].as_array().cloned().unwrap_or_default();
    for e in events.iter().filter(|e| e["kind"] != "new_flow").take(12) {
        let flow = &e["flow"];
        let to = if flow.is_null() {
            String::new()
        } else {
            format!(" {}:{}", flow["remote"].as_str().unwrap_or("?"), flow["remote_port"])
        };
        println!(
            "  {:<11} {:<17} {:<7}{}",
            e["kind"].as_str().unwrap_or("?"),
            e["mac"].as_str().unwrap_or("?"),
            e["class"].as_str().unwrap_or("?"),
            to
        );
    }
    println!("\nflows tracked: {} (by class {})", status["flows"]["active"], status["flows"]["by_class"]);
    println!("drops by reason: {}", status["drop_reasons"]);
    println!("classifier health: {}", status["health"]);
    Ok(())
}
