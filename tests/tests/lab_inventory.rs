//! The device inventory on real DHCP traffic: what a device says in its DHCP
//! request lands in the inventory, survives a restart, and `moat forget`
//! deletes it with the device's counters. A broken database does not stop
//! moat from enforcing.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use anyhow::Result;
use moat_tests::{
    cmd::{output, run},
    lab::{connects, Lab, GW_V6, INTERNET_V4},
    moat::{binary, camera_and_laptop, device, traffic},
    Moat,
};
use serde_json::Value;

const CAMERA: &str = "02:77:00:00:00:01";
const MUD_URL: &str = "https://cam.example/mud/cam.json";

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn inventory_row<'a>(status: &'a Value, mac: &str) -> Option<&'a Value> {
    status["inventory"]["devices"].as_array()?.iter().find(|d| d["mac"] == mac)
}

/// A DHCP server on the gateway (dnsmasq) for the lab's LAN.
fn dhcp_server(lab: &mut Lab) -> Result<()> {
    lab.start_gateway_dhcp()
}

/// Packets device `id` sent, read straight from the pinned counters.
fn pinned_packets(lab: &Lab, id: u32) -> Result<u64> {
    use aya::maps::{Map, MapData, PerCpuArray};
    let path = lab.pin_dir().join("v1").join(moat_common::maps::DEVICE_STATS);
    let map: PerCpuArray<MapData, moat_common::DeviceStats> =
        PerCpuArray::try_from(Map::PerCpuArray(MapData::from_pin(&path)?))?;
    Ok(map.get(&id, 0)?.iter().map(|s| s.total(moat_common::class::dir::FROM_DEVICE).packets).sum())
}

#[test]
fn dhcp_facts_land_in_the_inventory_survive_restarts_and_can_be_forgotten() -> Result<()> {
    let mut lab = Lab::new(&[CAMERA])?;
    let cam = lab.devices[0].clone();
    dhcp_server(&mut lab)?;
    let config = camera_and_laptop(r#"["telnet"]"#).replace("on_failure = \"open\"", "on_failure = \"closed\"");
    let mut moat = Moat::start(&lab, &config)?;

    let mud = format!("0xa1:{}", hex(MUD_URL));
    let out = output(
        Some(&cam.ns),
        &[
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-f",
            "-t",
            "5",
            "-T",
            "1",
            "-s",
            "/bin/true",
            "-x",
            "hostname:kitchen-cam",
            "-V",
            "vendor-cam 1.0",
            "-x",
            &mud,
        ],
    )?;
    let dnsmasq_log = std::fs::read_to_string(lab.dir.join("gw-dhcp.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\ndnsmasq: {dnsmasq_log}\nmoat: {}",
        String::from_utf8_lossy(&out.stderr),
        serde_json::to_string(&device(&moat.status()?, "camera")?).unwrap()
    );
    assert!(connects(&cam.ns, INTERNET_V4, 80)?, "and some traffic");
    let status = moat.status()?;
    let row = inventory_row(&status, CAMERA)
        .unwrap_or_else(|| panic!("camera not in the inventory: {}", status["inventory"]));
    assert_eq!(row["hostname"], "kitchen-cam");
    assert_eq!(row["vendor_class"], "vendor-cam 1.0");
    assert_eq!(row["mud_url"], MUD_URL);
    assert_eq!(row["policy"], "camera");
    assert!(row["fingerprint"].as_str().is_some_and(|f| !f.is_empty()), "{row}");
    assert!(row["addresses"].as_array().unwrap().iter().any(|a| a == cam.ipv4.as_str()), "{row}");
    assert_eq!(status["inventory"]["state"], "ok");

    // An address only the neighbour table knows (ICMPv6 opens no flow).
    run(Some(&cam.ns), &["ping", "-6", "-c", "1", "-W", "2", GW_V6])?;

    // A clean stop writes the inventory; a new moat reads it back.
    let (exit, _) = moat.stop()?;
    assert!(exit.success());
    let moat = Moat::start(&lab, &config)?;
    let status = moat.status()?;
    let row = inventory_row(&status, CAMERA).expect("the inventory survived the restart");
    assert_eq!(row["hostname"], "kitchen-cam");
    let addrs = row["addresses"].as_array().unwrap();
    assert!(addrs.iter().any(|a| a == cam.ipv6.as_str()), "the neighbour table's IPv6 address: {row}");
    assert!(traffic(device(&status, "camera")?, "from_device", "packets") > 0, "pinned counters survived too");
    let before_forget = traffic(device(&moat.status()?, "camera")?, "from_device", "packets");
    drop(moat); // on_failure = closed: pins stay, so the counters can be forgotten

    let cfg_path = lab.dir.join("moat.toml").display().to_string();
    let said = run(Some(&lab.gw), &[&binary()?.display().to_string(), "forget", CAMERA, "--config", &cfg_path])?;
    assert!(said.contains("inventory deleted, counters zeroed"), "{said}");
    assert_eq!(pinned_packets(&lab, 1)?, 0, "the pinned counters of the camera are zero");
    let moat = Moat::start(&lab, &config)?;
    let status = moat.status()?;
    assert!(inventory_row(&status, CAMERA).is_none(), "forgotten: {}", status["inventory"]);
    let now = traffic(device(&status, "camera")?, "from_device", "packets");
    assert!(now < before_forget, "counting starts again from zero ({now} < {before_forget})");
    Ok(())
}

#[test]
fn a_corrupt_database_is_reported_and_moat_keeps_enforcing() -> Result<()> {
    let lab = Lab::new(&[CAMERA])?;
    let cam = lab.devices[0].clone();
    let state = lab.dir.join("state");
    std::fs::create_dir_all(&state)?;
    std::fs::write(state.join("inventory.sqlite3"), b"not a database at all, just bytes that are long enough....")?;
    let moat = Moat::start(&lab, &camera_and_laptop(r#"["telnet"]"#))?;
    let status = moat.status()?;
    let why = status["inventory"]["state"].as_str().unwrap_or_default();
    assert!(why.contains("inventory database") && why.contains("not a database"), "{why}");
    assert!(!connects(&cam.ns, INTERNET_V4, 23)?, "still enforcing");
    assert!(connects(&cam.ns, INTERNET_V4, 80)?);
    assert!(moat.log_text().contains("device inventory unavailable"), "the error is logged");
    Ok(())
}

#[test]
fn an_unwritable_state_directory_is_reported_and_moat_keeps_enforcing() -> Result<()> {
    let lab = Lab::new(&[CAMERA])?;
    let cam = lab.devices[0].clone();
    // A state_dir below a regular file cannot be created.
    let blocker = lab.dir.join("not-a-dir");
    std::fs::write(&blocker, b"x")?;
    let config =
        camera_and_laptop(r#"["telnet"]"#).replace("@STATE_DIR@", &blocker.join("state").display().to_string());
    let moat = Moat::start(&lab, &config)?;
    let why = moat.status()?["inventory"]["state"].as_str().unwrap_or_default().to_string();
    assert!(why.starts_with("inventory directory"), "{why}");
    assert!(!connects(&cam.ns, INTERNET_V4, 23)?, "still enforcing");
    Ok(())
}

#[test]
fn an_unknown_device_announcing_a_local_mud_file_gets_its_policy() -> Result<()> {
    let mut lab = Lab::new(&["02:77:00:00:00:33"])?;
    let bulb = lab.devices[0].clone();
    dhcp_server(&mut lab)?;
    let mud_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/mud").display().to_string();
    let config =
        camera_and_laptop(r#"["telnet"]"#).replace("on_failure = ", &format!("mud_dir = \"{mud_dir}\"\non_failure = "));
    let moat = Moat::start(&lab, &config)?;
    let http = |host: &str| -> Result<bool> {
        Ok(output(Some(&bulb.ns), &["curl", "-s", "-o", "/dev/null", "--max-time", "2", &format!("http://{host}/")])?
            .status
            .success())
    };
    assert!(!http(INTERNET_V4)?, "unknown device: quarantined");

    let url = format!("0xa1:{}", hex("https://bulbs.example/mud/lab-bulb.json"));
    let out = output(
        Some(&bulb.ns),
        &["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", "/bin/true", "-x", &url],
    )?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    moat_tests::lab::wait_for(std::time::Duration::from_secs(5), || {
        Ok(device(&moat.status()?, "mud-027700000033").is_ok_and(|d| d["policy"] == "mud_lab-bulb"))
    })?;
    assert!(http(INTERNET_V4)?, "the MUD file allows its web server");
    assert!(!http(moat_tests::lab::INTERNET_V4_B)?, "and nothing else");
    assert!(moat.log_text().contains("applied a local MUD file"));
    Ok(())
}
