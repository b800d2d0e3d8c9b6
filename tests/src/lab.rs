//! The lab topology (addresses from DESIGN.md's lab plan, nothing routed out):
//!
//! ```text
//!  dev0 eth0 ─┐                       gateway                     internet
//!  dev1 eth0 ─┼─ lanN ─ br-lan 10.77.0.1/16 fd77::1/64
//!  ...        ┘         wan0 203.0.113.1/24 ── eth0 203.0.113.2/24
//!                            2001:db8:ffff::1     2001:db8:ffff::2
//!                                                 lo 198.51.100.10, 2001:db8:1::10
//! ```
//! Device i has MAC as given, 10.77.0.(10+i) and fd77::(10+i).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::cmd::{self, run, sh};

pub const LAN_IF: &str = "br-lan";
pub const WAN_IF: &str = "wan0";
pub const GW_V4: &str = "10.77.0.1";
pub const GW_V6: &str = "fd77::1";
pub const INTERNET_V4: &str = "198.51.100.10";
/// More internet hosts (same servers, other addresses): for allowlist tests.
pub const INTERNET_V4_B: &str = "198.51.100.20";
pub const INTERNET_V4_C: &str = "198.51.100.30";
/// The internet's DNS resolver (dnsmasq, started by `start_resolver`).
pub const RESOLVER_V4: &str = "198.51.100.53";
pub const INTERNET_V6: &str = "2001:db8:1::10";
/// Ports the internet host listens on: HTTP, echo (7), telnet-like banners
/// (23, 2323, 8023) and HTTPS (443, and 1883: TLS on the MQTT port).
pub const SERVER_PORTS: [&str; 7] = ["80", "7", "23", "2323", "8023", "tls:443", "tls:1883"];
const NS_PREFIX: &str = "moat-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A device namespace on a bridge port.
#[derive(Debug, Clone)]
pub struct LabDevice {
    pub ns: String,
    pub mac: String,
    pub ipv4: String,
    pub ipv6: String,
}

/// A running lab; dropping it kills its processes and deletes its namespaces.
#[derive(Debug)]
pub struct Lab {
    pub id: String,
    pub gw: String,
    pub inet: String,
    pub devices: Vec<LabDevice>,
    pub dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    /// Builds gateway, internet and one namespace per MAC, and starts the
    /// internet servers.
    pub fn new(macs: &[&str]) -> Result<Self> {
        if !cmd::is_root() {
            bail!("lab tests need root (network namespaces, eBPF, nftables): run scripts/test as root");
        }
        reap_stale();
        let id = format!("{NS_PREFIX}{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir)?;
        let mut lab = Lab {
            gw: format!("{id}-gw"),
            inet: format!("{id}-inet"),
            devices: Vec::new(),
            dir,
            children: Vec::new(),
            id,
        };
        lab.build_core().context("building gateway and internet")?;
        for (i, mac) in macs.iter().enumerate() {
            let dev = lab.add_device(i, mac).with_context(|| format!("adding device {i}"))?;
            lab.devices.push(dev);
        }
        lab.start_servers()?;
        let pins = lab.pin_dir();
        std::fs::create_dir_all(&pins)?;
        run(None, &["mount", "-t", "bpf", "bpf", &pins.display().to_string()])?;
        Ok(lab)
    }

    fn build_core(&mut self) -> Result<()> {
        for ns in [&self.gw, &self.inet] {
            run(None, &["ip", "netns", "add", ns])?;
            sh(ns, "ip link set lo up; sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0")?;
        }
        let (gw, inet) = (self.gw.as_str(), self.inet.as_str());
        run(None, &["ip", "-n", gw, "link", "add", WAN_IF, "type", "veth", "peer", "name", "eth0", "netns", inet])?;
        sh(
            gw,
            &format!(
                "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
             ip link add {LAN_IF} type bridge stp_state 0 mcast_snooping 0
             ip link set {LAN_IF} up
             ip addr add {GW_V4}/16 dev {LAN_IF}
             ip addr add {GW_V6}/64 dev {LAN_IF} nodad
             ip link set {WAN_IF} up
             ip addr add 203.0.113.1/24 dev {WAN_IF}
             ip addr add 2001:db8:ffff::1/64 dev {WAN_IF} nodad
             ip route add 198.51.100.0/24 via 203.0.113.2
             ip -6 route add 2001:db8:1::/64 via 2001:db8:ffff::2"
            ),
        )?;
        sh(
            inet,
            &format!(
                "ip link set eth0 up
             ip addr add 203.0.113.2/24 dev eth0
             ip addr add 2001:db8:ffff::2/64 dev eth0 nodad
             ip addr add {INTERNET_V4}/32 dev lo
             ip addr add {INTERNET_V4_B}/32 dev lo
             ip addr add {INTERNET_V4_C}/32 dev lo
             ip addr add {RESOLVER_V4}/32 dev lo
             ip addr add {INTERNET_V6}/128 dev lo
             ip route add 10.77.0.0/16 via 203.0.113.1
             ip -6 route add fd77::/64 via 2001:db8:ffff::1"
            ),
        )?;
        Ok(())
    }

    fn add_device(&self, i: usize, mac: &str) -> Result<LabDevice> {
        let dev = LabDevice {
            ns: format!("{}-d{i}", self.id),
            mac: mac.to_string(),
            ipv4: format!("10.77.0.{}", 10 + i),
            ipv6: format!("fd77::{}", 10 + i),
        };
        run(None, &["ip", "netns", "add", &dev.ns])?;
        let port = format!("lan{i}");
        run(
            None,
            &["ip", "-n", &self.gw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &dev.ns],
        )?;
        sh(&self.gw, &format!("ip link set {port} master {LAN_IF} && ip link set {port} up"))?;
        sh(
            &dev.ns,
            &format!(
                "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
             ip link set lo up
             ip link set eth0 address {mac}
             ip link set eth0 up
             ip addr add {}/16 dev eth0
             ip addr add {}/64 dev eth0 nodad
             ip route add default via {GW_V4}
             ip -6 route add default via {GW_V6}",
                dev.ipv4, dev.ipv6
            ),
        )?;
        Ok(dev)
    }

    fn start_servers(&mut self) -> Result<()> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/servers.py");
        let log = self.server_log();
        let dir = self.dir.display().to_string();
        // A throwaway self-signed certificate for the lab's TLS ports.
        let (key, cert) = (format!("{dir}/key.pem"), format!("{dir}/cert.pem"));
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let openssl = [&["openssl", "req", "-x509"][..], &ec, &["-nodes", "-days", "1", "-subj", "/CN=internet.lab"]];
        let mut req: Vec<&str> = openssl.concat();
        req.extend(["-keyout", &key, "-out", &cert]);
        cmd::run(None, &req)?;
        let mut args = vec!["python3".to_string(), script.display().to_string(), log.display().to_string(), dir];
        args.extend(SERVER_PORTS.iter().map(|p| p.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let inet = self.inet.clone();
        self.spawn(&inet, &refs, "servers")?;
        wait_for(Duration::from_secs(10), || Ok(std::fs::read_to_string(&log).unwrap_or_default().contains("ready")))
            .context("internet servers did not start")
    }

    /// Starts dnsmasq in `ns` as an authoritative-only DNS server on `listen`,
    /// answering `records` (dnsmasq options such as `--address=/name/ip` or
    /// `--cname=alias,target`) with the given TTL.
    pub fn start_dns(&mut self, ns: &str, listen: &str, records: &[String], ttl: u32, name: &str) -> Result<()> {
        let mut args: Vec<String> = [
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--log-facility=-",
            "--user=root",
            "--pid-file",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.push(format!("--listen-address={listen}"));
        args.push(format!("--local-ttl={ttl}"));
        args.extend(records.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let ns = ns.to_string();
        self.spawn(&ns, &refs, name)?;
        let probe = records
            .iter()
            .find_map(|r| r.strip_prefix("--address=/").or_else(|| r.strip_prefix("--host-record=")))
            .and_then(|r| r.split(['/', ',']).next());
        let probe = probe.unwrap_or("localhost").to_string();
        wait_for(Duration::from_secs(10), || {
            let out = cmd::output(Some(&ns), &["dig", "+short", "+time=1", "+tries=1", &format!("@{listen}"), &probe])?;
            Ok(out.status.success() && !out.stdout.is_empty())
        })
        .with_context(|| format!("dnsmasq on {listen} did not answer"))
    }

    /// The lab's bpffs (mounted in the test's own mount namespace, so pins
    /// outlive a moat started under `ip netns exec`, as on a real gateway).
    pub fn pin_dir(&self) -> PathBuf {
        self.dir.join("bpf")
    }

    /// A config template with `@RUN_DIR@` and `@PIN_DIR@` filled in.
    pub fn fill(&self, config: &str) -> String {
        config
            .replace("@RUN_DIR@", &self.dir.join("run").display().to_string())
            .replace("@PIN_DIR@", &self.pin_dir().display().to_string())
            .replace("@STATE_DIR@", &self.dir.join("state").display().to_string())
    }

    /// DNS (`gateway.lab`) and DHCP (10.77.1.100-150, replies broadcast) on
    /// the gateway, as a home router serves them.
    pub fn start_gateway_dhcp(&mut self) -> Result<()> {
        let gw = self.gw.clone();
        let leases = self.dir.join("leases").display().to_string();
        let args = [
            format!("--address=/gateway.lab/{GW_V4}"),
            format!("--interface={LAN_IF}"),
            "--dhcp-range=10.77.1.100,10.77.1.150,255.255.0.0,1h".to_string(),
            format!("--dhcp-leasefile={leases}"),
            "--dhcp-authoritative".to_string(),
            "--dhcp-broadcast".to_string(),
            "--no-ping".to_string(),
        ];
        self.start_dns(&gw, GW_V4, &args, 60, "gw-dhcp")
    }

    /// Path of the servers' accept log.
    pub fn server_log(&self) -> PathBuf {
        self.dir.join("servers.log")
    }

    /// Connections the internet servers accepted on `port` from `peer_ip`.
    pub fn accepted(&self, port: u16, peer_ip: &str) -> usize {
        let want = format!("accept {port} {peer_ip}");
        std::fs::read_to_string(self.server_log()).unwrap_or_default().lines().filter(|l| *l == want).count()
    }

    /// Starts a long-running process in `ns`, its output to `<dir>/<name>.log`;
    /// it is killed when the lab drops. Returns its pid.
    pub fn spawn(&mut self, ns: &str, args: &[&str], name: &str) -> Result<u32> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {args:?}"))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Pins both neighbour entries between a device and the gateway, so no ARP
    /// traffic mixes with what a test counts.
    pub fn static_neighbours(&self, dev: &LabDevice) -> Result<()> {
        let gw_mac = run(Some(&self.gw), &["cat", &format!("/sys/class/net/{LAN_IF}/address")])?;
        sh(&dev.ns, &format!("ip neigh replace {GW_V4} lladdr {} dev eth0 nud permanent", gw_mac.trim()))?;
        sh(&self.gw, &format!("ip neigh replace {} lladdr {} dev {LAN_IF} nud permanent", dev.ipv4, dev.mac))?;
        Ok(())
    }

    /// Frames the device has transmitted on its interface.
    pub fn tx_packets(&self, dev: &LabDevice) -> Result<u64> {
        let s = run(Some(&dev.ns), &["cat", "/sys/class/net/eth0/statistics/tx_packets"])?;
        s.trim().parse().context("parsing tx_packets")
    }
}

/// True when a TCP connection from `ns` to host:port is established within 2 s.
pub fn connects(ns: &str, host: &str, port: u16) -> Result<bool> {
    let family = if host.contains(':') { "-6" } else { "-4" };
    let out = cmd::output(Some(ns), &["nc", family, "-z", "-w", "2", host, &port.to_string()])?;
    Ok(out.status.success())
}

/// True when `ping -c 1` from `ns` to `host` gets a reply within 1 s.
pub fn pings(ns: &str, host: &str) -> Result<bool> {
    Ok(cmd::output(Some(ns), &["ping", "-c", "1", "-W", "1", "-q", host])?.status.success())
}

/// Polls `f` every 50 ms until it returns true or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    loop {
        if f()? {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Every namespace this lab made carries its id, whatever a test did to `devices`.
        let mine = format!("{}-", self.id);
        for ns in lab_namespaces().into_iter().filter(|ns| ns.starts_with(&mine)) {
            delete_ns(&ns);
        }
        // Unmounting the lab's bpffs drops any pinned classifier left behind.
        let _ = cmd::output(None, &["umount", "-l", &self.pin_dir().display().to_string()]);
        if std::env::var_os("MOAT_KEEP_LAB").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Kills what still runs in `ns` and deletes it.
fn delete_ns(ns: &str) {
    if let Ok(out) = cmd::output(None, &["ip", "netns", "pids", ns]) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = cmd::output(None, &["kill", "-9", pid]);
        }
    }
    let _ = cmd::output(None, &["ip", "netns", "del", ns]);
}

/// Lab namespaces whose creating process no longer exists.
pub fn stale_namespaces() -> Vec<String> {
    let list = cmd::output(None, &["ip", "netns", "list"]).map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    list.unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| {
            let pid = ns.strip_prefix(NS_PREFIX).and_then(|r| r.split('-').next());
            pid.is_some_and(|p| !Path::new("/proc").join(p).exists())
        })
        .map(str::to_string)
        .collect()
}

/// Deletes namespaces left by lab runs that were killed before cleaning up.
pub fn reap_stale() {
    for ns in stale_namespaces() {
        delete_ns(&ns);
    }
}

/// All lab namespaces present, stale or not.
pub fn lab_namespaces() -> Vec<String> {
    let list = cmd::output(None, &["ip", "netns", "list"]).map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    list.unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| ns.starts_with(NS_PREFIX))
        .map(str::to_string)
        .collect()
}
