//! The real `moat` binary running in a lab's gateway namespace.

use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::lab::{self, wait_for, Lab};

/// Path of the moat binary under test: `$MOAT_BIN`, else target/<profile>/moat
/// found from this executable (target/<profile>/deps/test-xxx or target/<profile>/moat-demo).
pub fn binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MOAT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let candidates = exe.ancestors().skip(1).take(2).map(|d| d.join("moat"));
    let found = candidates.clone().find(|p| p.is_file());
    found.with_context(|| {
        let tried: Vec<String> = candidates.map(|p| p.display().to_string()).collect();
        format!(
            "moat binary not found (tried {}): build it first (cargo build -p moat) or set MOAT_BIN",
            tried.join(", ")
        )
    })
}

/// A moat daemon; SIGTERM'd (if still running) when dropped.
#[derive(Debug)]
pub struct Moat {
    child: Option<Child>,
    pub config: PathBuf,
    pub run_dir: PathBuf,
    pub pin_dir: PathBuf,
    pub log: PathBuf,
}

impl Moat {
    /// Writes `config` (with `@RUN_DIR@` replaced) and starts moat in the gateway
    /// namespace; returns once the classifier is attached and the nft table exists.
    pub fn start(lab: &Lab, config: &str) -> Result<Self> {
        Moat::start_as(lab, config, &[binary()?.display().to_string()])
    }

    /// Like `start`, with `program` (a wrapper such as `setpriv ...` that
    /// ends with the moat binary to run) in place of the test's binary.
    pub fn start_as(lab: &Lab, config: &str, program: &[String]) -> Result<Self> {
        let run_dir = lab.dir.join("run");
        // A previous run's snapshot is not readiness.
        let _ = std::fs::remove_file(run_dir.join("status.json"));
        let config_path = lab.dir.join("moat.toml");
        std::fs::write(&config_path, lab.fill(config))?;
        let log = lab.dir.join("moat.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.gw])
            .args(program)
            .args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", std::env::var("MOAT_TEST_LOG").unwrap_or_else(|_| "debug".into()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?)
            .spawn()
            .context("starting moat")?;
        let mut moat = Moat { child: Some(child), config: config_path, run_dir, pin_dir: lab.pin_dir(), log };
        let status_file = moat.run_dir.join("status.json");
        let ready = wait_for(Duration::from_secs(20), || {
            if let Some(code) = moat.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("moat exited early ({code}): {}", moat.log_text());
            }
            Ok(status_file.exists())
        });
        ready.with_context(|| format!("moat did not become ready: {}", moat.log_text()))?;
        Ok(moat)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks for a fresh status snapshot (SIGUSR1) and returns it.
    pub fn status(&self) -> Result<Value> {
        let before = self.read_status().map(|v| v["seq"].as_u64().unwrap_or(0)).unwrap_or(0);
        let pid = self.pid().context("moat is not running")?;
        crate::cmd::run(None, &["kill", "-USR1", &pid.to_string()])?;
        let mut latest = Value::Null;
        wait_for(Duration::from_secs(10), || {
            latest = self.read_status().unwrap_or(Value::Null);
            Ok(latest["seq"].as_u64().unwrap_or(0) > before)
        })?;
        Ok(latest)
    }

    fn read_status(&self) -> Result<Value> {
        let text = std::fs::read_to_string(self.run_dir.join("status.json"))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Rewrites the config file (with `@RUN_DIR@` replaced) and sends SIGHUP;
    /// returns the status once moat has counted one more reload attempt.
    pub fn reload(&self, config: &str) -> Result<Value> {
        let before = self.status()?;
        let attempts =
            |v: &Value| v["reloads"]["ok"].as_u64().unwrap_or(0) + v["reloads"]["failed"].as_u64().unwrap_or(0);
        let n = attempts(&before);
        let filled = config.replace("@RUN_DIR@", &self.run_dir.display().to_string());
        let state = self.run_dir.with_file_name("state").display().to_string();
        let filled = filled.replace("@PIN_DIR@", &self.pin_dir.display().to_string()).replace("@STATE_DIR@", &state);
        std::fs::write(&self.config, filled)?;
        let pid = self.pid().context("moat is not running")?;
        crate::cmd::run(None, &["kill", "-HUP", &pid.to_string()])?;
        let mut latest = Value::Null;
        wait_for(Duration::from_secs(10), || {
            latest = self.status()?;
            Ok(attempts(&latest) > n)
        })?;
        Ok(latest)
    }

    /// The control socket at its default place (`[api]` not set).
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("moat.sock")
    }

    /// Runs `moat --socket <socket> args...` (the CLI talks to this daemon).
    pub fn cli(&self, args: &[&str]) -> Result<CliRun> {
        cli_as(&[], &binary()?, &self.socket(), args)
    }

    /// SIGKILL: the daemon dies without cleaning up anything.
    pub fn kill9(&mut self) -> Result<()> {
        let mut child = self.child.take().context("moat already stopped")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERM, wait for exit; returns the exit status and the final snapshot.
    pub fn stop(&mut self) -> Result<(ExitStatus, Value)> {
        let mut child = self.child.take().context("moat already stopped")?;
        crate::cmd::run(None, &["kill", "-TERM", &child.id().to_string()])?;
        let mut status = None;
        wait_for(Duration::from_secs(20), || {
            status = child.try_wait()?;
            Ok(status.is_some())
        })?;
        let status = status.context("no exit status")?;
        Ok((status, self.read_status()?))
    }
}

impl Drop for Moat {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = crate::cmd::output(None, &["kill", "-TERM", &c.id().to_string()]);
            if wait_for(Duration::from_secs(5), || Ok(c.try_wait()?.is_some())).is_err() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// What a CLI command printed, and its exit code.
#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// The output parsed as JSON (for `--json` runs).
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| format!("not JSON: {self:?}"))
    }
}

/// Runs the moat CLI `bin` against `socket`, behind `prefix` (e.g. a
/// `setpriv` invocation that drops to another user, who must be able to
/// reach `bin`).
pub fn cli_as(prefix: &[&str], bin: &std::path::Path, socket: &std::path::Path, args: &[&str]) -> Result<CliRun> {
    let (program, rest) = match prefix.split_first() {
        Some((p, rest)) => (std::ffi::OsString::from(p), rest),
        None => (bin.as_os_str().to_owned(), &[][..]),
    };
    let mut cmd = Command::new(program);
    cmd.args(rest);
    if !prefix.is_empty() {
        cmd.arg(bin);
    }
    let out =
        cmd.arg("--socket").arg(socket).args(args).stdin(Stdio::null()).output().context("running the moat CLI")?;
    Ok(CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The per-device entry named `name` in a status snapshot.
pub fn device<'a>(status: &'a Value, name: &str) -> Result<&'a Value> {
    status["devices"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["name"] == name))
        .with_context(|| format!("device {name:?} not in status: {status}"))
}

/// A top-level counter of a device entry (e.g. `dropped_packets`).
pub fn counter(dev: &Value, key: &str) -> u64 {
    dev[key].as_u64().unwrap_or(0)
}

/// Packets or bytes (`what`) a device sent (`from_device`) or received (`to_device`).
pub fn traffic(dev: &Value, direction: &str, what: &str) -> u64 {
    dev["total"][direction][what].as_u64().unwrap_or(0)
}

/// The lab config: the lab's interfaces and directories, a clean stop
/// removing enforcement (`on_failure = "open"`, so one test's moat never
/// outlives it), and the given tables. Lines before the first table still
/// belong to `[gateway]`.
pub fn lab_config(tables: &str) -> String {
    format!(
        "[gateway]\nlan = \"{}\"\nwan = \"{}\"\nrun_dir = \"@RUN_DIR@\"\npin_dir = \"@PIN_DIR@\"\nstate_dir = \"@STATE_DIR@\"\non_failure = \"open\"\n\n{tables}",
        lab::LAN_IF,
        lab::WAN_IF
    )
}

/// The lab's two usual devices: `camera` (policy "camera") and `laptop`
/// (policy "open"); tests add the policy tables.
pub const CAMERA_AND_LAPTOP: &str = r#"
[[devices]]
mac = "02:77:00:00:00:01"
name = "camera"
policy = "camera"

[[devices]]
mac = "02:77:00:00:00:02"
name = "laptop"
policy = "open"
"#;

/// The lab config with `camera` blocking `camera_blocks`, `laptop` open, no
/// classes blocked for everyone, and unknown devices quarantined.
pub fn camera_and_laptop(camera_blocks: &str) -> String {
    lab_config(&format!(
        "[defaults]\nblock = []\n\n[policies.camera]\nblock = {camera_blocks}\n\n[policies.open]\nblock = []\n{CAMERA_AND_LAPTOP}"
    ))
}
