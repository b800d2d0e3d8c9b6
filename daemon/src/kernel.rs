//! The classifier in the kernel: loading the eBPF object (maps sized from the
//! config), attaching it to the LAN interface (ingress and egress), writing
//! device policy into its maps, and reading its counters and flows back.

use std::path::{Path, PathBuf};

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, ProgramArray, RingBuf},
    programs::{
        links::{FdLink, LinkError, PinnedLink},
        tc::SchedClassifierLink,
        ProgramError, SchedClassifier, TcAttachType,
    },
    Ebpf, EbpfError, EbpfLoader,
};
use moat_common::{
    maps::{self as m, FLAG_QUARANTINE},
    reason, DeviceEntry, DeviceStats, FlowKey, FlowValue, MacKey,
};
use moat_policy::Config;
use tracing::warn;

/// The eBPF object built by build.rs (empty when built with AYA_BUILD_SKIP=1).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/moat"));

/// Programs in the object, all loaded by [`Kernel::load`].
const PROGRAMS: [&str; 4] = [m::PROG_INGRESS, m::PROG_EGRESS, m::PROG_CLASSIFY, m::PROG_PASS];

/// What can go wrong between moat and the kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("this moat binary was built without its eBPF object (AYA_BUILD_SKIP); rebuild without it")]
    NoObject,
    #[error("loading the eBPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("eBPF object has no {what} named {name:?}")]
    Missing { what: &'static str, name: &'static str },
    #[error("eBPF program {name}: {source}")]
    Program { name: &'static str, source: ProgramError },
    #[error("eBPF map {name}: {source}")]
    Map { name: &'static str, source: MapError },
    #[error("attaching {program} to {iface:?}: {source}")]
    Attach { program: &'static str, iface: String, source: ProgramError },
    #[error("pinned link {path}: {message}")]
    Pin { path: PathBuf, message: String },
}

/// Map sizes chosen at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Device ids 1..max_devices (0 is unknown).
    pub max_devices: u32,
    pub flow_table_size: u32,
}

impl Limits {
    pub fn from_config(cfg: &Config) -> Self {
        Limits { max_devices: cfg.classifier.max_devices, flow_table_size: cfg.classifier.flow_table_size }
    }
}

/// The loaded classifier and typed handles to its maps.
pub struct Kernel {
    ebpf: Ebpf,
    devices: HashMap<MapData, MacKey, DeviceEntry>,
    unknown: Array<MapData, DeviceEntry>,
    stats: PerCpuArray<MapData, DeviceStats>,
    drops: PerCpuArray<MapData, u64>,
    health: PerCpuArray<MapData, u64>,
    flows: HashMap<MapData, FlowKey, FlowValue>,
    events: Option<RingBuf<MapData>>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel").finish_non_exhaustive()
    }
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> KernelError {
    move |source| KernelError::Map { name, source }
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, KernelError> {
    ebpf.take_map(name).ok_or(KernelError::Missing { what: "map", name })
}

impl Kernel {
    /// Loads the object and verifies its programs; nothing is attached yet.
    /// With `pins` (a prepared pin directory), maps pinned there are adopted
    /// (state survives restarts) and new ones are pinned there.
    pub fn load(limits: Limits, pins: Option<&Path>) -> Result<Self, KernelError> {
        if OBJECT.is_empty() {
            return Err(KernelError::NoObject);
        }
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(m::DEVICES, limits.max_devices)
            .map_max_entries(m::DEVICE_STATS, limits.max_devices)
            .map_max_entries(m::FLOWS, limits.flow_table_size);
        let pin_paths: Vec<(&'static str, PathBuf)> =
            pins.map(|dir| crate::pins::MAPS.iter().map(|n| (*n, dir.join(n))).collect()).unwrap_or_default();
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT)?;
        let mut k = Self {
            devices: HashMap::try_from(take(&mut ebpf, m::DEVICES)?).map_err(map_err(m::DEVICES))?,
            unknown: Array::try_from(take(&mut ebpf, m::UNKNOWN_POLICY)?).map_err(map_err(m::UNKNOWN_POLICY))?,
            stats: PerCpuArray::try_from(take(&mut ebpf, m::DEVICE_STATS)?).map_err(map_err(m::DEVICE_STATS))?,
            drops: PerCpuArray::try_from(take(&mut ebpf, m::DROP_REASONS)?).map_err(map_err(m::DROP_REASONS))?,
            health: PerCpuArray::try_from(take(&mut ebpf, m::HEALTH)?).map_err(map_err(m::HEALTH))?,
            flows: HashMap::try_from(take(&mut ebpf, m::FLOWS)?).map_err(map_err(m::FLOWS))?,
            events: Some(RingBuf::try_from(take(&mut ebpf, m::EVENTS)?).map_err(map_err(m::EVENTS))?),
            ebpf,
        };
        for name in PROGRAMS {
            k.program(name)?.load().map_err(|source| KernelError::Program { name, source })?;
        }
        k.link_classifier()?;
        Ok(k)
    }

    /// Puts `moat_classify` into the tail-call table.
    fn link_classifier(&mut self) -> Result<(), KernelError> {
        let fd = self
            .program(m::PROG_CLASSIFY)?
            .fd()
            .map_err(|source| KernelError::Program { name: m::PROG_CLASSIFY, source })?
            .try_clone()
            .map_err(|e| KernelError::Program { name: m::PROG_CLASSIFY, source: ProgramError::IOError(e) })?;
        let map = self.ebpf.map_mut(m::JUMP).ok_or(KernelError::Missing { what: "map", name: m::JUMP })?;
        let mut jump = ProgramArray::try_from(map).map_err(map_err(m::JUMP))?;
        jump.set(m::JUMP_CLASSIFY, &fd, 0).map_err(map_err(m::JUMP))
    }

    /// A program by name (for attaching, or BPF_PROG_TEST_RUN in tests and benchmarks).
    pub fn program(&mut self, name: &'static str) -> Result<&mut SchedClassifier, KernelError> {
        let missing = KernelError::Missing { what: "program", name };
        let prog = self.ebpf.program_mut(name).ok_or(missing)?;
        prog.try_into().map_err(|source| KernelError::Program { name, source })
    }

    /// Attaches ingress and egress to `iface` (TCX). Without `pins` the links
    /// live as long as `self`. With `pins`, a link pinned by an earlier moat
    /// gets the new program atomically (no moment without a classifier), and
    /// a new link is pinned, so it outlives this process.
    pub fn attach(&mut self, iface: &str, pins: Option<&Path>) -> Result<(), KernelError> {
        let points = [
            (m::PROG_INGRESS, TcAttachType::Ingress, crate::pins::LINK_INGRESS),
            (m::PROG_EGRESS, TcAttachType::Egress, crate::pins::LINK_EGRESS),
        ];
        for (program, at, pin_name) in points {
            let attach_err = |source| KernelError::Attach { program, iface: iface.to_string(), source };
            let prog = self.program(program)?;
            let Some(path) = pins.map(|d| d.join(pin_name)) else {
                prog.attach(iface, at).map_err(attach_err)?;
                continue;
            };
            match PinnedLink::from_pin(&path) {
                Ok(old) => {
                    let link: SchedClassifierLink = FdLink::from(old)
                        .try_into()
                        .map_err(|e: LinkError| KernelError::Pin { path: path.clone(), message: e.to_string() })?;
                    match prog.attach_to_link(link) {
                        // The link stays pinned; our handle to it may go.
                        Ok(id) => drop(prog.take_link(id).map_err(attach_err)?),
                        // Its interface is gone (the bridge was recreated): that
                        // link guards nothing, so a fresh one replaces it.
                        Err(e) => {
                            warn!(pin = %path.display(), error = %e, "pinned link is stale; attaching afresh");
                            std::fs::remove_file(&path)
                                .map_err(|e| KernelError::Pin { path: path.clone(), message: e.to_string() })?;
                            attach_and_pin(prog, iface, at, &path).map_err(|e| e.for_program(program, iface))?;
                        }
                    }
                }
                Err(_) if !path.exists() => {
                    attach_and_pin(prog, iface, at, &path).map_err(|e| e.for_program(program, iface))?;
                }
                Err(e) => return Err(KernelError::Pin { path, message: e.to_string() }),
            }
        }
        Ok(())
    }

    /// Writes every device's entry and the unknown-device policy. Entries are
    /// written before stale ones are removed, so no packet sees a gap.
    pub fn sync_devices(&mut self, cfg: &Config) -> Result<(), KernelError> {
        let want: std::collections::HashMap<MacKey, DeviceEntry> =
            cfg.devices.iter().map(|d| (MacKey::new(d.mac.0), entry(d.id, &cfg.policy_of(d)))).collect();
        for (k, v) in &want {
            self.devices.insert(k, v, 0).map_err(map_err(m::DEVICES))?;
        }
        let stale: Vec<MacKey> = self.devices.keys().filter_map(Result::ok).filter(|k| !want.contains_key(k)).collect();
        for k in stale {
            self.devices.remove(&k).map_err(map_err(m::DEVICES))?;
        }
        let unknown = entry(m::UNKNOWN_DEVICE_ID, &cfg.unknown_policy());
        self.unknown.set(0, unknown, 0).map_err(map_err(m::UNKNOWN_POLICY))?;
        self.bump_policy_gen()
    }

    /// Tells flows their cached device policy is stale. Called after the
    /// device maps are written (the kernel reads the generation first).
    fn bump_policy_gen(&mut self) -> Result<(), KernelError> {
        let map = self.ebpf.map_mut(m::POLICY_GEN).ok_or(KernelError::Missing { what: "map", name: m::POLICY_GEN })?;
        let mut gen: Array<&mut MapData, u32> = Array::try_from(map).map_err(map_err(m::POLICY_GEN))?;
        let next = gen.get(&0, 0).map_err(map_err(m::POLICY_GEN))?.wrapping_add(1);
        gen.set(0, next, 0).map_err(map_err(m::POLICY_GEN))
    }

    /// A device's counters summed over CPUs.
    pub fn device_stats(&self, id: u32) -> Result<DeviceStats, KernelError> {
        let per_cpu = self.stats.get(&id, 0).map_err(map_err(m::DEVICE_STATS))?;
        let mut total = DeviceStats::default();
        per_cpu.iter().for_each(|s| total.add(s));
        Ok(total)
    }

    /// Zeroes a device id's counters (its slot changes owner).
    pub fn zero_device_stats(&mut self, id: u32) -> Result<(), KernelError> {
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| KernelError::Map { name: m::DEVICE_STATS, source: MapError::IoError(e) })?;
        let zeros = aya::maps::PerCpuValues::try_from(vec![DeviceStats::default(); cpus])
            .map_err(|e| KernelError::Map { name: m::DEVICE_STATS, source: MapError::IoError(e) })?;
        self.stats.set(id, zeros, 0).map_err(map_err(m::DEVICE_STATS))
    }

    /// Drops by reason (index = `reason::*`), summed over CPUs.
    pub fn drop_reasons(&self) -> Result<Vec<u64>, KernelError> {
        sum_all(&self.drops, reason::COUNT, m::DROP_REASONS)
    }

    /// Health counters (index = `reason::HEALTH_*`), summed over CPUs.
    pub fn health(&self) -> Result<Vec<u64>, KernelError> {
        sum_all(&self.health, reason::HEALTH_COUNT, m::HEALTH)
    }

    /// Every flow in the table (a snapshot; the kernel keeps updating it).
    pub fn flows(&self) -> Vec<(FlowKey, FlowValue)> {
        self.flows.iter().filter_map(Result::ok).collect()
    }

    /// Flows remembered as blocked (their class survives eviction from FLOWS).
    pub fn blocked_flows(&self) -> Result<Vec<(FlowKey, u8)>, KernelError> {
        let map =
            self.ebpf.map(m::BLOCKED_FLOWS).ok_or(KernelError::Missing { what: "map", name: m::BLOCKED_FLOWS })?;
        let blocked: HashMap<&MapData, FlowKey, u8> = HashMap::try_from(map).map_err(map_err(m::BLOCKED_FLOWS))?;
        Ok(blocked.iter().filter_map(Result::ok).collect())
    }

    /// Number of flows in the table.
    pub fn flow_count(&self) -> usize {
        self.flows.keys().filter(Result::is_ok).count()
    }

    /// Inserts a flow (benchmarks fill the table this way).
    pub fn insert_flow(&mut self, k: &FlowKey, v: &FlowValue) -> Result<(), KernelError> {
        self.flows.insert(k, v, 0).map_err(map_err(m::FLOWS))
    }

    /// Hands out the event ring buffer (once) to a reader.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }
}

fn entry(id: u32, p: &moat_policy::Policy) -> DeviceEntry {
    let flags = if p.quarantine { FLAG_QUARANTINE } else { 0 };
    DeviceEntry { id, blocked_classes: p.blocked_classes, flags, pad: 0 }
}

fn sum_all(map: &PerCpuArray<MapData, u64>, n: usize, name: &'static str) -> Result<Vec<u64>, KernelError> {
    (0..n as u32).map(|i| map.get(&i, 0).map(|v| v.iter().sum()).map_err(map_err(name))).collect()
}

/// Why a new link could not be made and pinned (the program is named by the caller).
enum AttachFailure {
    Attach(ProgramError),
    Pin(PathBuf, String),
}

impl AttachFailure {
    fn for_program(self, program: &'static str, iface: &str) -> KernelError {
        match self {
            AttachFailure::Attach(source) => KernelError::Attach { program, iface: iface.to_string(), source },
            AttachFailure::Pin(path, message) => KernelError::Pin { path, message },
        }
    }
}

/// Attaches `prog` to `iface` with a new link and pins it at `path`.
fn attach_and_pin(prog: &mut SchedClassifier, iface: &str, at: TcAttachType, path: &Path) -> Result<(), AttachFailure> {
    let id = prog.attach(iface, at).map_err(AttachFailure::Attach)?;
    let link = prog.take_link(id).map_err(AttachFailure::Attach)?;
    let fd: FdLink = link.try_into().map_err(|e: LinkError| AttachFailure::Pin(path.to_path_buf(), e.to_string()))?;
    fd.pin(path).map(drop).map_err(|e| AttachFailure::Pin(path.to_path_buf(), e.to_string()))
}
