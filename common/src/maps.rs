//! Map names, sizes, keys and values.

/// Source MAC → [`DeviceEntry`] (hash).
pub const DEVICES: &str = "DEVICES";
/// Policy for MACs not in `DEVICES` (array of one [`DeviceEntry`]).
pub const UNKNOWN_POLICY: &str = "UNKNOWN_POLICY";
/// Device id → [`DeviceStats`] (per-CPU array; id 0 is "unknown").
pub const DEVICE_STATS: &str = "DEVICE_STATS";
/// Drop reason → packets (per-CPU array of u64).
pub const DROP_REASONS: &str = "DROP_REASONS";
/// Health counter → events (per-CPU array of u64).
pub const HEALTH: &str = "HEALTH";

/// Name of the tc ingress program in the object file.
pub const PROG_INGRESS: &str = "moat_ingress";

/// Largest device id + 1; id 0 is reserved for unknown devices.
pub const MAX_DEVICES: u32 = 16384;
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

/// What the kernel needs to know about a device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceEntry {
    /// Index into `DEVICE_STATS`, 1..MAX_DEVICES.
    pub id: u32,
    /// Bit `1 << class` set = packets of that class are dropped.
    pub blocked_classes: u32,
}

/// Per-device counters for packets seen on LAN ingress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    pub packets: u64,
    pub bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    /// Dropped packets by class (index = class number).
    pub dropped_by_class: [u64; crate::class::COUNT],
}

impl DeviceStats {
    /// Sum of per-CPU values.
    pub fn add(&mut self, other: &Self) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.dropped_packets += other.dropped_packets;
        self.dropped_bytes += other.dropped_bytes;
        for (a, b) in self.dropped_by_class.iter_mut().zip(other.dropped_by_class) {
            *a += b;
        }
    }
}

const _: () = assert!(core::mem::size_of::<MacKey>() == 8);
const _: () = assert!(core::mem::size_of::<DeviceEntry>() == 8);
const _: () = assert!(core::mem::size_of::<DeviceStats>() == 32 + 8 * crate::class::COUNT);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data: repr(C), Copy, no padding bytes (sizes asserted above), any
    // bit pattern is valid.
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::MacKey {}
    // SAFETY: as above.
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::DeviceEntry {}
    // SAFETY: as above.
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::DeviceStats {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_add_sums_every_field() {
        let mut a = DeviceStats {
            packets: 1,
            bytes: 2,
            dropped_packets: 3,
            dropped_bytes: 4,
            dropped_by_class: [5, 6],
        };
        let b = a;
        a.add(&b);
        assert_eq!(
            a,
            DeviceStats {
                packets: 2,
                bytes: 4,
                dropped_packets: 6,
                dropped_bytes: 8,
                dropped_by_class: [10, 12]
            }
        );
    }
}
