//! The program's maps and the small helpers that update them.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use moat_common::{
    class::{self, Class},
    maps::{BLOCKED_FLOWS_SIZE, EVENTS_BYTES, FLOW_TABLE_SIZE, MAX_DEVICES, UNKNOWN_SEEN_SIZE},
    reason, DeviceEntry, DeviceStats, FlowKey, FlowValue, MacKey,
};

#[map]
pub static DEVICES: HashMap<MacKey, DeviceEntry> = HashMap::with_max_entries(MAX_DEVICES, 0);

#[map]
static UNKNOWN_POLICY: Array<DeviceEntry> = Array::with_max_entries(1, 0);

#[map]
static DEVICE_STATS: PerCpuArray<DeviceStats> = PerCpuArray::with_max_entries(MAX_DEVICES, 0);

#[map]
static DROP_REASONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(reason::COUNT as u32, 0);

#[map]
static HEALTH: PerCpuArray<u64> = PerCpuArray::with_max_entries(reason::HEALTH_COUNT as u32, 0);

#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(FLOW_TABLE_SIZE, 0);

#[map]
pub static BLOCKED_FLOWS: LruHashMap<FlowKey, u8> = LruHashMap::with_max_entries(BLOCKED_FLOWS_SIZE, 0);

/// Last DHCP copy per MAC: at most one a second, so one device cannot fill
/// the ring with DHCP copies.
#[map]
static DHCP_COPIED: LruHashMap<MacKey, u64> = LruHashMap::with_max_entries(UNKNOWN_SEEN_SIZE, 0);

const DHCP_COPY_EVERY_NS: u64 = 1_000_000_000;

/// Whether a DHCP message from `mac` may be copied now (and records it).
pub fn dhcp_copy_allowed(mac: &[u8; 6]) -> bool {
    let k = MacKey::new(*mac);
    // SAFETY: clock read, no arguments.
    let now = unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns() };
    // SAFETY: the value is copied out at once.
    if let Some(last) = unsafe { DHCP_COPIED.get(k) }.copied() {
        if now.wrapping_sub(last) < DHCP_COPY_EVERY_NS {
            return false;
        }
    }
    let _ = DHCP_COPIED.insert(k, now, 0);
    true
}

#[map]
pub static UNKNOWN_SEEN: LruHashMap<MacKey, u64> = LruHashMap::with_max_entries(UNKNOWN_SEEN_SIZE, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
static POLICY_GEN: Array<u32> = Array::with_max_entries(1, 0);

/// The current policy generation (see `moat_common::maps::POLICY_GEN`).
pub fn policy_gen() -> u32 {
    POLICY_GEN.get(0).copied().unwrap_or(0)
}

#[map]
pub static JUMP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// A packet's facts handed to the tail-called classifier (per CPU: a tail
/// call runs on the CPU that made it, with nothing in between).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    pub key: FlowKey,
    pub dev: DeviceEntry,
    pub len: u64,
    pub payload_off: u32,
    pub payload_len: u32,
    pub dir: u32,
    pub mac: [u8; 6],
    pub proto: u8,
    pub pad: u8,
}

#[map]
pub static PENDING: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

/// The device entry for a MAC and whether it is a configured device; unknown
/// MACs get the unknown-device policy (id 0).
pub fn device(mac: &MacKey) -> (DeviceEntry, bool) {
    // SAFETY: the value is copied out at once; a concurrent update from user
    // space yields either the old or the new policy for this packet.
    if let Some(entry) = unsafe { DEVICES.get(mac) } {
        return (*entry, true);
    }
    (UNKNOWN_POLICY.get(0).copied().unwrap_or_default(), false)
}

fn stats(id: u32) -> Option<&'static mut DeviceStats> {
    // SAFETY: per-CPU slot: no other program instance writes it concurrently.
    DEVICE_STATS.get_ptr_mut(id).map(|p| unsafe { &mut *p })
}

/// Counts a packet for a device under its class and direction.
pub fn count_packet(id: u32, class: Class, dir: usize, len: u64) {
    let Some(s) = stats(id) else { return };
    // Masked indices: bounds the verifier can see (a plain `get` check may be
    // optimised into a form it cannot follow).
    let c = &mut s.traffic[usize::from(class) & (class::SLOTS - 1)][dir & 1];
    c.packets += 1;
    c.bytes += len;
}

/// Counts a drop for the device and globally by reason.
pub fn count_drop(id: u32, class: Class, why: u32) {
    if let Some(s) = stats(id) {
        s.dropped_by_class[usize::from(class) & (class::SLOTS - 1)] += 1;
        s.dropped_by_reason[why as usize & (reason::SLOTS - 1)] += 1;
    }
    bump(&DROP_REASONS, why);
}

pub fn health(which: u32) {
    bump(&HEALTH, which);
}

fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(p) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *p += 1 };
    }
}
