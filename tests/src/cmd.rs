//! Running commands, inside a namespace or not, with a time limit so a hung
//! tool fails its test instead of hanging the suite.

use std::process::{Command, Output};

use anyhow::{bail, Context as _, Result};

/// Seconds any one lab command may take.
pub const CMD_TIMEOUT_SECS: u32 = 30;

/// Runs `args` (optionally inside netns `ns`) and returns its output, whatever the exit status.
pub fn output(ns: Option<&str>, args: &[&str]) -> Result<Output> {
    let mut c = Command::new("timeout");
    c.arg(CMD_TIMEOUT_SECS.to_string());
    if let Some(ns) = ns {
        c.args(["ip", "netns", "exec", ns]);
    }
    c.args(args);
    c.output().with_context(|| format!("spawning {args:?}"))
}

/// Runs `args` and fails with its stderr unless it exits 0.
pub fn run(ns: Option<&str>, args: &[&str]) -> Result<String> {
    let out = output(ns, args)?;
    if !out.status.success() {
        bail!("{args:?} in {ns:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `sh -ec script` inside `ns`: fails at the first command that fails.
pub fn sh(ns: &str, script: &str) -> Result<String> {
    run(Some(ns), &["sh", "-ec", script])
}

/// True when running as root (lab tests need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
