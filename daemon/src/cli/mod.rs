//! The `moat` commands that talk to a running daemon through the control
//! API. Exit codes (docs/cli.md): 0 done, 1 the daemon failed, 2 the request
//! was refused as invalid (bad MAC, unknown device or policy), 3 the daemon
//! is not running, 4 permission denied.

pub mod client;
mod show;
pub mod table;

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;
use serde_json::{json, Value};

use client::{ClientError, Reply};

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID: u8 = 2;
pub const EXIT_NOT_RUNNING: u8 = 3;
pub const EXIT_DENIED: u8 = 4;

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/moat/moat.sock";

/// Options every API command takes.
#[derive(Debug, Clone)]
pub struct Opts {
    pub socket: PathBuf,
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ApiCommand {
    /// What moat is doing: uptime, devices by state, drops, reloads, health.
    Status,
    /// Every device: configured ones and those moat has only seen.
    Devices,
    /// Show one device, or decide about it.
    Device {
        /// The device's MAC address or name.
        device: String,
        #[command(subcommand)]
        action: Option<DeviceAction>,
    },
    /// Recent events (new devices, blocked flows); --follow streams them live.
    Events {
        /// Keep printing events as they happen (Ctrl-C to stop).
        #[arg(short, long)]
        follow: bool,
    },
    /// Re-read the config file and apply it (like SIGHUP); a bad config
    /// changes nothing and its errors are printed.
    Reload,
}

#[derive(Subcommand, Debug, Clone)]
pub enum DeviceAction {
    /// What moat knows: policy, state, traffic by class, drops, addresses.
    Show,
    /// Let the device through with a policy; lifts a quarantine. A device the
    /// config does not list needs --policy (or [gateway] approved_policy).
    Approve {
        #[arg(short, long)]
        policy: Option<String>,
        /// A name for a device the config does not list.
        #[arg(short, long)]
        name: Option<String>,
    },
    /// Cut the device off (it keeps DNS and DHCP) until approved again.
    Quarantine {
        /// Why (kept with the decision and shown by `moat devices`).
        #[arg(short, long)]
        reason: String,
    },
    /// Give the device another policy from the config.
    Policy { policy: String },
    /// Delete what moat holds about the device: inventory, counters, MQTT
    /// password, recent events and any decision made about it.
    Forget,
}

/// Runs `cmd` against the daemon; returns the process exit code.
pub fn run(cmd: &ApiCommand, opts: &Opts) -> ExitCode {
    dispatch(cmd, opts).unwrap_or_else(|e| {
        eprintln!("moat: {e}");
        client_exit(&e)
    })
}

fn client_exit(e: &ClientError) -> ExitCode {
    ExitCode::from(match e {
        ClientError::NotRunning { .. } | ClientError::Ended => EXIT_NOT_RUNNING,
        ClientError::Denied { .. } => EXIT_DENIED,
        ClientError::Io { .. } | ClientError::Protocol(_) => EXIT_FAILED,
    })
}

/// `moat plan` without --config: what the running daemon enforces.
pub fn plan(opts: &Opts) -> ExitCode {
    match client::request(&opts.socket, "GET", "/v1/plan", None) {
        Ok(r) => finish(&r, opts, |_| String::from_utf8_lossy(&r.body).into_owned()),
        Err(e) => {
            eprintln!("moat: {e}\n(moat plan --config FILE plans a config file without a daemon)");
            client_exit(&e)
        }
    }
}

/// A request to make and how to show its answer.
type Plan = (&'static str, String, Option<Value>, fn(&Value) -> String);

fn dispatch(cmd: &ApiCommand, opts: &Opts) -> Result<ExitCode, ClientError> {
    let sock = &opts.socket;
    let (method, path, body, render): Plan = match cmd {
        ApiCommand::Status => ("GET", "/v1/status".into(), None, show::status),
        ApiCommand::Devices => ("GET", "/v1/devices".into(), None, show::devices),
        ApiCommand::Reload => ("POST", "/v1/reload".into(), None, show::reloaded),
        ApiCommand::Events { follow: true } => return follow(opts),
        ApiCommand::Events { follow: false } => {
            let r = client::request(sock, "GET", "/v1/events", None)?;
            return Ok(finish(&r, opts, |_| show::event_lines(&String::from_utf8_lossy(&r.body))));
        }
        ApiCommand::Device { device, action } => {
            let base = format!("/v1/devices/{}", encode(device));
            match action.clone().unwrap_or(DeviceAction::Show) {
                DeviceAction::Show => ("GET", base, None, show::device),
                DeviceAction::Approve { policy, name } => {
                    ("POST", format!("{base}/approve"), Some(json!({ "policy": policy, "name": name })), show::decided)
                }
                DeviceAction::Quarantine { reason } => {
                    ("POST", format!("{base}/quarantine"), Some(json!({ "reason": reason })), show::decided)
                }
                DeviceAction::Policy { policy } => {
                    ("POST", format!("{base}/policy"), Some(json!({ "policy": policy })), show::decided)
                }
                DeviceAction::Forget => ("DELETE", base, None, show::forgotten),
            }
        }
    };
    let r = client::request(sock, method, &path, body.as_ref())?;
    Ok(finish(&r, opts, render))
}

/// Prints the answer (raw JSON with --json) and picks the exit code.
fn finish(r: &Reply, opts: &Opts, render: impl FnOnce(&Value) -> String) -> ExitCode {
    if r.status != 200 {
        if opts.json {
            println!("{}", String::from_utf8_lossy(&r.body).trim_end());
        }
        eprintln!("moat: {}", r.error_message());
        return ExitCode::from(exit_code(r.status));
    }
    if opts.json {
        print!("{}", String::from_utf8_lossy(&r.body));
    } else {
        print!("{}", render(&r.json()));
    }
    ExitCode::SUCCESS
}

pub fn exit_code(status: u16) -> u8 {
    match status {
        200 => 0,
        403 => EXIT_DENIED,
        400..=499 => EXIT_INVALID,
        _ => EXIT_FAILED,
    }
}

fn follow(opts: &Opts) -> Result<ExitCode, ClientError> {
    use std::io::Write as _;
    let json = opts.json;
    let refused = client::stream(&opts.socket, "/v1/events?follow=1", |line| {
        // Heartbeats only keep the connection honest; nobody reads them.
        if line.contains("\"kind\":\"heartbeat\"") {
            return true;
        }
        let text = if json { format!("{line}\n") } else { show::event_lines(line) };
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) ends the stream.
        out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_ok()
    })?;
    Ok(match refused {
        Some(r) => finish(&r, opts, |_| String::new()),
        None => ExitCode::SUCCESS,
    })
}

/// Percent-encodes a device name for the URL path.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_documented_exit_codes() {
        let codes: Vec<u8> = [200, 400, 403, 404, 409, 413, 500, 503].into_iter().map(exit_code).collect();
        assert_eq!(codes, [0, 2, 4, 2, 2, 2, 1, 1]);
        assert_eq!(encode("Living room/1"), "Living%20room%2F1");
    }
}
