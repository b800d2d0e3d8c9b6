//! Map names, sizes, keys and values.

use crate::{class, reason};

/// Source/destination MAC → [`DeviceEntry`] (hash).
pub const DEVICES: &str = "DEVICES";
/// Policy for MACs not in `DEVICES` (array of one [`DeviceEntry`]).
pub const UNKNOWN_POLICY: &str = "UNKNOWN_POLICY";
/// Device id → [`DeviceStats`] (per-CPU array; id 0 is "unknown").
pub const DEVICE_STATS: &str = "DEVICE_STATS";
/// Drop reason → packets (per-CPU array of u64).
pub const DROP_REASONS: &str = "DROP_REASONS";
/// Health counter → events (per-CPU array of u64).
pub const HEALTH: &str = "HEALTH";
/// [`FlowKey`] → [`FlowValue`] (LRU hash).
pub const FLOWS: &str = "FLOWS";
/// Flows dropped for their class (LRU hash FlowKey → class): a flow evicted
/// from `FLOWS` gets its class back from here, so eviction cannot turn a
/// blocked flow's mid-stream packets into an unrecognised, allowed flow.
pub const BLOCKED_FLOWS: &str = "BLOCKED_FLOWS";
pub const BLOCKED_FLOWS_SIZE: u32 = 8192;
/// Unknown MACs already reported (LRU hash MacKey → first-seen ns).
pub const UNKNOWN_SEEN: &str = "UNKNOWN_SEEN";
/// Events to user space (ring buffer of [`crate::event`] records).
pub const EVENTS: &str = "EVENTS";

/// Policy generation (array of one u32), bumped by user space after every
/// change to `DEVICES`/`UNKNOWN_POLICY`: flows cache their device's policy
/// and re-read it when the generation moves.
pub const POLICY_GEN: &str = "POLICY_GEN";

/// Tail-call table: slot [`JUMP_CLASSIFY`] holds `moat_classify`.
pub const JUMP: &str = "JUMP";
pub const JUMP_CLASSIFY: u32 = 0;
/// Per-CPU hand-over of a packet's facts to the tail-called classifier.
pub const PENDING: &str = "PENDING";

/// LAN ingress program (packets from devices).
pub const PROG_INGRESS: &str = "moat_ingress";
/// LAN egress program (packets to devices).
pub const PROG_EGRESS: &str = "moat_egress";
/// Tail-called for a flow's first payload packet: classification lives in its
/// own program so the verifier checks it once, not once per path through the
/// header parser.
pub const PROG_CLASSIFY: &str = "moat_classify";
/// Pass-only program built the same way: the benchmark's baseline.
pub const PROG_PASS: &str = "moat_pass";

/// Compiled-in sizes; `DEVICES`, `DEVICE_STATS` and `FLOWS` are resized at
/// load time from the config.
pub const MAX_DEVICES: u32 = 1024;
pub const FLOW_TABLE_SIZE: u32 = 65536;
pub const UNKNOWN_SEEN_SIZE: u32 = 1024;
pub const EVENTS_BYTES: u32 = 512 * 1024;
/// Device id under which unknown MACs are counted.
pub const UNKNOWN_DEVICE_ID: u32 = 0;

/// Key of the `DEVICES` map: a MAC address padded to 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacKey {
    pub addr: [u8; 6],
    pub pad: [u8; 2],
}

impl MacKey {
    pub const fn new(addr: [u8; 6]) -> Self {
        Self { addr, pad: [0; 2] }
    }
}

/// `DeviceEntry::flags`: drop everything but DHCP, DNS and ICMPv6.
pub const FLAG_QUARANTINE: u32 = 1;

/// What the kernel needs to know about a device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceEntry {
    /// Index into `DEVICE_STATS`, 1..max_devices.
    pub id: u32,
    /// Bit `1 << class` set = packets of that class are dropped.
    pub blocked_classes: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    pub pad: u32,
}

/// Packets and bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl Counter {
    pub fn add(&mut self, other: &Self) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

/// Per-device counters. Every packet is counted in `traffic` under its class
/// and direction, dropped ones too; drops are also counted by class and reason.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceStats {
    pub traffic: [[Counter; class::dir::COUNT]; class::SLOTS],
    pub dropped_by_class: [u64; class::SLOTS],
    pub dropped_by_reason: [u64; reason::SLOTS],
}

impl Default for DeviceStats {
    fn default() -> Self {
        Self {
            traffic: [[Counter::default(); class::dir::COUNT]; class::SLOTS],
            dropped_by_class: [0; class::SLOTS],
            dropped_by_reason: [0; reason::SLOTS],
        }
    }
}

impl DeviceStats {
    /// Adds another CPU's counters.
    pub fn add(&mut self, other: &Self) {
        for (mine, theirs) in self.traffic.iter_mut().zip(other.traffic.iter()) {
            for (a, b) in mine.iter_mut().zip(theirs.iter()) {
                a.add(b);
            }
        }
        for (a, b) in self.dropped_by_class.iter_mut().zip(other.dropped_by_class) {
            *a += b;
        }
        for (a, b) in self.dropped_by_reason.iter_mut().zip(other.dropped_by_reason) {
            *a += b;
        }
    }

    /// All traffic in one direction, over classes.
    pub fn total(&self, dir: usize) -> Counter {
        let mut t = Counter::default();
        for per_class in &self.traffic {
            if let Some(c) = per_class.get(dir) {
                t.add(c);
            }
        }
        t
    }

    pub fn dropped(&self) -> u64 {
        self.dropped_by_reason.iter().sum()
    }
}

/// Address family of a [`FlowKey`].
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// A flow, oriented from the device's side whichever direction the packet
/// went, so both directions share one entry. IPv4 addresses use the first 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lan_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub lan_port: u16,
    pub remote_port: u16,
    pub proto: u8,
    pub family: u8,
    pub pad: [u8; 2],
}

/// `FlowValue::flags`: the class came from payload (final for the flow's life).
pub const FLOW_CLASSIFIED: u8 = 1;
/// `FlowValue::flags`: a packet of the flow was dropped and the BLOCKED event
/// sent (verdicts are recomputed per packet, so a policy change applies at once).
pub const FLOW_BLOCKED: u8 = 2;

/// What the classifier keeps per flow. Counters are best-effort (updated
/// without atomics from several CPUs); per-device counters are exact.
///
/// The device's policy is cached here (valid while `policy_gen` equals the
/// global generation and `mac` is the packet's MAC), which saves the
/// `DEVICES` lookup on established flows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    /// Coarse monotonic clock (bpf_ktime_get_coarse_ns).
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Indexed by `class::dir`.
    pub traffic: [Counter; class::dir::COUNT],
    pub device_id: u32,
    pub blocked_classes: u32,
    pub policy_gen: u32,
    pub class: u8,
    pub flags: u8,
    /// The device's `DeviceEntry::flags` (low byte).
    pub dev_flags: u8,
    pub pad: u8,
    pub mac: [u8; 6],
    pub pad2: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<MacKey>() == 8);
const _: () = assert!(core::mem::size_of::<DeviceEntry>() == 16);
const _: () =
    assert!(core::mem::size_of::<DeviceStats>() == 16 * 2 * class::SLOTS + 8 * class::SLOTS + 8 * reason::SLOTS);
const _: () = assert!(core::mem::size_of::<DeviceStats>().is_multiple_of(8));
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::size_of::<FlowValue>() == 72);

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all impls): plain-old-data: repr(C), Copy, no implicit padding
    // (sizes asserted above), any bit pattern is valid.
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::MacKey {}
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::DeviceEntry {}
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::DeviceStats {}
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::FlowKey {}
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::FlowValue {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_add_sums_every_field() {
        let mut a = DeviceStats::default();
        a.traffic[class::TELNET as usize][class::dir::TO_DEVICE] = Counter { packets: 2, bytes: 100 };
        a.dropped_by_class[class::TELNET as usize] = 3;
        a.dropped_by_reason[reason::QUARANTINE as usize] = 4;
        let b = a;
        a.add(&b);
        assert_eq!(a.traffic[class::TELNET as usize][class::dir::TO_DEVICE], Counter { packets: 4, bytes: 200 });
        assert_eq!(a.dropped_by_class[class::TELNET as usize], 6);
        assert_eq!(a.dropped(), 8);
        assert_eq!(a.total(class::dir::TO_DEVICE), Counter { packets: 4, bytes: 200 });
        assert_eq!(a.total(class::dir::FROM_DEVICE), Counter::default());
    }
}
