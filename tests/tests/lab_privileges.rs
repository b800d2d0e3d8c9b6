//! moat needs root for nothing: run as `nobody` with only the capabilities
//! docs/capabilities.md names (what systemd/moat.service grants), it loads
//! and attaches the classifier, applies the nft ruleset, enforces on real
//! traffic, reloads, serves its API, and takes everything down at stop.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::os::unix::fs::PermissionsExt as _;

use anyhow::Result;
use moat_tests::{
    lab::{connects, Lab, INTERNET_V4},
    moat::{binary, camera_and_laptop, device},
    Moat,
};

const CAMERA: &str = "02:77:00:00:00:01";
const LAPTOP: &str = "02:77:00:00:00:02";
/// The unit's CapabilityBoundingSet/AmbientCapabilities.
const CAPS: &str = "+bpf,+net_admin,+perfmon";

fn chown_nobody(path: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(path)?;
    std::os::unix::fs::chown(path, Some(65534), Some(65534))?;
    Ok(())
}

/// `setpriv` dropping to nobody with exactly `caps` (bounding, inheritable
/// and ambient sets), then a copy of moat that nobody can reach.
fn as_nobody(lab: &Lab, caps: &str) -> Result<Vec<String>> {
    let bin = lab.dir.join("moat-unprivileged");
    std::fs::copy(binary()?, &bin)?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    for dir in ["bpf", "run", "state"] {
        chown_nobody(&lab.dir.join(dir))?;
    }
    // The config is read by nobody too.
    let args = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        &format!("--bounding-set=-all,{caps}"),
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps=-all,{caps}"),
        "--no-new-privs",
    ];
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    v.push(bin.display().to_string());
    Ok(v)
}

#[test]
fn moat_enforces_as_nobody_with_three_capabilities() -> Result<()> {
    let lab = Lab::new(&[CAMERA, LAPTOP])?;
    let (cam, laptop) = (lab.devices[0].clone(), lab.devices[1].clone());
    let config = camera_and_laptop(r#"["telnet"]"#);
    let mut moat = Moat::start_as(&lab, &config, &as_nobody(&lab, CAPS)?)?;
    let pid = moat.pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    assert!(status.contains("Uid:\t65534"), "moat runs as nobody: {status}");

    assert!(!connects(&cam.ns, INTERNET_V4, 23)?, "the camera's telnet is blocked");
    assert!(connects(&laptop.ns, INTERNET_V4, 23)?, "the laptop's is not");
    let snap = moat.status()?;
    assert!(device(&snap, "camera")?["dropped_packets"].as_u64().unwrap() > 0, "{snap}");
    let after = moat.reload(&camera_and_laptop("[]"))?;
    assert_eq!(after["reloads"]["ok"], 1, "a reload applies as nobody: {}", after["reloads"]);
    assert!(connects(&cam.ns, INTERNET_V4, 23)?, "the reloaded policy lets the camera's telnet through");
    let api = moat.cli(&["status", "--json"])?;
    assert_eq!(api.code, 0, "the API answers root: {api:?}");
    let (code, _) = moat.stop()?;
    assert!(code.success(), "a clean stop: {}", moat.log_text());
    let nft = moat_tests::cmd::output(Some(&lab.gw), &["nft", "list", "tables"])?;
    assert!(!String::from_utf8_lossy(&nft.stdout).contains("moat"), "on_failure = open took the tables down");
    Ok(())
}

#[test]
fn without_net_admin_moat_says_what_it_lacks() -> Result<()> {
    let lab = Lab::new(&[CAMERA, LAPTOP])?;
    let config = camera_and_laptop(r#"["telnet"]"#);
    let err = Moat::start_as(&lab, &config, &as_nobody(&lab, "+bpf,+perfmon")?).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("moat exited early"), "{text}");
    assert!(
        text.contains("CAP_NET_ADMIN") || text.contains("ermission"),
        "the error names the missing privilege: {text}"
    );
    Ok(())
}
