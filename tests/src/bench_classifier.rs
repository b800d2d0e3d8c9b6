//! `scripts/bench classifier`: per-packet cost of the classifier under
//! BPF_PROG_TEST_RUN, against a pass-only program built and loaded the same
//! way, measured in the same run.

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::programs::{TestRun as _, TestRunOptions};
use moat::kernel::{Kernel, Limits};
use moat_common::{
    maps::{PROG_INGRESS, PROG_PASS},
    FlowKey, FlowValue,
};
use moat_policy::Config;

use crate::{
    bench::{median, Report},
    frames::{flow_frame, Net, Way, TCP},
};

/// Repetitions per BPF_PROG_TEST_RUN call, and calls per measurement.
const REPEAT: u32 = 200_000;
const RUNS: usize = 9;
/// Single-shot runs for first-packet measurements.
const SINGLE_RUNS: u16 = 4000;
const FLOW_TABLE: u32 = 65536;
const TLS_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0];

fn mac(i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x02, 0x77, b[0], b[1], b[2], b[3]]
}

fn config(devices: u32) -> Result<Config> {
    let mut t = format!(
        "[gateway]\nlan = \"br-lan\"\nwan = \"wan0\"\n[classifier]\nmax_devices = 16384\nflow_table_size = {FLOW_TABLE}\n\
         [policies.camera]\nblock = [\"telnet\", \"mqtt\"]\n"
    );
    for i in 1..=devices {
        let m = mac(i).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        t.push_str(&format!("[[devices]]\nmac = \"{m}\"\nname = \"d{i}\"\npolicy = \"camera\"\n"));
    }
    Config::parse(Path::new("bench.toml"), &t).map_err(|e| anyhow::anyhow!("{e}"))
}

fn load(devices: u32) -> Result<Kernel> {
    let cfg = config(devices)?;
    let mut k = Kernel::load(Limits::from_config(&cfg), None).context("loading the classifier")?;
    k.sync_devices(&cfg)?;
    Ok(k)
}

/// Average ns per run of `prog` on `frame` (kernel-measured), median of RUNS calls.
fn per_packet(k: &mut Kernel, prog: &'static str, frame: &[u8], repeat: u32) -> Result<f64> {
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let p = k.program(prog)?;
        let r = p.test_run(TestRunOptions { data_in: Some(frame), repeat, ..Default::default() })?;
        samples.push(r.duration.as_nanos() as f64);
    }
    Ok(median(samples))
}

/// Fills the flow table with synthetic flows of other devices.
fn fill_flows(k: &mut Kernel, n: u32) -> Result<()> {
    for i in 0..n {
        let b = i.to_be_bytes();
        let mut key = FlowKey { lan_port: 30000, remote_port: 443, proto: 6, family: 4, ..Default::default() };
        key.lan_addr[..4].copy_from_slice(&[10, 78, b[2], b[3]]);
        key.remote_addr[..4].copy_from_slice(&[203, 0, b[1], b[0]]);
        k.insert_flow(&key, &FlowValue { device_id: 2, class: 1, flags: 1, ..Default::default() })?;
    }
    Ok(())
}

/// Median single-run cost of the first payload packet of fresh flows, and of
/// the same established flow measured the same way.
fn first_vs_established(k: &mut Kernel, dev: [u8; 6]) -> Result<(f64, f64)> {
    let mut ring = k.take_events().context("event ring")?;
    let mut first = Vec::new();
    for port in 0..SINGLE_RUNS {
        let f = flow_frame(dev, Way::Out, Net::V4, TCP, 20000 + port, 443, TLS_HELLO);
        let p = k.program(PROG_INGRESS)?;
        let r = p.test_run(TestRunOptions { data_in: Some(&f), repeat: 1, ..Default::default() })?;
        first.push(r.duration.as_nanos() as f64);
        while ring.next().is_some() {} // keep the ring from filling (its full path is cheaper)
    }
    let f = flow_frame(dev, Way::Out, Net::V4, TCP, 20000, 443, b"\x17\x03\x03\x00\x10data");
    let mut est = Vec::new();
    for _ in 0..SINGLE_RUNS {
        let p = k.program(PROG_INGRESS)?;
        let r = p.test_run(TestRunOptions { data_in: Some(&f), repeat: 1, ..Default::default() })?;
        est.push(r.duration.as_nanos() as f64);
    }
    Ok((median(first), median(est)))
}

pub fn run() -> Result<Report> {
    let dev = mac(5);
    // An established TLS flow's data packet from device 5.
    let hello = flow_frame(dev, Way::Out, Net::V4, TCP, 40000, 443, TLS_HELLO);
    let data = flow_frame(dev, Way::Out, Net::V4, TCP, 40000, 443, b"\x17\x03\x03\x00\x10application-data");

    let mut small = load(10)?;
    let pass = per_packet(&mut small, PROG_PASS, &data, REPEAT)?;
    per_packet(&mut small, PROG_INGRESS, &hello, 1)?; // classify the flow once
    let est_10 = per_packet(&mut small, PROG_INGRESS, &data, REPEAT)?;
    let (first, est_single) = first_vs_established(&mut small, dev)?;
    drop(small);

    let mut big = load(10_000)?;
    fill_flows(&mut big, FLOW_TABLE - 1)?;
    per_packet(&mut big, PROG_INGRESS, &hello, 1)?;
    let pass_big = per_packet(&mut big, PROG_PASS, &data, REPEAT)?;
    let est_10k = per_packet(&mut big, PROG_INGRESS, &data, REPEAT)?;
    let flows = big.flow_count();

    let mut r = Report::new("classifier");
    let ns = |r: &mut Report, k: &str, v: f64| {
        r.results.insert(k.into(), v);
        r.unit.insert(k.into(), "ns/packet".into());
    };
    r.baseline.insert("pass_only_ns".into(), pass);
    r.baseline.insert("pass_only_10k_run_ns".into(), pass_big);
    r.unit.insert("pass_only_ns".into(), "ns/packet".into());
    ns(&mut r, "established_10_devices_ns", est_10);
    ns(&mut r, "established_10000_devices_full_table_ns", est_10k);
    ns(&mut r, "first_packet_single_run_ns", first);
    ns(&mut r, "established_single_run_ns", est_single);
    r.results.insert("flows_in_table".into(), flows as f64);
    r.at_most("overhead_established_10_devices_ns", est_10 - pass, 60.0, "ns/packet over pass-only");
    r.at_most("overhead_established_10000_devices_ns", est_10k - pass_big, 60.0, "ns/packet over pass-only");
    r.at_most("devices_10000_vs_10", (est_10k - pass_big) / (est_10 - pass).max(1.0), 1.10, "ratio of overheads");
    r.ratio.insert("established_10_vs_pass".into(), est_10 / pass);
    r.ratio.insert("first_packet_vs_established".into(), first / est_single);
    Ok(r)
}

pub fn print(r: &Report) {
    let g = |m: &std::collections::BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    let pass = g(&r.baseline, "pass_only_ns");
    println!("classifier cost under BPF_PROG_TEST_RUN (median of {RUNS} x {REPEAT} runs; single runs: median of {SINGLE_RUNS})");
    println!("  {:<52} {:>10} {:>12}", "case", "ns/packet", "over (a)");
    let row = |name: &str, v: f64, base: f64| println!("  {name:<52} {v:>10.1} {:>12.1}", v - base);
    row("(a) pass-only program (baseline)", pass, pass);
    row("(b) established flow, 10 devices", g(&r.results, "established_10_devices_ns"), pass);
    let pb = g(&r.baseline, "pass_only_10k_run_ns");
    row(
        "(c) established flow, 10,000 devices, full flow table",
        g(&r.results, "established_10000_devices_full_table_ns"),
        pb,
    );
    let est1 = g(&r.results, "established_single_run_ns");
    println!(
        "  {:<52} {:>10.1}",
        "(d) first payload packet of a flow (single run)",
        g(&r.results, "first_packet_single_run_ns")
    );
    println!("  {:<52} {:>10.1}", "(d) established flow (single run, same method)", est1);
    println!("  flows in table for (c): {}", g(&r.results, "flows_in_table"));
    for (k, v) in &r.ratio {
        let met = r.met.get(k).map(|m| if *m { "  met" } else { "  NOT met" }).unwrap_or("");
        let target = r.target.get(k).map(|t| format!(" (target <= {t})")).unwrap_or_default();
        println!("  {k:<52} {v:>10.2}{target}{met}");
    }
}
