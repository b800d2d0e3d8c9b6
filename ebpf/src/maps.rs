//! The program's maps and the small helpers that update them.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use moat_common::{class::Class, maps::MAX_DEVICES, reason, DeviceEntry, DeviceStats, MacKey};

#[map]
static DEVICES: HashMap<MacKey, DeviceEntry> = HashMap::with_max_entries(MAX_DEVICES, 0);

#[map]
static UNKNOWN_POLICY: Array<DeviceEntry> = Array::with_max_entries(1, 0);

#[map]
static DEVICE_STATS: PerCpuArray<DeviceStats> = PerCpuArray::with_max_entries(MAX_DEVICES, 0);

#[map]
static DROP_REASONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(reason::COUNT, 0);

#[map]
static HEALTH: PerCpuArray<u64> = PerCpuArray::with_max_entries(reason::HEALTH_COUNT, 0);

/// The device entry for a source MAC, or the unknown-device policy (id 0).
pub fn device(mac: &MacKey) -> DeviceEntry {
    // SAFETY: the value is copied out immediately; user space may update the entry
    // concurrently, which at worst yields the old or new policy for this packet.
    if let Some(entry) = unsafe { DEVICES.get(mac) } {
        return *entry;
    }
    UNKNOWN_POLICY.get(0).copied().unwrap_or_default()
}

fn stats(id: u32) -> Option<&'static mut DeviceStats> {
    // SAFETY: per-CPU slot, so no other program instance writes it concurrently.
    DEVICE_STATS.get_ptr_mut(id).map(|p| unsafe { &mut *p })
}

pub fn count_packet(id: u32, len: u64) {
    if let Some(s) = stats(id) {
        s.packets += 1;
        s.bytes += len;
    }
}

pub fn count_drop(id: u32, class: Class, len: u64, why: u32) {
    if let Some(s) = stats(id) {
        s.dropped_packets += 1;
        s.dropped_bytes += len;
        if let Some(c) = s.dropped_by_class.get_mut(usize::from(class)) {
            *c += 1;
        }
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
