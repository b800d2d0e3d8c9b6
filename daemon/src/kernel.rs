//! The classifier in the kernel: loading the eBPF object, attaching it to the
//! LAN interface (tc ingress), writing device policy into its maps, and reading
//! its counters back.

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
    programs::{ProgramError, SchedClassifier, TcAttachType},
    Ebpf, EbpfError,
};
use moat_common::{maps as m, reason, DeviceEntry, DeviceStats, MacKey};
use moat_policy::Config;

/// The eBPF object built by build.rs (empty when built with AYA_BUILD_SKIP=1).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/moat"));

/// What can go wrong between moat and the kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "this moat binary was built without its eBPF object (AYA_BUILD_SKIP); rebuild without it"
    )]
    NoObject,
    #[error("loading the eBPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("eBPF object has no {what} named {name:?}")]
    Missing {
        what: &'static str,
        name: &'static str,
    },
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        source: ProgramError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error("attaching the classifier to {iface:?}: {source}")]
    Attach { iface: String, source: ProgramError },
}

/// The loaded classifier and typed handles to its maps.
pub struct Kernel {
    ebpf: Ebpf,
    devices: HashMap<MapData, MacKey, DeviceEntry>,
    unknown: Array<MapData, DeviceEntry>,
    stats: PerCpuArray<MapData, DeviceStats>,
    drops: PerCpuArray<MapData, u64>,
    health: PerCpuArray<MapData, u64>,
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
    ebpf.take_map(name)
        .ok_or(KernelError::Missing { what: "map", name })
}

impl Kernel {
    /// Loads the object and verifies the program; nothing is attached yet.
    pub fn load() -> Result<Self, KernelError> {
        if OBJECT.is_empty() {
            return Err(KernelError::NoObject);
        }
        let mut ebpf = Ebpf::load(OBJECT)?;
        let devices =
            HashMap::try_from(take(&mut ebpf, m::DEVICES)?).map_err(map_err(m::DEVICES))?;
        let unknown = Array::try_from(take(&mut ebpf, m::UNKNOWN_POLICY)?)
            .map_err(map_err(m::UNKNOWN_POLICY))?;
        let stats = PerCpuArray::try_from(take(&mut ebpf, m::DEVICE_STATS)?)
            .map_err(map_err(m::DEVICE_STATS))?;
        let drops = PerCpuArray::try_from(take(&mut ebpf, m::DROP_REASONS)?)
            .map_err(map_err(m::DROP_REASONS))?;
        let health =
            PerCpuArray::try_from(take(&mut ebpf, m::HEALTH)?).map_err(map_err(m::HEALTH))?;
        let mut k = Self {
            ebpf,
            devices,
            unknown,
            stats,
            drops,
            health,
        };
        k.program()?.load().map_err(|source| KernelError::Program {
            name: m::PROG_INGRESS,
            source,
        })?;
        Ok(k)
    }

    /// The classifier program (for attaching, or BPF_PROG_TEST_RUN in tests).
    pub fn program(&mut self) -> Result<&mut SchedClassifier, KernelError> {
        let missing = KernelError::Missing {
            what: "program",
            name: m::PROG_INGRESS,
        };
        let prog = self.ebpf.program_mut(m::PROG_INGRESS).ok_or(missing)?;
        prog.try_into().map_err(|source| KernelError::Program {
            name: m::PROG_INGRESS,
            source,
        })
    }

    /// Attaches to `iface`'s ingress (TCX on kernels that have it). The link
    /// lives as long as `self`: dropping the Kernel detaches it.
    pub fn attach(&mut self, iface: &str) -> Result<(), KernelError> {
        let attach_err = |source| KernelError::Attach {
            iface: iface.to_string(),
            source,
        };
        self.program()?
            .attach(iface, TcAttachType::Ingress)
            .map_err(attach_err)?;
        Ok(())
    }

    /// Writes every device's entry and the unknown-device policy. Entries are
    /// written before stale ones are removed, so no packet sees a gap.
    pub fn sync_devices(&mut self, cfg: &Config) -> Result<(), KernelError> {
        let want: std::collections::HashMap<MacKey, DeviceEntry> = cfg
            .devices
            .iter()
            .map(|d| {
                (
                    MacKey::new(d.mac.0),
                    DeviceEntry {
                        id: d.id,
                        blocked_classes: cfg.policy_of(d).blocked_classes,
                    },
                )
            })
            .collect();
        for (k, v) in &want {
            self.devices.insert(k, v, 0).map_err(map_err(m::DEVICES))?;
        }
        let stale: Vec<MacKey> = self
            .devices
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !want.contains_key(k))
            .collect();
        for k in stale {
            self.devices.remove(&k).map_err(map_err(m::DEVICES))?;
        }
        let unknown = DeviceEntry {
            id: m::UNKNOWN_DEVICE_ID,
            blocked_classes: cfg.unknown_blocked(),
        };
        self.unknown
            .set(0, unknown, 0)
            .map_err(map_err(m::UNKNOWN_POLICY))?;
        Ok(())
    }

    /// A device's counters summed over CPUs.
    pub fn device_stats(&self, id: u32) -> Result<DeviceStats, KernelError> {
        let per_cpu = self.stats.get(&id, 0).map_err(map_err(m::DEVICE_STATS))?;
        let mut total = DeviceStats::default();
        per_cpu.iter().for_each(|s| total.add(s));
        Ok(total)
    }

    /// Drops by reason (index = `reason::*`), summed over CPUs.
    pub fn drop_reasons(&self) -> Result<Vec<u64>, KernelError> {
        sum_all(&self.drops, reason::COUNT, m::DROP_REASONS)
    }

    /// Health counters (index = `reason::HEALTH_*`), summed over CPUs.
    pub fn health(&self) -> Result<Vec<u64>, KernelError> {
        sum_all(&self.health, reason::HEALTH_COUNT, m::HEALTH)
    }
}

fn sum_all(
    map: &PerCpuArray<MapData, u64>,
    n: u32,
    name: &'static str,
) -> Result<Vec<u64>, KernelError> {
    (0..n)
        .map(|i| {
            map.get(&i, 0)
                .map(|v| v.iter().sum())
                .map_err(map_err(name))
        })
        .collect()
}
