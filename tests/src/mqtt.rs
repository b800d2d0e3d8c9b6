//! MQTT helpers for lab tests: device credentials from the real
//! `moat mqtt credentials`, and the real mosquitto clients run from a
//! device namespace against the gateway's TLS front.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use crate::{
    cmd,
    lab::{Lab, GW_V4},
    moat::binary,
    Moat,
};

/// What a device needs to log in.
#[derive(Debug, Clone)]
pub struct Creds {
    pub user: String,
    pub password: String,
    pub ca: PathBuf,
}

/// Runs `moat mqtt credentials DEVICE` for the running moat's config.
pub fn credentials(moat: &Moat, device: &str) -> Result<Creds> {
    let bin = binary()?.display().to_string();
    let cfg = moat.config.display().to_string();
    let out = cmd::run(None, &[&bin, "mqtt", "credentials", device, "--config", &cfg])?;
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .with_context(|| format!("no {k} in {out:?}"))
    };
    Ok(Creds { user: field("username:")?, password: field("password:")?, ca: PathBuf::from(field("ca:")?) })
}

/// The TLS options of a mosquitto client for the lab gateway.
fn tls_args(c: &Creds, port: u16) -> Vec<String> {
    let mut a: Vec<String> = ["-h", GW_V4, "-p"].iter().map(|s| s.to_string()).collect();
    a.push(port.to_string());
    a.extend([
        "--cafile".into(),
        c.ca.display().to_string(),
        "-u".into(),
        c.user.clone(),
        "-P".into(),
        c.password.clone(),
    ]);
    a
}

/// A one-shot `mosquitto_sub -v` for `filters` with the device's TLS login.
pub fn sub_args(c: &Creds, filters: &[&str], extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["mosquitto_sub".into(), "-v".into()];
    a.extend(tls_args(c, 8883));
    for f in filters {
        a.extend(["-t".into(), f.to_string()]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// moat-mqtt-load next to this executable (or `$MOAT_LOAD_BIN`).
pub fn load_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MOAT_LOAD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("moat-mqtt-load"))
        .find(|p| p.is_file())
        .context("moat-mqtt-load not built (cargo build -p moat-mqtt-load)")
}

/// Resident memory of a process, kB (0 if it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `mosquitto_pub` from `ns`: Ok(stderr) when it exits 0, Err with its output otherwise.
pub fn publish(ns: &str, c: &Creds, topic: &str, msg: &str, extra: &[&str]) -> Result<String> {
    let mut args: Vec<String> = vec!["mosquitto_pub".into()];
    args.extend(tls_args(c, 8883));
    args.extend(["-t".into(), topic.into(), "-m".into(), msg.into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cmd::output(Some(ns), &refs)?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("mosquitto_pub failed ({}): {text}", out.status);
    }
    Ok(text)
}

/// Starts `mosquitto_sub -v` in `ns` (output in `<lab>/<name>.log`) and
/// waits until its subscription is acknowledged (`-d` prints SUBACK).
pub fn subscribe(lab: &mut Lab, ns: &str, c: &Creds, filters: &[&str], extra: &[&str], name: &str) -> Result<PathBuf> {
    // Line-buffered: the test reads the log while the client runs.
    let mut args: Vec<String> = ["stdbuf", "-oL", "mosquitto_sub", "-d", "-v"].iter().map(|s| s.to_string()).collect();
    args.extend(tls_args(c, 8883));
    for f in filters {
        args.extend(["-t".into(), f.to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.spawn(ns, &refs, name)?;
    let log = lab.dir.join(format!("{name}.log"));
    crate::lab::wait_for(std::time::Duration::from_secs(10), || {
        Ok(std::fs::read_to_string(&log).unwrap_or_default().contains("SUBACK"))
    })
    .with_context(|| format!("{name} never got a SUBACK: {}", std::fs::read_to_string(&log).unwrap_or_default()))?;
    Ok(log)
}

/// Lines `topic payload` a `mosquitto_sub -v` has printed so far.
pub fn received(log: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed ") && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// A device's MQTT counters from the status snapshot.
pub fn counters(moat: &Moat, device: &str) -> Result<serde_json::Value> {
    let s = moat.status()?;
    Ok(s["mqtt"]["devices"][device].clone())
}

/// One counter (0 when absent).
pub fn count(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// A TLS-only "cloud" broker (mosquitto) in the lab's internet namespace:
/// TLS on 198.51.100.10:8883 with a certificate for `cloud.lab` from its own
/// CA, a plaintext listener on 1884 (to show plaintext never gets there), and
/// a loopback listener (1885) for the test's own subscriber.
#[derive(Debug)]
pub struct Cloud {
    pub ca: PathBuf,
    pub log: PathBuf,
}

pub const CLOUD_HOST: &str = "cloud.lab";

pub fn start_cloud(lab: &mut Lab) -> Result<Cloud> {
    let d = lab.dir.join("cloud");
    std::fs::create_dir_all(&d)?;
    let p = |f: &str| d.join(f).display().to_string();
    std::fs::write(d.join("san.ext"), format!("subjectAltName=DNS:{CLOUD_HOST}\n"))?;
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let script = format!(
        "openssl req -x509 {ec} -days 1 -subj /CN=lab-cloud-ca -keyout {cak} -out {ca} 2>/dev/null
         openssl req {ec} -subj /CN={CLOUD_HOST} -keyout {key} -out {csr} 2>/dev/null
         openssl x509 -req -in {csr} -CA {ca} -CAkey {cak} -CAcreateserial -days 1 -extfile {ext} -out {crt} 2>/dev/null",
        cak = p("ca.key"),
        ca = p("ca.pem"),
        key = p("cloud.key"),
        csr = p("cloud.csr"),
        crt = p("cloud.pem"),
        ext = p("san.ext"),
    );
    cmd::run(None, &["sh", "-ec", &script])?;
    let conf = format!(
        "user root\nper_listener_settings false\nallow_anonymous true\nlog_dest stdout\nlog_type all\n\
         listener 8883 {ip}\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\n\
         listener 1884 {ip}\nlistener 1885 127.0.0.1\n",
        ip = crate::lab::INTERNET_V4,
        ca = p("ca.pem"),
        crt = p("cloud.pem"),
        key = p("cloud.key"),
    );
    std::fs::write(d.join("mosquitto.conf"), conf)?;
    let inet = lab.inet.clone();
    lab.spawn(&inet, &["mosquitto", "-c", &p("mosquitto.conf")], "cloud-broker")?;
    crate::lab::wait_for(std::time::Duration::from_secs(10), || crate::lab::connects(&inet, "127.0.0.1", 1885))?;
    let sub = ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", "1885", "-t", "#", "-v", "-d"];
    lab.spawn(&inet, &sub, "cloud-sub")?;
    let log = lab.dir.join("cloud-sub.log");
    crate::lab::wait_for(std::time::Duration::from_secs(10), || {
        Ok(std::fs::read_to_string(&log).unwrap_or_default().contains("SUBACK"))
    })?;
    Ok(Cloud { ca: d.join("ca.pem"), log })
}
