//! Each policy element on real traffic through the lab gateway: allowlists by
//! address and port, allowlists by domain learned from DNS (with CNAMEs and
//! expiry), LAN isolation modes, WAN inbound openings, and the quarantine of
//! unknown devices.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::time::{Duration, Instant};

/// TTL of the lab resolver's answers, seconds.
const TTL: u32 = 6;

use anyhow::Result;
use moat_tests::{
    cmd::{output, run},
    lab::{connects, pings, wait_for, Lab, GW_V4, INTERNET_V4, INTERNET_V4_B, INTERNET_V4_C, RESOLVER_V4},
    moat::lab_config,
    Moat,
};

fn mac(i: u8) -> String {
    format!("02:77:00:00:00:{i:02x}")
}

fn device(i: u8, name: &str, policy: &str) -> String {
    format!("[[devices]]\nmac = \"{}\"\nname = \"{name}\"\npolicy = \"{policy}\"\n\n", mac(i))
}

fn http(ns: &str, host: &str) -> Result<bool> {
    let out = output(Some(ns), &["curl", "-s", "-o", "/dev/null", "--max-time", "2", &format!("http://{host}/")])?;
    Ok(out.status.success())
}

#[test]
fn allowlist_by_address_and_port() -> Result<()> {
    let lab = Lab::new(&[&mac(1), &mac(2)])?;
    let (cam, laptop) = (lab.devices[0].ns.clone(), lab.devices[1].ns.clone());
    let tables = format!(
        "[policies.camera]\ninternet = \"allowlist\"\nallow = [{{ cidr = \"{INTERNET_V4}/32\", ports = [80] }}]\n\n\
         [policies.open]\n\n{}{}",
        device(1, "camera", "camera"),
        device(2, "laptop", "open")
    );
    let _moat = Moat::start(&lab, &lab_config(&tables))?;
    assert!(http(&cam, INTERNET_V4)?, "allowed address and port");
    assert!(!connects(&cam, INTERNET_V4, 443)?, "allowed address, other port");
    assert!(!http(&cam, INTERNET_V4_B)?, "address not on the allowlist");
    assert!(http(&laptop, INTERNET_V4_B)? && connects(&laptop, INTERNET_V4, 443)?, "the open policy is unaffected");
    let chain = run(Some(&lab.gw), &["nft", "list", "chain", "inet", "moat", "pol_camera"])?;
    let drop_rule = chain.lines().find(|l| l.contains("not on the allowlist")).unwrap_or_default();
    assert!(!drop_rule.contains("packets 0 "), "the allowlist drop counted packets: {drop_rule}");
    Ok(())
}

#[test]
fn allowlist_by_domain_follows_dns_answers_cnames_and_ttls() -> Result<()> {
    let mut lab = Lab::new(&[&mac(1)])?;
    let cam = lab.devices[0].ns.clone();
    let inet = lab.inet.clone();
    // api.vendor.example is a CNAME to a CDN name, as vendors' APIs often are.
    let records = vec![
        format!("--host-record=edge.cdn.example,{INTERNET_V4_B}"),
        "--cname=api.vendor.example,edge.cdn.example".to_string(),
        format!("--host-record=other.example,{INTERNET_V4_C}"),
    ];
    lab.start_dns(&inet, RESOLVER_V4, &records, TTL, "resolver")?;
    let tables = format!(
        "dns_ttl_floor = 0\n\n[policies.camera]\ninternet = \"allowlist\"\nallow = [\n\
           {{ cidr = \"{RESOLVER_V4}/32\", proto = \"udp\", ports = [53] }},\n\
           {{ domain = \"*.vendor.example\", ports = [80] }},\n]\n\n{}",
        device(1, "camera", "camera")
    );
    let moat = Moat::start(&lab, &lab_config(&tables))?;
    assert!(!http(&cam, INTERNET_V4_B)?, "not resolved yet: dropped");

    let dig = |name: &str| run(Some(&cam), &["dig", "+short", "+time=2", "+tries=1", &format!("@{RESOLVER_V4}"), name]);
    let answer = dig("api.vendor.example")?;
    let resolved_at = Instant::now();
    assert!(answer.contains(INTERNET_V4_B), "the resolver answered through moat: {answer}");
    wait_for(Duration::from_secs(3), || Ok(moat.status()?["learned"]["dns_addresses"].as_u64().unwrap_or(0) >= 1))?;
    let set = run(Some(&lab.gw), &["nft", "list", "set", "inet", "moat", "pol_camera_v4"])?;
    assert!(set.contains(&format!("{INTERNET_V4_B} . tcp . 80 timeout {TTL}s")), "{set}");
    assert!(http(&cam, INTERNET_V4_B)?, "a resolved, allowed name's address passes");
    // A policy edit replaces the tables; what was learned is put back.
    let s = moat.reload(&lab_config(&format!("{tables}\n[policies.spare]\n")))?;
    assert_eq!(s["reloads"]["ok"].as_u64(), Some(1), "{}", s["reloads"]);
    assert!(http(&cam, INTERNET_V4_B)?, "learned addresses survive a table replace");
    assert!(dig("other.example")?.contains(INTERNET_V4_C), "DNS itself is allowed");
    assert!(!http(&cam, INTERNET_V4_C)?, "resolving a name not on the allowlist allows nothing");
    let set = run(Some(&lab.gw), &["nft", "list", "set", "inet", "moat", "pol_camera_v4"])?;
    assert!(!set.contains(INTERNET_V4_C), "{set}");

    // The element lives as long as the answer's TTL (floor 0).
    let expired = Duration::from_secs(u64::from(TTL)) + Duration::from_millis(500);
    std::thread::sleep(expired.saturating_sub(resolved_at.elapsed()));
    assert!(!http(&cam, INTERNET_V4_B)?, "after the TTL the address is dropped again");
    Ok(())
}

#[test]
fn lan_isolated_group_and_open() -> Result<()> {
    let lab = Lab::new(&[&mac(1), &mac(2), &mac(3), &mac(4), &mac(5)])?;
    let ip = |i: usize| lab.devices[i].ipv4.clone();
    let ns = |i: usize| lab.devices[i].ns.clone();
    let tables = format!(
        "[policies.camera]\nlan = \"isolated\"\n\n[policies.sensors]\nlan = \"group\"\n\n[policies.open]\n\n{}{}{}{}{}\
         [groups.viewing]\nmembers = [\"camera\", \"l1\"]\n",
        device(1, "camera", "camera"),
        device(2, "s1", "sensors"),
        device(3, "s2", "sensors"),
        device(4, "l1", "open"),
        device(5, "l2", "open")
    );
    let _moat = Moat::start(&lab, &lab_config(&tables))?;
    assert!(pings(&ns(3), &ip(4))?, "open ↔ open");
    assert!(pings(&ns(1), &ip(2))?, "group members reach each other");
    assert!(!pings(&ns(1), &ip(3))?, "a group member does not reach an open device");
    assert!(!pings(&ns(3), &ip(1))?, "an open device does not reach a group member");
    assert!(!pings(&ns(0), &ip(3))?, "isolated device reaches no one");
    assert!(!pings(&ns(4), &ip(0))?, "no one reaches the isolated device");
    assert!(pings(&ns(3), &ip(0))?, "except a fellow member of a device group");
    assert!(pings(&ns(0), GW_V4)?, "the isolated device still reaches the gateway");
    assert!(http(&ns(0), INTERNET_V4)?, "and the internet");
    Ok(())
}

#[test]
fn wan_inbound_only_where_a_policy_opens_it() -> Result<()> {
    let mut lab = Lab::new(&[&mac(1), &mac(2)])?;
    let (nas, laptop) = (lab.devices[0].clone(), lab.devices[1].clone());
    let inet = lab.inet.clone();
    lab.spawn(&nas.ns, &["nc", "-lk", "8443"], "nas-listener")?;
    lab.spawn(&laptop.ns, &["nc", "-lk", "8443"], "laptop-listener")?;
    let tables = format!(
        "[policies.nas]\ninbound = [{{ proto = \"tcp\", port = 8443 }}]\n\n[policies.open]\n\n{}{}",
        device(1, "nas", "nas"),
        device(2, "laptop", "open")
    );
    let moat = Moat::start(&lab, &lab_config(&tables))?;
    // moat learns the NAS's address from its own traffic.
    assert!(http(&nas.ns, INTERNET_V4)?);
    wait_for(Duration::from_secs(5), || Ok(moat.status()?["learned"]["hosts"].as_u64().unwrap_or(0) >= 1))?;
    assert!(connects(&inet, &nas.ipv4, 8443)?, "the opened port reaches the NAS from the WAN");
    assert!(!connects(&inet, &nas.ipv4, 22)?, "other ports stay closed");
    assert!(!connects(&inet, &laptop.ipv4, 8443)?, "the same port on a device without the opening stays closed");
    // The NAS forges the laptop's source address: moat must not open the
    // NAS's ports on the laptop's address.
    assert!(pings(&laptop.ns, GW_V4)?, "the gateway knows the laptop's address");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/spoof_udp.py").display().to_string();
    run(Some(&nas.ns), &["python3", &script, &laptop.ipv4, INTERNET_V4, "9999"])?;
    std::thread::sleep(Duration::from_millis(400));
    assert!(moat.status()?["learned"]["hosts_unverified"].as_u64().unwrap_or(0) >= 1, "the forged address was refused");
    assert!(!connects(&inet, &laptop.ipv4, 8443)?, "a forged source address opens nothing");
    Ok(())
}

#[test]
fn unknown_devices_are_quarantined_to_dhcp_and_dns_on_the_gateway() -> Result<()> {
    let mut lab = Lab::new(&[&mac(9)])?;
    let stranger = lab.devices[0].ns.clone();
    let inet = lab.inet.clone();
    lab.start_gateway_dhcp()?;
    lab.start_dns(&inet, RESOLVER_V4, &[format!("--address=/www.example/{INTERNET_V4}")], 60, "resolver")?;
    let _moat = Moat::start(&lab, &lab_config("[policies.open]\n"))?;
    let dig = |server: &str, name: &str| {
        output(Some(&stranger), &["dig", "+short", "+time=1", "+tries=1", &format!("@{server}"), name])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    assert!(dig(GW_V4, "gateway.lab")?.contains(GW_V4), "DNS on the gateway works");
    let dhcp = output(
        Some(&stranger),
        &["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "3", "-T", "1", "-s", "/bin/true"],
    )?;
    let said = format!("{}{}", String::from_utf8_lossy(&dhcp.stdout), String::from_utf8_lossy(&dhcp.stderr));
    assert!(dhcp.status.success() && said.contains("lease of 10.77.1."), "DHCP from the gateway works: {said}");
    assert!(!dig(RESOLVER_V4, "www.example")?.contains(INTERNET_V4), "DNS on the internet does not");
    assert!(!http(&stranger, INTERNET_V4)?, "no internet");
    assert!(!connects(&stranger, GW_V4, 22)?, "no other gateway service");
    Ok(())
}

#[test]
fn reloads_apply_changes_keep_established_connections_and_reject_bad_configs() -> Result<()> {
    let mut lab = Lab::new(&[&mac(1), &mac(2)])?;
    let (laptop, cam) = (lab.devices[0].clone(), lab.devices[1].clone());
    let config = |cam_policy: &str, open_blocks: &str| {
        lab_config(&format!(
            "[defaults]\nblock = []\n\n[policies.open]\nblock = {open_blocks}\n\n[policies.locked]\ninternet = \"none\"\n\n{}{}",
            device(1, "laptop", "open"),
            device(2, "camera", cam_policy)
        ))
    };
    let moat = Moat::start(&lab, &config("open", "[]"))?;
    assert!(http(&cam.ns, INTERNET_V4)?);

    // A long-lived connection from the laptop runs through every reload.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/echo_client.py");
    let log = lab.dir.join("echo.log");
    let (script, log_s) = (script.display().to_string(), log.display().to_string());
    lab.spawn(&laptop.ns, &["python3", &script, INTERNET_V4, "7", "8", &log_s], "echo-client")?;
    let client_ends = Instant::now() + Duration::from_millis(8500);
    std::thread::sleep(Duration::from_millis(800));

    // Device-only change: the camera moves to a policy without internet.
    let s = moat.reload(&config("locked", "[]"))?;
    assert_eq!(s["reloads"]["ok"].as_u64(), Some(1), "{}", s["reloads"]);
    assert!(!http(&cam.ns, INTERNET_V4)?, "the camera's new policy applies at once");
    assert!(http(&laptop.ns, INTERNET_V4)?, "other devices are not disturbed");

    // A broken config changes nothing and says where it is broken.
    let s = moat.reload("[gateway]\nlan = \"br-lan\"\nwan = 7\n")?;
    assert_eq!(s["reloads"]["failed"].as_u64(), Some(1));
    let why = s["reloads"]["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("moat.toml:3:7: invalid type"), "{why}");
    assert!(!http(&cam.ns, INTERNET_V4)?, "still enforcing the previous config");

    // A policy change (full, atomic table replace).
    let s = moat.reload(&config("locked", "[\"telnet\"]"))?;
    assert_eq!(s["reloads"]["ok"].as_u64(), Some(2));
    assert!(!connects(&laptop.ns, INTERNET_V4, 23)?, "the changed policy applies");

    std::thread::sleep(client_ends.saturating_duration_since(Instant::now()));
    let text = std::fs::read_to_string(&log)?;
    assert!(!text.contains("error"), "the established connection never failed:\n{text}");
    let times: Vec<f64> = text.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(times.len() >= 40, "round trips kept going through three reloads: {}", times.len());
    let max_gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(max_gap < 1.0, "no stall longer than a second (max gap {max_gap:.2} s)");
    Ok(())
}

/// Upload Mbit/s from `ns` to the internet host (iperf3, 2 s).
fn upload_mbps(ns: &str) -> Result<f64> {
    let out = run(Some(ns), &["iperf3", "-c", INTERNET_V4, "-t", "2", "-J"])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6)
}

#[test]
fn rate_limits_cap_every_packet_of_a_devices_upload() -> Result<()> {
    let mut lab = Lab::new(&[&mac(1), &mac(2)])?;
    let (cam, laptop) = (lab.devices[0].ns.clone(), lab.devices[1].ns.clone());
    let inet = lab.inet.clone();
    lab.spawn(&inet, &["iperf3", "-s", "-B", INTERNET_V4], "iperf")?;
    std::thread::sleep(Duration::from_millis(300));
    let tables = format!(
        "[policies.camera]\nrate_limit_kbps = 2000\n\n[policies.open]\n\n{}{}",
        device(1, "camera", "camera"),
        device(2, "laptop", "open")
    );
    let _moat = Moat::start(&lab, &lab_config(&tables))?;
    let limited = upload_mbps(&cam)?;
    let free = upload_mbps(&laptop)?;
    // 2000 kbit/s = 250 kbytes/s; TCP settles below it after the burst.
    assert!(limited < 4.0, "the camera's upload is capped: {limited:.2} Mbit/s");
    assert!(limited > 0.2, "but not cut off: {limited:.2} Mbit/s");
    assert!(free > 50.0, "other devices are not limited: {free:.2} Mbit/s");
    Ok(())
}

#[test]
fn a_forged_dns_answer_routed_through_the_gateway_teaches_nothing() -> Result<()> {
    let lab = Lab::new(&[&mac(1), &mac(2)])?;
    let (cam, other) = (lab.devices[0].clone(), lab.devices[1].clone());
    let tables = format!(
        "[policies.camera]\ninternet = \"allowlist\"\nallow = [{{ domain = \"*.vendor.example\", ports = [80] }}]\n\n\
         [policies.open]\n\n{}{}",
        device(1, "camera", "camera"),
        device(2, "other", "open")
    );
    let moat = Moat::start(&lab, &lab_config(&tables))?;
    // The other device sends a forged answer to the camera through the
    // gateway (a route via the gateway makes it hairpin through br-lan).
    run(Some(&other.ns), &["ip", "route", "add", &format!("{}/32", cam.ipv4), "via", GW_V4])?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/spoof_dns.py").display().to_string();
    run(Some(&other.ns), &["python3", &script, &cam.ipv4, "40000", "api.vendor.example", INTERNET_V4_B])?;
    std::thread::sleep(Duration::from_millis(300));
    let s = moat.status()?;
    assert_eq!(s["learned"]["dns_addresses"].as_u64(), Some(0), "nothing learned from a forged answer");
    assert!(!http(&cam.ns, INTERNET_V4_B)?, "the forged address stays blocked");
    let chain = run(Some(&lab.gw), &["nft", "list", "chain", "inet", "moat", "forward"])?;
    let rule = chain.lines().find(|l| l.contains("routed back into the LAN")).unwrap_or_default();
    assert!(!rule.contains("packets 0 "), "the hairpin rule dropped it: {rule}");
    Ok(())
}
