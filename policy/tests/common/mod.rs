//! Helpers shared by the validation tests.
#![allow(dead_code, clippy::panic)] // each test file uses what it needs; a failing test panics

use std::path::Path;

use moat_policy::{Config, Diagnostics};

/// The smallest valid `[gateway]`: 3 lines, so a body's first line is line 4.
pub const HEAD: &str = "[gateway]\nlan = \"br-lan\"\nwan = \"wan0\"\n";

/// HEAD + `body`, parsed and validated.
pub fn parse(body: &str) -> Result<Config, Diagnostics> {
    Config::parse(Path::new("t.toml"), &format!("{HEAD}{body}"))
}

/// `line:col: message` of the only error in HEAD + `body`.
pub fn error(body: &str) -> String {
    match parse(body) {
        Ok(_) => panic!("should be rejected:\n{body}"),
        Err(d) => {
            assert_eq!(d.0.len(), 1, "expected one error: {d}");
            format!("{}:{}: {}", d.0[0].line, d.0[0].col, d.0[0].message)
        }
    }
}
