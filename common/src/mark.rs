//! The `skb->mark` the classifier sets on packets it passes, for nftables:
//!
//! ```text
//!  31 | 30 ........................ 8 | 7 ...... 0
//!   1 |  device id (23 bits)          |  class
//! ```
//! Bit 31 says "moat marked this" so an unmarked packet (mark 0) is never read
//! as device 0 / class other. nft matches e.g. `meta mark & 0xff == 4` (telnet)
//! or `meta mark & 0x7fffff00 == <id> << 8`.

use crate::class::Class;

pub const MOAT_BIT: u32 = 1 << 31;
pub const ID_SHIFT: u32 = 8;
pub const ID_MASK: u32 = 0x7f_ffff;
pub const CLASS_MASK: u32 = 0xff;

/// The mark for a device id and class. Ids above [`ID_MASK`] are truncated;
/// config validation keeps ids far below it.
pub const fn encode(device_id: u32, class: Class) -> u32 {
    MOAT_BIT | ((device_id & ID_MASK) << ID_SHIFT) | class as u32
}

/// (device id, class) of a mark moat set, `None` for any other mark.
pub const fn decode(mark: u32) -> Option<(u32, Class)> {
    if mark & MOAT_BIT == 0 {
        return None;
    }
    Some(((mark >> ID_SHIFT) & ID_MASK, (mark & CLASS_MASK) as Class))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class;

    #[test]
    fn round_trips() {
        for (id, c) in [(0, class::OTHER), (1, class::TELNET), (ID_MASK, class::QUIC), (10_000, class::TLS)] {
            assert_eq!(decode(encode(id, c)), Some((id, c)));
        }
    }

    #[test]
    fn layout_is_as_documented() {
        assert_eq!(encode(1, class::TELNET), 0x8000_0104);
        assert_eq!(encode(0, class::OTHER), 0x8000_0000);
        assert_eq!(decode(0), None, "unmarked packets are not device 0");
        assert_eq!(decode(0x104), None);
        assert_eq!(encode(ID_MASK + 1, class::OTHER), MOAT_BIT, "overflowing ids truncate");
    }
}
