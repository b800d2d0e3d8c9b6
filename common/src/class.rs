//! Traffic classes the classifier assigns, and the bitmask a policy uses to block them.

/// A traffic class number. Stable: it appears in map values, events and packet marks.
pub type Class = u8;

/// No specific class (ICMP, unrecognised payload, or no payload yet).
pub const OTHER: Class = 0;
pub const TLS: Class = 1;
pub const HTTP: Class = 2;
/// Plaintext MQTT (CONNECT with protocol name MQTT or MQIsdp).
pub const MQTT: Class = 3;
pub const TELNET: Class = 4;
pub const FTP: Class = 5;
pub const SSH: Class = 6;
pub const DNS: Class = 7;
pub const DHCP: Class = 8;
pub const NTP: Class = 9;
pub const SSDP: Class = 10;
pub const MDNS: Class = 11;
pub const RTSP: Class = 12;
pub const QUIC: Class = 13;
pub const TFTP: Class = 14;

/// Number of classes; the size of per-class arrays.
pub const COUNT: usize = 15;

/// Slots in per-class arrays: a power of two, so kernel code can bound an
/// index with `& (SLOTS - 1)`, which the verifier understands.
pub const SLOTS: usize = 16;
const _: () = assert!(COUNT <= SLOTS && SLOTS.is_power_of_two());

/// Class names as they appear in config files and reports, indexed by class number.
pub const NAMES: [&str; COUNT] = [
    "other", "tls", "http", "mqtt", "telnet", "ftp", "ssh", "dns", "dhcp", "ntp", "ssdp", "mdns", "rtsp", "quic",
    "tftp",
];

// blocked_classes is a u32 bitmask.
const _: () = assert!(COUNT <= 32);

/// Class number for a config name, if the classifier knows it.
pub fn from_name(name: &str) -> Option<Class> {
    NAMES.iter().position(|n| *n == name).map(|i| i as Class)
}

/// The name of a class number, `"invalid"` when out of range.
pub fn name(class: Class) -> &'static str {
    NAMES.get(class as usize).copied().unwrap_or("invalid")
}

/// The bit for `class` in [`crate::DeviceEntry::blocked_classes`].
pub const fn bit(class: Class) -> u32 {
    1u32 << class
}

/// Telnet's well-known TCP ports: a flow to them is telnet before any payload.
pub const TELNET_PORTS: [u16; 2] = [23, 2323];

/// Direction of a packet relative to the device.
pub mod dir {
    /// LAN ingress: sent by the device.
    pub const FROM_DEVICE: usize = 0;
    /// LAN egress: sent to the device.
    pub const TO_DEVICE: usize = 1;
    pub const COUNT: usize = 2;
    pub const NAMES: [&str; COUNT] = ["from_device", "to_device"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (i, n) in NAMES.iter().enumerate() {
            assert_eq!(from_name(n), Some(i as Class));
            assert_eq!(name(i as Class), *n);
        }
        assert_eq!(from_name("gopher"), None);
        assert_eq!(name(200), "invalid");
    }

    #[test]
    fn constants_match_names() {
        let pairs = [
            (OTHER, "other"),
            (TLS, "tls"),
            (HTTP, "http"),
            (MQTT, "mqtt"),
            (TELNET, "telnet"),
            (FTP, "ftp"),
            (SSH, "ssh"),
            (DNS, "dns"),
            (DHCP, "dhcp"),
            (NTP, "ntp"),
            (SSDP, "ssdp"),
            (MDNS, "mdns"),
            (RTSP, "rtsp"),
            (QUIC, "quic"),
            (TFTP, "tftp"),
        ];
        assert_eq!(pairs.len(), COUNT);
        for (c, n) in pairs {
            assert_eq!(name(c), n);
        }
    }

    #[test]
    fn bits_are_distinct() {
        let all = (0..COUNT as u8).fold(0u32, |acc, c| {
            assert_eq!(acc & bit(c), 0);
            acc | bit(c)
        });
        assert_eq!(all.count_ones() as usize, COUNT);
    }
}
