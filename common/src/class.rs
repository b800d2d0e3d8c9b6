//! Traffic classes the classifier assigns, and the bitmask a policy uses to block them.

/// A traffic class number. Stable: it appears in map values and (later) packet marks.
pub type Class = u8;

/// Traffic the classifier has no specific class for.
pub const OTHER: Class = 0;
/// Telnet: TCP to port 23 or 2323 (the ports IoT malware scans and logs in on).
pub const TELNET: Class = 1;

/// Number of classes; the size of per-class arrays.
pub const COUNT: usize = 2;

/// Class names as they appear in config files, indexed by class number.
pub const NAMES: [&str; COUNT] = ["other", "telnet"];

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

// blocked_classes is a u32 bitmask.
const _: () = assert!(COUNT <= 32);

/// Telnet's well-known TCP ports.
pub const TELNET_PORTS: [u16; 2] = [23, 2323];

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
    fn bits_are_distinct_and_fit() {
        assert_eq!(bit(OTHER), 1);
        assert_eq!(bit(TELNET), 2);
    }
}
