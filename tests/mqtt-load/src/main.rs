//! `moat-mqtt-load`: an MQTT 3.1.1 over TLS load generator, used to compare moat's MQTT front
//! with mosquitto on the same machine, with the same client, in the same run.
//!
//! ```text
//! moat-mqtt-load throughput --host NAME --port P [--connect-addr IP] --ca FILE --publishers N \
//!     --messages M --qos 1 --payload 64 --creds FILE [--subscriber-user U] [--topic-prefix T] \
//!     [--slow-ms 0] [--duration-s S]
//! moat-mqtt-load idle --host NAME --port P [--connect-addr IP] --ca FILE --connections N \
//!     --creds FILE --hold-s S
//! ```
//!
//! * TLS: one rustls (ring) client config for all connections, trusting only `--ca`; SNI is
//!   `--host` (a DNS name such as `localhost`); TCP goes to `--connect-addr` (default: resolve
//!   `--host`) at `--port`.
//! * `--creds FILE`: lines `username password`; publisher *i* logs in with line *i mod lines*,
//!   the subscriber with the line of `--subscriber-user` (default: the first line).
//! * `throughput`: one subscriber (`load-sub`) subscribes QoS 1 to `<prefix>/#`, then N
//!   publishers (`load-pub-<i>`) publish M messages in total (QoS 1, at most 100 in flight each)
//!   to `<prefix>/<i>`. Payload bytes 0..8 are the send time (ns, big endian, since a shared
//!   instant), 8..16 the sequence number. The subscriber PUBACKs each message, optionally
//!   sleeping `--slow-ms` after each. Prints one JSON line: `published`, `acked`, `delivered`,
//!   `secs` (first publish to last delivery), `msgs_per_s` (delivered / secs), `p50_ms`,
//!   `p99_ms`, `max_ms` (publish-to-delivery latency), `connect_failures`.
//! * `idle`: opens N connections (32 handshakes at a time, keepalive 60 s, PINGREQ every 30 s),
//!   holds them `--hold-s` seconds, prints `{"connected": n, "failed": n}`, then disconnects.
//!
//! Only the JSON result goes to stdout; progress and errors go to stderr.

mod idle;
mod mqtt;
mod publisher;
mod subscriber;
mod throughput;
mod tls;

use std::collections::HashMap;
use std::fmt::Display;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

const USAGE: &str = "usage:
  moat-mqtt-load throughput --host NAME --port P [--connect-addr IP] --ca FILE --publishers N
      --messages M --qos 1 --payload BYTES --creds FILE [--subscriber-user U]
      [--topic-prefix T] [--slow-ms MS] [--duration-s S]
  moat-mqtt-load idle --host NAME --port P [--connect-addr IP] --ca FILE --connections N
      --creds FILE --hold-s S";

/// Where and how to connect: shared by both commands.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub connect_addr: Option<IpAddr>,
    pub ca: PathBuf,
    pub creds: PathBuf,
}

/// Options of `throughput`.
#[derive(Debug, Clone)]
pub struct ThroughputOpts {
    pub target: Target,
    pub publishers: usize,
    pub messages: u64,
    pub payload: usize,
    pub subscriber_user: Option<String>,
    pub topic_prefix: String,
    pub slow_ms: u64,
    pub duration: Option<Duration>,
}

/// Options of `idle`.
#[derive(Debug, Clone)]
pub struct IdleOpts {
    pub target: Target,
    pub connections: usize,
    pub hold: Duration,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moat-mqtt-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else { bail!("missing command\n{USAGE}") };
    if rest.iter().any(|a| a == "-h" || a == "--help") || matches!(cmd.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    match cmd.as_str() {
        "throughput" => {
            let opts = parse_throughput(rest)?;
            runtime.block_on(throughput::run(opts))
        }
        "idle" => {
            let opts = parse_idle(rest)?;
            runtime.block_on(idle::run(opts))
        }
        other => bail!("unknown command {other:?} (expected `throughput` or `idle`)\n{USAGE}"),
    }
}

const TARGET_FLAGS: &[&str] = &["host", "port", "connect-addr", "ca", "creds"];

fn parse_throughput(args: &[String]) -> Result<ThroughputOpts> {
    let extra =
        ["publishers", "messages", "qos", "payload", "subscriber-user", "topic-prefix", "slow-ms", "duration-s"];
    let mut f = Flags::parse(args, &[TARGET_FLAGS, &extra].concat())?;
    let target = parse_target(&mut f)?;
    let qos: u8 = f.req("qos")?;
    if qos != 1 {
        bail!("--qos {qos}: only QoS 1 is supported");
    }
    let publishers: usize = f.req("publishers")?;
    let messages: u64 = f.req("messages")?;
    let payload: usize = f.req("payload")?;
    if publishers == 0 || messages == 0 {
        bail!("--publishers and --messages must be at least 1");
    }
    if !(mqtt::PAYLOAD_HEADER..=mqtt::MAX_PAYLOAD).contains(&payload) {
        bail!("--payload {payload}: must be {} ..= {} bytes", mqtt::PAYLOAD_HEADER, mqtt::MAX_PAYLOAD);
    }
    let topic_prefix: String = f.opt("topic-prefix")?.unwrap_or_else(|| "load".to_owned());
    if topic_prefix.is_empty() || topic_prefix.contains(['#', '+']) {
        bail!("--topic-prefix {topic_prefix:?}: must be non-empty and free of wildcards");
    }
    let duration = f.opt::<f64>("duration-s")?.map(positive_secs).transpose().context("--duration-s")?;
    Ok(ThroughputOpts {
        target,
        publishers,
        messages,
        payload,
        subscriber_user: f.opt("subscriber-user")?,
        topic_prefix,
        slow_ms: f.opt("slow-ms")?.unwrap_or(0),
        duration,
    })
}

fn parse_idle(args: &[String]) -> Result<IdleOpts> {
    let mut f = Flags::parse(args, &[TARGET_FLAGS, &["connections", "hold-s"]].concat())?;
    let target = parse_target(&mut f)?;
    let connections: usize = f.req("connections")?;
    if connections == 0 {
        bail!("--connections must be at least 1");
    }
    let hold = positive_secs(f.req("hold-s")?).context("--hold-s")?;
    Ok(IdleOpts { target, connections, hold })
}

fn parse_target(f: &mut Flags) -> Result<Target> {
    Ok(Target {
        host: f.req("host")?,
        port: f.req("port")?,
        connect_addr: f.opt("connect-addr")?,
        ca: f.req("ca")?,
        creds: f.req("creds")?,
    })
}

fn positive_secs(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).ok().filter(|d| !d.is_zero()).ok_or_else(|| anyhow!("{s}: must be > 0 seconds"))
}

/// `--name value` / `--name=value` pairs, checked against the command's allowed names.
#[derive(Debug)]
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: &[String], allowed: &[&str]) -> Result<Self> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else { bail!("unexpected argument {arg:?}\n{USAGE}") };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => (name.to_owned(), it.next().ok_or_else(|| anyhow!("--{name} needs a value"))?.clone()),
            };
            if !allowed.contains(&name.as_str()) {
                bail!("unknown option --{name} (this command takes: --{})", allowed.join(", --"));
            }
            if map.insert(name.clone(), value).is_some() {
                bail!("--{name} given twice");
            }
        }
        Ok(Self(map))
    }

    fn opt<T: FromStr>(&mut self, name: &str) -> Result<Option<T>>
    where
        T::Err: Display,
    {
        self.0
            .remove(name)
            .map(|v| v.parse::<T>().map_err(|e| anyhow!("invalid value {v:?} for --{name}: {e}")))
            .transpose()
    }

    fn req<T: FromStr>(&mut self, name: &str) -> Result<T>
    where
        T::Err: Display,
    {
        self.opt(name)?.ok_or_else(|| anyhow!("missing required option --{name}\n{USAGE}"))
    }
}
