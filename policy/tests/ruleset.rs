//! Golden test: the nft ruleset a config compiles to (reviewed by eye once;
//! regenerate with MOAT_BLESS=1 after an intended change and review the diff).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::path::Path;

use moat_policy::{nft, Config};

fn golden(name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let cfg = Config::load(&dir.join(format!("{name}.toml"))).unwrap_or_else(|e| panic!("{e}"));
    let got = nft::ruleset(&cfg);
    let want_path = dir.join(format!("{name}.nft"));
    if std::env::var_os("MOAT_BLESS").is_some() {
        std::fs::write(&want_path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&want_path).unwrap_or_else(|e| panic!("{}: {e}", want_path.display()));
    assert_eq!(got, want, "ruleset for {name}.toml changed");
}

#[test]
fn basic_ruleset() {
    golden("basic");
}

#[test]
fn every_policy_element() {
    golden("policies");
}

#[test]
fn teardown_only_touches_moats_tables() {
    assert_eq!(
        nft::teardown(),
        "table inet moat\ndelete table inet moat\ntable bridge moat\ndelete table bridge moat\n"
    );
}
