//! The `moat` binary without a daemon: check, plan, --version, completions, and what the API commands say when no daemon runs. No root needed.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::{path::PathBuf, process::Command};

const GOOD: &str = r#"[gateway]
lan = "br-lan"
wan = "wan0"

[policies.camera]
block = ["telnet"]

[[devices]]
mac = "02:77:00:00:00:01"
name = "camera"
policy = "camera"
"#;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
    p
}

/// (exit code, stdout, stderr) of `moat args...`.
fn moat(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_moat")).args(args).output().unwrap_or_else(|e| panic!("{e}"));
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

fn check(name: &str, text: &str) -> (i32, String, String, String) {
    let path = write(name, text);
    let p = path.display().to_string();
    let (code, out, err) = moat(&["check", "--config", &p]);
    (code, out, err, p)
}

#[test]
fn check_accepts_a_good_config() {
    let (code, out, _, p) = check("good.toml", GOOD);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("{p}: ok (1 devices, 2 policies)"));
}

#[test]
fn check_rejects_unknown_key() {
    let (code, _, err, p) = check("unknown-key.toml", &GOOD.replace("wan = \"wan0\"", "wan = \"wan0\"\nwna = 1"));
    assert_eq!(code, 2);
    assert!(err.starts_with(&format!("{p}:4:1: unknown field `wna`")), "{err}");
}

#[test]
fn check_rejects_bad_mac() {
    let (code, _, err, p) = check("bad-mac.toml", &GOOD.replace("02:77:00:00:00:01", "02:77:00:00:00:0x"));
    assert_eq!(code, 2);
    assert!(err.starts_with(&format!("{p}:9:7: bad MAC address \"02:77:00:00:00:0x\"")), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn check_rejects_unknown_policy() {
    let (code, _, err, p) = check("unknown-policy.toml", &GOOD.replace("policy = \"camera\"", "policy = \"cam\""));
    assert_eq!(code, 2);
    assert!(err.starts_with(&format!("{p}:11:10: undefined policy \"cam\"")), "{err}");
    assert!(err.contains("hint: defined policies: camera"), "{err}");
}

#[test]
fn check_rejects_duplicate_mac() {
    let dup = format!("{GOOD}\n[[devices]]\nmac = \"02:77:00:00:00:01\"\nname = \"camera2\"\npolicy = \"camera\"\n");
    let (code, _, err, p) = check("dup-mac.toml", &dup);
    assert_eq!(code, 2);
    assert!(err.starts_with(&format!("{p}:14:7: duplicate MAC 02:77:00:00:00:01")), "{err}");
    assert!(err.contains("first used on line 9"), "{err}");
}

#[test]
fn check_reports_a_missing_file() {
    let (code, _, err) = moat(&["check", "--config", "/nonexistent/moat.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read config"), "{err}");
}

#[test]
fn run_refuses_a_bad_config_before_touching_the_system() {
    let path = write("run-bad.toml", &GOOD.replace("02:77:00:00:00:01", "zz"));
    let (code, _, err) = moat(&["run", "--config", &path.display().to_string()]);
    assert_eq!(code, 2);
    assert!(err.contains("bad MAC address"), "{err}");
}

#[test]
fn plan_prints_the_ruleset_and_device_table() {
    let path = write("plan.toml", GOOD);
    let (code, out, _) = moat(&["plan", "--config", &path.display().to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("table inet moat {"), "{out}");
    assert!(out.contains("oifname \"br-lan\" jump from_wan"), "{out}");
    assert!(out.contains("iifname \"br-lan\" jump to_wan"), "{out}");
    assert!(out.contains("counter drop comment \"wan-inbound\""), "{out}");
    assert!(out.contains("table bridge moat {"), "{out}");
    assert!(out.contains("02:77:00:00:00:01  camera"), "{out}");
}

#[test]
fn version_and_bad_arguments() {
    let (code, out, _) = moat(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("moat {}", env!("CARGO_PKG_VERSION")));
    let (code, _, err) = moat(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand 'frobnicate'"), "{err}");
}

#[test]
fn mud_import_prints_a_policy_and_reports_what_it_left_out() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../policy/tests/mud/abstractions.json");
    let (code, out, err) = moat(&["mud", "import", fixture, "--device", "02:77:00:00:00:07", "--name", "thermo"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[policies.mud_thermostat-x]") && out.contains("name = \"thermo\""), "{out}");
    assert!(err.contains("warning: not translated: acl fr ace ctrl"), "{err}");
    // The output is a config fragment `moat check` accepts.
    let path = write("imported.toml", &format!("[gateway]\nlan = \"br-lan\"\nwan = \"wan0\"\n\n{out}"));
    let (code, _, err) = moat(&["check", "--config", &path.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = moat(&["mud", "import", fixture, "--device", "ff:ff:ff:ff:ff:ff"]);
    assert_eq!(code, 2);
    assert!(err.contains("bad MAC address"), "{err}");
    let bad = write("bad-mud.json", "{\"ietf-mud:mud\": {}}");
    let (code, _, err) = moat(&["mud", "import", &bad.display().to_string(), "--device", "02:77:00:00:00:07"]);
    assert_eq!(code, 2);
    assert!(err.contains("missing \"ietf-access-control-list:acls\".acl"), "{err}");
}

#[test]
fn completions_cover_the_api_commands() {
    let (code, bash, _) = moat(&["completions", "bash"]);
    assert_eq!(code, 0);
    for word in ["devices", "quarantine", "approve", "events", "--follow", "--socket"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let (code, zsh, _) = moat(&["completions", "zsh"]);
    assert!(code == 0 && zsh.starts_with("#compdef moat"), "{zsh}");
    let (code, _, err) = moat(&["completions", "fish-ish"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn api_commands_without_a_daemon_say_so_and_exit_3() {
    let sock = write("absent.sock", "").with_file_name("none.sock");
    let s = sock.display().to_string();
    let (code, _, err) = moat(&["--socket", &s, "devices"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.starts_with(&format!("moat: moat is not running (no control socket at {s}")), "{err}");
    let (code, _, err) = moat(&["plan", "--socket", &s]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("moat plan --config FILE"), "{err}");
    let (code, _, err) = moat(&["device", "cam", "quarantine"]);
    assert_eq!(code, 2, "a quarantine needs a reason: {err}");
    assert!(err.contains("--reason"), "{err}");
}

#[test]
fn every_shipped_config_is_valid() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let mut found = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
            if entry.is_dir() {
                dirs.push(entry);
            } else if entry.extension().is_some_and(|e| e == "toml") {
                found.push(entry);
            }
        }
    }
    assert!(found.len() >= 2, "the bundled and OpenWrt configs at least: {found:?}");
    for path in found {
        let (code, out, err) = moat(&["check", "--config", &path.display().to_string()]);
        assert_eq!(code, 0, "{}: {out}{err}", path.display());
    }
}
