//! The compiled rulesets on the real nft, in a namespace of their own: they
//! apply, incremental device changes give the same table as a full apply, and
//! a rejected transaction changes nothing and reports nft's own message.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
};

use moat_policy::{nft, Config};
use moat_tests::cmd::{self, run};

/// A bare namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        assert!(cmd::is_root(), "needs root (network namespaces)");
        let name = format!("moat-{}-nft-{tag}", std::process::id());
        run(None, &["ip", "netns", "add", &name]).unwrap();
        Netns(name)
    }

    /// moat's `nft::apply` on `script` inside the namespace: Ok or moat's error text.
    fn apply(&self, script: &str) -> Result<(), String> {
        let helper = moat_tests::moat::binary().unwrap().with_file_name("moat-nft-apply");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .arg(helper)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn list(&self) -> String {
        run(Some(&self.0), &["nft", "list", "ruleset"]).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = cmd::output(None, &["ip", "netns", "del", &self.0]);
    }
}

fn golden(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../policy/tests/golden/{name}.toml"));
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn golden_rulesets_apply_and_replace_themselves() {
    for name in ["basic", "policies"] {
        let ns = Netns::new(name);
        let cfg = golden(name);
        ns.apply(&nft::ruleset(&cfg)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let first = ns.list();
        assert!(first.contains("map to_wan_policy") && first.contains("table bridge moat"), "{first}");
        // Applying again replaces the tables rather than failing or duplicating.
        ns.apply(&nft::ruleset(&cfg)).unwrap_or_else(|e| panic!("{name} again: {e}"));
        assert_eq!(ns.list(), first, "{name}: a second apply is a no-op replace");
        ns.apply(&nft::teardown()).unwrap();
        assert!(!ns.list().contains("moat"), "teardown removes both tables");
    }
}

#[test]
fn device_changes_equal_a_full_apply_and_rejections_change_nothing() {
    let ns = Netns::new("incr");
    let mut old = golden("policies");
    old.groups.clear(); // with groups every device change is a full replace
    let mut new = old.clone();
    new.devices.retain(|d| d.name != "humidity"); // removed
    new.devices[0].policy = "sensors".into(); // moved to another policy
    let mut extra = new.devices[1].clone(); // added
    extra.name = "new sensor".into();
    extra.mac = "02:77:00:00:00:09".parse().unwrap();
    extra.id = 9;
    new.devices.push(extra);

    ns.apply(&nft::ruleset(&new)).unwrap();
    let full = ns.list();
    ns.apply(&nft::ruleset(&old)).unwrap();
    let before = ns.list();
    let changes = nft::device_changes(&old, &new).expect("only devices changed");
    assert!(!changes.contains("table"), "element changes only, no table reload:\n{changes}");

    // A transaction nft rejects (a delete of an element that is not there)
    // leaves everything as it was, and the error is nft's own.
    let bad = format!("{changes}delete element inet moat to_wan_policy {{ 0x8000ff00 }}\n");
    let err = ns.apply(&bad).expect_err("nft must reject a delete of a missing element");
    assert!(err.contains("nft rejected the test transaction"), "{err}");
    assert!(err.contains("Error:"), "nft's own message is in the error: {err}");
    assert_eq!(ns.list(), before, "a rejected transaction changed nothing");

    ns.apply(&changes).unwrap();
    assert_eq!(ns.list(), full, "incremental changes give exactly the full apply's ruleset");
    assert_eq!(nft::device_changes(&new, &new), None, "nothing to do");
    let mut other = new.clone();
    other.gateway.wan = "wan1".into();
    assert_eq!(nft::device_changes(&new, &other), None, "a non-device change needs a full apply");
}

#[test]
fn dns_learned_elements_expire_and_refresh() {
    let ns = Netns::new("dns");
    let cfg = golden("policies");
    ns.apply(&nft::ruleset(&cfg)).unwrap();
    let camera = &cfg.policies["camera"];
    let entries: Vec<_> = camera.domains().filter(|(d, _)| d.matches("cdn.vendor.example")).map(|(_, a)| a).collect();
    assert_eq!(entries.len(), 1);
    let add = nft::dns_elements("camera", "198.51.100.20".parse().unwrap(), &entries, 2).unwrap();
    ns.apply(&add).unwrap();
    assert!(ns.list().contains("198.51.100.20 . tcp . 443 timeout 2s"), "{}", ns.list());
    // Re-learning refreshes the timeout instead of failing on the existing element.
    let again = nft::dns_elements("camera", "198.51.100.20".parse().unwrap(), &entries, 600).unwrap();
    ns.apply(&again).unwrap();
    assert!(ns.list().contains("198.51.100.20 . tcp . 443 timeout 10m"), "{}", ns.list());
    let short = nft::dns_elements("camera", "2001:db8:7::1".parse().unwrap(), &entries, 1).unwrap();
    ns.apply(&short).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(!ns.list().contains("2001:db8:7::1"), "the element expired");
    ns.apply(&nft::host_elements("nas", "10.77.0.40".parse().unwrap())).unwrap();
    assert!(ns.list().contains("10.77.0.40"), "hosts set element for inbound openings");
}
