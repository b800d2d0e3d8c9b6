//! Footprint: the stripped release binary, and moat's resident memory idle
//! with 100 configured devices and everything on (classifier, nft, MQTT
//! broker over TLS, control API, metrics). Baseline, same run: mosquitto
//! (binary plus the TLS and JSON libraries it loads; idle with moat's TLS
//! certificate), i.e. what the broker alone costs the usual way.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};

use crate::{
    bench::{median, Report},
    cmd,
    lab::Lab,
    moat::{binary, lab_config},
    mqtt::rss_kb,
    Moat,
};

const DEVICES: usize = 100;
const MIB: f64 = 1024.0 * 1024.0;
/// Idle samples, one a second, after the daemon has settled.
const SAMPLES: usize = 5;
const SETTLE: Duration = Duration::from_secs(3);

/// 100 devices across four policies, and the broker on.
fn config() -> String {
    let mut devices = String::new();
    for i in 1..=DEVICES {
        let policy = ["camera", "sensor", "tv", "open"][i % 4];
        devices.push_str(&format!(
            "[[devices]]\nmac = \"02:78:00:00:{:02x}:{:02x}\"\nname = \"dev{i}\"\npolicy = \"{policy}\"\n\n",
            i / 256,
            i % 256
        ));
    }
    lab_config(&format!(
        "[mqtt]\nnames = [\"gateway.lab\"]\n\n[policies.camera]\nblock = [\"telnet\", \"http\"]\ninternet = \"allowlist\"\n\
         allow = [{{ domain = \"*.vendor.example\", ports = [443] }}]\n\n\
         [policies.sensor]\ninternet = \"none\"\n[policies.sensor.mqtt]\npublish = [\"home/#\"]\n\n\
         [policies.tv]\nlan = \"isolated\"\n\n[policies.open]\n\n{devices}"
    ))
}

/// Bytes of a file.
fn size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p).with_context(|| p.display().to_string())?.len())
}

/// The release binary, stripped (the profile strips symbols; this also
/// drops any section the profile keeps), in bytes.
fn stripped_size(dir: &Path) -> Result<u64> {
    let copy = dir.join("moat.stripped");
    std::fs::copy(binary()?, &copy)?;
    cmd::run(None, &["strip", "--strip-all", &copy.display().to_string()])?;
    size(&copy)
}

/// mosquitto's binary plus the non-libc libraries it loads (TLS, JSON, ...).
fn mosquitto_size() -> Result<u64> {
    let bin = cmd::output(None, &["sh", "-c", "command -v mosquitto"])?;
    let bin = String::from_utf8_lossy(&bin.stdout).trim().to_string();
    let ldd = cmd::output(None, &["ldd", &bin])?;
    let mut total = size(Path::new(&bin))?;
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let Some(path) = line.split("=>").nth(1).and_then(|r| r.split_whitespace().next()) else { continue };
        let name = Path::new(path).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let libc = ["libc.so", "libm.so", "ld-linux", "libpthread", "libdl.so", "librt.so", "libgcc_s"];
        if path.starts_with('/') && !libc.iter().any(|l| name.starts_with(l)) {
            total += size(Path::new(path))?;
        }
    }
    Ok(total)
}

/// Median VmRSS of `pid` over the idle samples, bytes.
fn idle_rss(pid: u32) -> f64 {
    std::thread::sleep(SETTLE);
    let samples = (0..SAMPLES)
        .map(|_| {
            std::thread::sleep(Duration::from_secs(1));
            rss_kb(pid) as f64 * 1024.0
        })
        .collect();
    median(samples)
}

pub fn run() -> Result<Report> {
    let mut lab = Lab::new(&["02:77:00:00:00:01"])?;
    let moat = Moat::start(&lab, &config())?;
    let pid = moat.pid().context("moat pid")?;
    let rss = idle_rss(pid);
    let configured = moat.status()?["devices"].as_array().map_or(0, Vec::len).saturating_sub(1);
    anyhow::ensure!(configured == DEVICES, "moat enforces {configured} devices, not {DEVICES}");
    let state = lab.dir.join("state");
    let mosq = crate::bench_mqtt::start_mosquitto(&mut lab, &state, "bench", "a-long-random-password")?;
    let mosq_rss = idle_rss(mosq);
    let (bin, mosq_bin) = (stripped_size(&lab.dir)? as f64, mosquitto_size()? as f64);

    let mut r = Report::new("footprint");
    r.results.insert("binary_bytes".into(), bin);
    r.baseline.insert("binary_bytes".into(), mosq_bin);
    r.results.insert("idle_rss_100_devices_bytes".into(), rss);
    r.baseline.insert("idle_rss_100_devices_bytes".into(), mosq_rss);
    r.unit.insert("binary_bytes".into(), "bytes (baseline: mosquitto + its TLS/JSON libraries)".into());
    r.unit.insert("idle_rss_100_devices_bytes".into(), "bytes (baseline: idle mosquitto with TLS)".into());
    r.at_most("binary_mib", bin / MIB, 10.0, "MiB, stripped release binary with its eBPF object");
    r.at_most("idle_rss_mib", rss / MIB, 25.0, "MiB, idle, 100 devices, broker + API + metrics on");
    r.ratio.insert("binary_vs_mosquitto".into(), bin / mosq_bin);
    r.ratio.insert("idle_rss_vs_mosquitto".into(), rss / mosq_rss);
    Ok(r)
}

pub fn print(r: &Report) {
    let get = |m: &std::collections::BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    println!("footprint                        moat      mosquitto   ratio    target");
    for (k, ratio, target) in [
        ("binary_bytes", "binary_vs_mosquitto", "binary_mib"),
        ("idle_rss_100_devices_bytes", "idle_rss_vs_mosquitto", "idle_rss_mib"),
    ] {
        println!(
            "  {k:<28} {:>6.1} MiB  {:>6.1} MiB  {:>5.2}x  <= {} MiB: {}",
            get(&r.results, k) / MIB,
            get(&r.baseline, k) / MIB,
            get(&r.ratio, ratio),
            get(&r.target, target),
            if r.met.get(target).copied().unwrap_or(false) { "met" } else { "NOT MET" }
        );
    }
}
