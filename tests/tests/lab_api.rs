//! The control API and the `moat` CLI against a running daemon on real
//! traffic: approving an unknown device lets its traffic through, quarantine
//! stops it, forget deletes what moat held; `moat events --follow` shows
//! blocks and decisions live; bad requests get the right status and a
//! message; exit codes are the documented ones.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::net::UnixStream,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::Result;
use moat_tests::{
    cmd::sh,
    lab::{connects, Lab, INTERNET_V4},
    moat::{binary, camera_and_laptop, cli_as},
    Moat,
};
use serde_json::Value;

const CAMERA: &str = "02:77:00:00:00:01";
const LAPTOP: &str = "02:77:00:00:00:02";
/// Not in the config: quarantined as unknown until approved.
const STRANGER: &str = "02:77:00:00:00:03";

fn device<'a>(devices: &'a Value, mac: &str) -> &'a Value {
    devices.as_array().and_then(|ds| ds.iter().find(|d| d["mac"] == mac)).unwrap_or(&Value::Null)
}

#[test]
fn cli_approves_quarantines_and_forgets_a_device() -> Result<()> {
    let lab = Lab::new(&[CAMERA, LAPTOP, STRANGER])?;
    let stranger = lab.devices[2].clone();
    let moat = Moat::start(&lab, &camera_and_laptop(r#"["telnet"]"#))?;
    assert!(!connects(&stranger.ns, INTERNET_V4, 80)?, "an unknown device is quarantined");

    let devices = moat.cli(&["devices", "--json"])?.json()?;
    assert_eq!(device(&devices, STRANGER)["state"], "unknown", "{devices}");
    assert_eq!(device(&devices, CAMERA)["state"], "known");

    let approve = moat.cli(&["device", STRANGER, "approve", "--policy", "open", "--name", "tv"])?;
    assert_eq!(approve.code, 0, "{approve:?}");
    assert_eq!(approve.stdout, format!("tv ({STRANGER}): known, policy open\n"));
    assert!(connects(&stranger.ns, INTERNET_V4, 80)?, "an approved device's traffic passes");
    let shown = moat.cli(&["device", "tv", "--json"])?.json()?;
    assert_eq!((&shown["name"], &shown["policy"], &shown["state"]), (&"tv".into(), &"open".into(), &"known".into()));
    assert!(
        shown["traffic"]["total"]["from_device"]["packets"].as_u64().unwrap() > 0,
        "counted in its own slot: {shown}"
    );

    let q = moat.cli(&["device", "tv", "quarantine", "--reason", "scanning the LAN"])?;
    assert_eq!(
        (q.code, q.stdout.as_str()),
        (0, format!("tv ({STRANGER}): quarantined, policy quarantine (scanning the LAN)\n").as_str())
    );
    assert!(!connects(&stranger.ns, INTERNET_V4, 80)?, "a quarantined device's traffic stops");
    let table = moat.cli(&["devices"])?;
    let row = table.stdout.lines().find(|l| l.starts_with("tv ")).unwrap_or_else(|| panic!("{table:?}"));
    assert!(row.contains("quarantined") && row.contains("scanning the LAN"), "{row}");
    let saved = std::fs::read_to_string(lab.dir.join("state/devices.json"))?;
    assert!(saved.contains("scanning the LAN"), "the decision is kept on disk: {saved}");

    let forget = moat.cli(&["device", "tv", "forget"])?;
    assert_eq!(forget.code, 0, "{forget:?}");
    assert!(
        forget.stdout.starts_with(&format!("{STRANGER}: forgotten (decision removed, inventory deleted")),
        "{forget:?}"
    );
    let gone = moat.cli(&["device", STRANGER])?;
    assert_eq!(gone.code, 2, "nothing is held about it any more: {gone:?}");
    assert!(gone.stderr.contains("has not seen"), "{gone:?}");
    assert!(!std::fs::read_to_string(lab.dir.join("state/devices.json"))?.contains(STRANGER));
    assert!(!connects(&stranger.ns, INTERNET_V4, 80)?, "forgotten, it is unknown (quarantined) again");
    Ok(())
}

/// Lines of `moat events --follow --json`, read on a thread.
fn follow(moat: &Moat) -> Result<(std::process::Child, mpsc::Receiver<Value>)> {
    let mut child = Command::new(binary()?)
        .arg("--socket")
        .arg(moat.socket())
        .args(["events", "--follow", "--json"])
        .stdout(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(serde_json::from_str(&line).unwrap_or(Value::Null)).is_err() {
                return;
            }
        }
    });
    Ok((child, rx))
}

fn wait_line(rx: &mpsc::Receiver<Value>, want: impl Fn(&Value) -> bool) -> Value {
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(v) if want(&v) => return v,
            Ok(_) => {}
            Err(e) => panic!("expected event did not arrive: {e}"),
        }
    }
}

#[test]
fn events_follow_streams_blocks_and_decisions() -> Result<()> {
    let lab = Lab::new(&[CAMERA, LAPTOP])?;
    let cam = lab.devices[0].clone();
    let moat = Moat::start(&lab, &camera_and_laptop(r#"["telnet"]"#))?;
    let (mut child, rx) = follow(&moat)?;
    std::thread::sleep(Duration::from_millis(300)); // subscribed before the traffic
    sh(&cam.ns, &format!("nc -4 -w 1 {INTERNET_V4} 23 </dev/null >/dev/null 2>&1 || true"))?;
    let blocked = wait_line(&rx, |v| v["kind"] == "blocked");
    assert_eq!(
        (&blocked["device"], &blocked["class"], &blocked["remote"]),
        (&"camera".into(), &"telnet".into(), &INTERNET_V4.into())
    );
    assert_eq!(blocked["port"], 23);
    assert_eq!(moat.cli(&["device", "camera", "quarantine", "-r", "odd"])?.code, 0);
    let q = wait_line(&rx, |v| v["kind"] == "quarantined");
    assert_eq!((&q["device"], &q["mac"], &q["reason"]), (&"camera".into(), &CAMERA.into(), &"odd".into()));
    child.kill()?;
    child.wait()?;

    let recent = moat.cli(&["events"])?;
    assert!(
        recent.stdout.lines().any(|l| l.contains("blocked") && l.contains(&format!("telnet to {INTERNET_V4}:23"))),
        "{recent:?}"
    );
    Ok(())
}

/// One raw request on the socket: (status, body as JSON).
fn raw(moat: &Moat, request: &[u8]) -> (u16, Value) {
    let mut s = UnixStream::connect(moat.socket()).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

#[test]
fn api_refuses_bad_requests_with_a_status_and_a_message() -> Result<()> {
    let lab = Lab::new(&[CAMERA, LAPTOP])?;
    // Slots 1 and 2 are the camera's and the laptop's: none is left to approve into.
    let config =
        camera_and_laptop(r#"["telnet"]"#).replace("[defaults]", "[classifier]\nmax_devices = 3\n\n[defaults]");
    let moat = Moat::start(&lab, &config)?;
    let (s, v) = raw(&moat, &post("/v1/devices/02:77:zz:00:00:01/approve", r#"{"policy":"open"}"#));
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (400, "\"02:77:zz:00:00:01\" is not a device MAC address (like 02:00:5e:10:00:01): expected six hex pairs separated by ':' or '-'")
    );
    let (s, v) = raw(&moat, &post("/v1/devices/camera/policy", r#"{"policy":"nope"}"#));
    assert_eq!(s, 404);
    assert!(v["error"].as_str().unwrap().starts_with("no policy named \"nope\" (the config has: camera, open"), "{v}");
    let big = format!("{{\"reason\":\"{}\"}}", "x".repeat(70 * 1024));
    let (s, v) = raw(&moat, &post("/v1/devices/camera/quarantine", &big));
    assert_eq!((s, v["error"].as_str().unwrap()), (413, "request body larger than 65536 bytes"));
    let (s, v) = raw(&moat, &post("/v1/devices/camera/quarantine", r#"{"why":"x"}"#));
    assert!(s == 400 && v["error"].as_str().unwrap().contains("unknown field `why`"), "{v}");
    let (s, _) = raw(&moat, b"DELETE /v1/status HTTP/1.1\r\n\r\n");
    assert_eq!(s, 405);
    let (s, v) = raw(&moat, b"GET /v1/devices/fridge HTTP/1.1\r\n\r\n");
    assert!(s == 404 && v["error"].as_str().unwrap().starts_with("no device named \"fridge\""), "{v}");
    let (s, v) = raw(&moat, &post(&format!("/v1/devices/{STRANGER}/approve"), r#"{"policy":"open"}"#));
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with(&format!("no device slot left for {STRANGER}")), "{v}");
    assert!(!std::fs::read_to_string(lab.dir.join("state/devices.json")).unwrap_or_default().contains(STRANGER));
    let (s, _) = raw(&moat, b"GET /v1/status HTTP/1.1\r\n\r\n");
    assert_eq!(s, 200, "the daemon still answers after bad requests");
    assert!(connects(&lab.devices[1].ns, INTERNET_V4, 80)?, "and still enforces: the laptop gets out");

    // The CLI turns those into exit codes and messages.
    let r = moat.cli(&["device", "camera", "policy", "nope"])?;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.starts_with("moat: no policy named \"nope\""), "{r:?}");
    let r = moat.cli(&["device", "camera", "approve", "--name", "x"])?;
    assert_eq!(r.code, 2, "a configured device is renamed in the config: {r:?}");
    let gone = lab.dir.join("no.sock");
    let r = cli_as(&[], &binary()?, &gone, &["status"])?;
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("moat is not running"), "{r:?}");
    Ok(())
}

#[test]
fn the_socket_admits_root_and_its_group_only() -> Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let lab = Lab::new(&[CAMERA, LAPTOP])?;
    let socket = lab.dir.join("api/moat.sock");
    let api = format!("[api]\nsocket = \"{}\"\ngroup = \"nogroup\"\n\n[defaults]", socket.display());
    let moat = Moat::start(&lab, &camera_and_laptop(r#"["telnet"]"#).replace("[defaults]", &api))?;
    let meta = std::fs::metadata(&socket)?;
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, 65534), "0660, group nogroup");
    // A copy of the CLI that the unprivileged users can reach.
    let bin = lab.dir.join("moat-cli");
    std::fs::copy(binary()?, &bin)?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    let as_user = |groups: &[&str]| {
        let mut prefix = vec!["setpriv", "--reuid=nobody"];
        prefix.extend_from_slice(groups);
        cli_as(&prefix, &bin, &socket, &["status", "--json"])
    };
    let member = as_user(&["--regid=nogroup", "--clear-groups"])?;
    assert_eq!(member.code, 0, "the group's members get in: {member:?}");
    assert_eq!(member.json()?["lan"], "br-lan");
    let supplementary = as_user(&["--regid=daemon", "--groups=nogroup"])?;
    assert_eq!(supplementary.code, 0, "a supplementary group counts: {supplementary:?}");
    let other = as_user(&["--regid=daemon", "--clear-groups"])?;
    assert_eq!(other.code, 4, "another user is refused by the socket's mode: {other:?}");
    assert!(other.stderr.contains("permission denied"), "{other:?}");
    // Loosen the modes by hand (the directory moat made is 0750 too): the
    // daemon's own peer check still refuses.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))?;
    std::fs::set_permissions(lab.dir.join("api"), std::fs::Permissions::from_mode(0o755))?;
    let loose = as_user(&["--regid=daemon", "--clear-groups"])?;
    assert_eq!(loose.code, 4, "{loose:?}");
    assert!(loose.stderr.contains("not root, moat's user or a member of the [api] group"), "{loose:?}");
    assert!(moat.log_text().contains("peer refused"), "the refusal is logged");
    assert_eq!(cli_as(&[], &bin, &socket, &["status"])?.code, 0, "root still gets in");
    Ok(())
}
