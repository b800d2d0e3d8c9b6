//! `scripts/bench policy`: (a) a policy change for one device to enforcement,
//! probed on real traffic; (b) a full apply with 1,000 devices and 10,000 set
//! elements; (c) forwarding throughput with moat's policies vs no rules vs a
//! linear per-device chain (what osMUD-style rule generation gives), all in
//! the same run.

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _, Result};
use moat::kernel::{Kernel, Limits};
use moat_policy::{nft, Config};
use serde_json::Value;

use crate::{
    bench::{median, Report},
    cmd::{self, run},
    lab::{wait_for, Lab, INTERNET_V4},
    moat::{lab_config, Moat},
};

const REAL_MAC: &str = "02:77:00:00:00:01";

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab").join(name).display().to_string()
}

/// `n` devices (the lab's real device first), all with `policy`.
fn devices(n: usize, policy: &str) -> String {
    let mut s = String::new();
    for i in 0..n {
        let mac = if i == 0 {
            REAL_MAC.to_string()
        } else {
            format!("02:78:{:02x}:{:02x}:{:02x}:01", i >> 16, (i >> 8) & 0xff, i & 0xff)
        };
        s.push_str(&format!("[[devices]]\nmac = \"{mac}\"\nname = \"d{i}\"\npolicy = \"{policy}\"\n"));
    }
    s
}

// ---- (a) change → enforcement ----------------------------------------------

/// ms from SIGHUP (moving the device to a policy without internet) to the
/// last probe that still got through; median of `rounds`.
fn change_to_enforcement(rounds: usize) -> Result<f64> {
    let mut lab = Lab::new(&[REAL_MAC])?;
    let dev = lab.devices[0].clone();
    let inet = lab.inet.clone();
    let cfg = |policy: &str| {
        lab_config(&format!("[policies.open]\n\n[policies.locked]\ninternet = \"none\"\n\n{}", devices(1, policy)))
    };
    let moat = Moat::start(&lab, &cfg("open"))?;
    let mut samples = Vec::new();
    for round in 0..rounds {
        let log = lab.dir.join(format!("probe{round}.log"));
        let log_s = log.display().to_string();
        lab.spawn(&inet, &["python3", &script("udp_probe.py"), "recv", "9999", &log_s, "4"], "probe-recv")?;
        wait_for(Duration::from_secs(5), || {
            Ok(std::fs::read_to_string(&log).unwrap_or_default().starts_with("ready"))
        })?;
        lab.spawn(&dev.ns, &["python3", &script("udp_probe.py"), "send", INTERNET_V4, "9999", "3", "1"], "probe-send")?;
        std::thread::sleep(Duration::from_millis(1000));
        std::fs::write(&moat.config, lab.fill(&cfg("locked")))?;
        let reloads_before = moat.status()?["reloads"]["ok"].as_u64().unwrap_or(0);
        let t0 = now();
        cmd::run(None, &["kill", "-HUP", &moat.pid().context("moat not running")?.to_string()])?;
        std::thread::sleep(Duration::from_millis(3200));
        let arrivals: Vec<f64> = std::fs::read_to_string(&log)?.lines().filter_map(|l| l.parse().ok()).collect();
        if arrivals.iter().filter(|t| **t < t0).count() < 100 {
            bail!("the probe did not flow before the change ({} arrivals)", arrivals.len());
        }
        let last = arrivals.iter().copied().fold(t0, f64::max);
        let reloads = moat.status()?["reloads"].clone();
        if reloads["ok"].as_u64().unwrap_or(0) != reloads_before + 1 {
            bail!("the policy change was not applied: {reloads}");
        }
        samples.push((last - t0) * 1000.0);
        moat.reload(&cfg("open"))?;
    }
    Ok(median(samples))
}

// ---- (b) full apply ----------------------------------------------------------

/// A config with `n` devices over 10 allowlist policies of `elements / 10` set elements each.
fn big_config(n: usize, elements: usize) -> Result<Config> {
    let mut t = String::from("[gateway]\nlan = \"br-lan\"\nwan = \"wan0\"\n[classifier]\nmax_devices = 16384\n");
    let per_policy = elements / 10;
    for p in 0..10 {
        t.push_str(&format!("[policies.p{p}]\n"));
        if per_policy > 0 {
            t.push_str("internet = \"allowlist\"\nallow = [\n");
            // 4 ports per CIDR entry.
            for e in 0..per_policy / 4 {
                t.push_str(&format!(
                    "{{ cidr = \"10.{p}.{}.{}/32\", ports = [443, 8443, 8883, 9000] }},\n",
                    e >> 8,
                    e & 0xff
                ));
            }
            t.push_str("]\n");
        }
    }
    for i in 0..n {
        t.push_str(&format!(
            "[[devices]]\nmac = \"02:78:00:{:02x}:{:02x}:01\"\nname = \"d{i}\"\npolicy = \"p{}\"\n",
            i >> 8,
            i & 0xff,
            i % 10
        ));
    }
    Config::parse(Path::new("bench.toml"), &t).map_err(|e| anyhow::anyhow!("{e}"))
}

/// ms to apply `script` with nft in `ns` (median of `rounds`).
fn nft_ms(ns: &str, script: &str, rounds: usize) -> Result<f64> {
    let path = std::env::temp_dir().join(format!("moat-bench-{}.nft", std::process::id()));
    std::fs::write(&path, script)?;
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        run(Some(ns), &["nft", "-f", &path.display().to_string()])?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(&path);
    Ok(median(samples))
}

/// (full apply ms, maps ms, empty-ruleset apply ms, one-device change ms)
fn full_apply() -> Result<(f64, f64, f64, f64)> {
    let ns = format!("moat-{}-bench-apply", std::process::id());
    run(None, &["ip", "netns", "add", &ns])?;
    let result = (|| {
        let big = big_config(1000, 10_000)?;
        let empty = big_config(1, 0)?;
        let base = nft_ms(&ns, &nft::ruleset(&empty), 5)?;
        let full = nft_ms(&ns, &nft::ruleset(&big), 5)?;
        let mut kernel = Kernel::load(Limits::from_config(&big), None)?;
        let mut maps = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            kernel.sync_devices(&big)?;
            maps.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let mut moved = big.clone();
        moved.devices[0].policy = "p9".into();
        let change = nft::device_changes(&big, &moved).context("a device-only change")?;
        // Each round moves the device there and back (two transactions).
        let back = nft::device_changes(&moved, &big).context("and back")?;
        let one = nft_ms(&ns, &format!("{change}{back}"), 1)? / 2.0;
        Ok((full, median(maps), base, one))
    })();
    let _ = cmd::output(None, &["ip", "netns", "del", &ns]);
    result
}

// ---- (c) forwarding ---------------------------------------------------------

/// Runs of each iperf3 measurement (the median is reported).
const IPERF_RUNS: usize = 3;

/// (TCP Mbit/s, UDP 64-byte packets/s received), medians of IPERF_RUNS.
fn iperf(lab: &Lab) -> Result<(f64, f64)> {
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    for _ in 0..IPERF_RUNS {
        let (t, u) = iperf_once(lab)?;
        tcp.push(t);
        udp.push(u);
    }
    Ok((median(tcp), median(udp)))
}

/// One TCP and one UDP run from the device to the internet host.
fn iperf_once(lab: &Lab) -> Result<(f64, f64)> {
    let ns = &lab.devices[0].ns;
    let tcp = run(Some(ns), &["iperf3", "-c", INTERNET_V4, "-t", "2", "-J"])?;
    let tcp: Value = serde_json::from_str(&tcp)?;
    let mbps = tcp["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6;
    let udp = run(Some(ns), &["iperf3", "-c", INTERNET_V4, "-u", "-b", "300M", "-l", "64", "-t", "2", "-J"])?;
    let udp: Value = serde_json::from_str(&udp)?;
    let sum = &udp["end"]["sum"];
    let received = sum["packets"].as_f64().unwrap_or(0.0) - sum["lost_packets"].as_f64().unwrap_or(0.0);
    let secs = sum["seconds"].as_f64().unwrap_or(2.0).max(0.001);
    Ok((mbps, received / secs))
}

/// The osMUD-style alternative: one rule per device, the tested device last,
/// evaluated for every packet.
fn linear_chain(n: usize) -> String {
    let mut s = String::from(
        "table inet linear {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n",
    );
    s.push_str("\t\tiifname \"wan0\" accept\n");
    for i in 1..n {
        s.push_str(&format!(
            "\t\tiifname \"br-lan\" ether saddr 02:78:{:02x}:{:02x}:{:02x}:01 accept\n",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        ));
    }
    s.push_str(&format!("\t\tiifname \"br-lan\" ether saddr {REAL_MAC} accept\n\t}}\n}}\n"));
    s
}

fn forwarding(sizes: &[usize]) -> Result<Vec<(String, f64, f64)>> {
    let mut lab = Lab::new(&[REAL_MAC])?;
    let inet = lab.inet.clone();
    lab.spawn(&inet, &["iperf3", "-s", "-B", INTERNET_V4], "iperf-server")?;
    std::thread::sleep(Duration::from_millis(500));
    let mut out = Vec::new();
    let (tcp, udp) = iperf(&lab)?;
    out.push(("no_rules".to_string(), tcp, udp));
    for &n in sizes {
        let cfg =
            lab_config(&format!("[classifier]\nmax_devices = 16384\n\n[policies.open]\n\n{}", devices(n, "open")));
        let mut moat = Moat::start(&lab, &cfg)?;
        let (tcp, udp) = iperf(&lab)?;
        moat.stop()?;
        out.push((format!("moat_{n}"), tcp, udp));

        let path = lab.dir.join("linear.nft");
        std::fs::write(&path, linear_chain(n))?;
        run(Some(&lab.gw), &["nft", "-f", &path.display().to_string()])?;
        let (tcp, udp) = iperf(&lab)?;
        run(Some(&lab.gw), &["nft", "delete", "table", "inet", "linear"])?;
        out.push((format!("linear_{n}"), tcp, udp));
    }
    Ok(out)
}

pub fn run_all() -> Result<Report> {
    let mut r = Report::new("policy");
    let idle = {
        let ns = format!("moat-{}-bench-idle", std::process::id());
        run(None, &["ip", "netns", "add", &ns])?;
        let ms = nft_ms(&ns, "table inet probe\n", 5);
        let _ = cmd::output(None, &["ip", "netns", "del", &ns]);
        ms?
    };
    r.baseline.insert("nft_trivial_transaction_ms".into(), idle);
    let change = change_to_enforcement(3)?;
    r.results.insert("change_to_enforcement_ms".into(), change);
    r.at_most("change_to_enforcement_ms", change, 10.0, "ms (SIGHUP to the last probe through)");
    r.ratio.insert("change_vs_trivial_nft".into(), change / idle.max(0.001));

    let (full, maps, base, one) = full_apply()?;
    r.results.insert("full_apply_nft_ms".into(), full);
    r.results.insert("full_apply_maps_ms".into(), maps);
    r.results.insert("one_device_change_nft_ms".into(), one);
    r.baseline.insert("empty_ruleset_apply_ms".into(), base);
    r.at_most(
        "full_apply_1000_devices_10000_elements_ms",
        full + maps,
        200.0,
        "ms (nft transaction + classifier maps)",
    );
    r.ratio.insert("full_apply_vs_empty".into(), full / base.max(0.001));

    let fwd = forwarding(&[10, 1000, 10_000])?;
    let get =
        |name: &str| fwd.iter().find(|(n, _, _)| n == name).map(|(_, t, u)| (*t, *u)).unwrap_or((f64::NAN, f64::NAN));
    let none = get("no_rules");
    r.baseline.insert("no_rules_tcp_mbps".into(), none.0);
    r.baseline.insert("no_rules_udp_pps".into(), none.1);
    for (name, tcp, udp) in &fwd {
        r.results.insert(format!("{name}_tcp_mbps"), *tcp);
        r.results.insert(format!("{name}_udp_pps"), *udp);
    }
    let (m1000, m10, m10k) = (get("moat_1000"), get("moat_10"), get("moat_10000"));
    let (l10, l10k) = (get("linear_10"), get("linear_10000"));
    r.ratio.insert("moat_1000_vs_no_rules_tcp".into(), m1000.0 / none.0);
    r.ratio.insert("moat_1000_vs_no_rules_udp".into(), m1000.1 / none.1);
    r.target.insert("moat_1000_vs_no_rules_tcp".into(), 0.9);
    r.target.insert("moat_1000_vs_no_rules_udp".into(), 0.9);
    r.met.insert("moat_1000_vs_no_rules_tcp".into(), m1000.0 / none.0 >= 0.9);
    r.met.insert("moat_1000_vs_no_rules_udp".into(), m1000.1 / none.1 >= 0.9);
    r.ratio.insert("moat_10000_vs_10_udp".into(), m10k.1 / m10.1);
    r.ratio.insert("linear_10000_vs_10_udp".into(), l10k.1 / l10.1);
    r.ratio.insert("moat_vs_linear_10000_udp".into(), m10k.1 / l10k.1);
    for k in r.results.keys().cloned().collect::<Vec<_>>() {
        let unit = if k.ends_with("_ms") {
            "ms"
        } else if k.ends_with("_mbps") {
            "Mbit/s"
        } else {
            "packets/s"
        };
        r.unit.insert(k, unit.into());
    }
    Ok(r)
}

pub fn print(r: &Report) {
    println!("policy benchmark (lab gateway, this machine, same run)");
    for (title, map) in [("baseline", &r.baseline), ("results", &r.results), ("ratios", &r.ratio)] {
        println!("  {title}:");
        for (k, v) in map {
            let met = r.met.get(k).map(|m| if *m { "  met" } else { "  NOT met" }).unwrap_or("");
            let target = r.target.get(k).map(|t| format!(" (target {t})")).unwrap_or_default();
            println!("    {k:<48} {v:>14.2}{target}{met}");
        }
    }
}
