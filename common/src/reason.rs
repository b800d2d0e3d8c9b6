//! Why the classifier dropped a packet, and program health counters.
//!
//! Indexes into the `DROP_REASONS` and `HEALTH` per-CPU arrays and into
//! `DeviceStats::dropped_by_reason`.

/// The device's policy blocks the packet's class.
pub const BLOCKED_CLASS: u32 = 0;
/// The device is quarantined: only DHCP, DNS and ICMPv6 pass.
pub const QUARANTINE: u32 = 1;
/// A header the decision needs is cut short or invalid (e.g. a first IP
/// fragment too short to hold the TCP ports: the tiny-fragment evasion).
/// Dropped rather than guessed.
pub const MALFORMED: u32 = 2;
/// Number of drop reasons.
pub const COUNT: usize = 3;
/// Slots in per-reason arrays (power of two, see `class::SLOTS`).
pub const SLOTS: usize = 4;
const _: () = assert!(COUNT <= SLOTS && SLOTS.is_power_of_two());
/// Names as exported to users, indexed by reason.
pub const NAMES: [&str; COUNT] = ["blocked_class", "quarantine", "malformed"];

/// Health: a header could not be read (packet shorter than the header).
pub const HEALTH_TRUNCATED: u32 = 0;
/// Health: a header was read but is invalid (bad version, header length).
pub const HEALTH_BAD_HEADER: u32 = 1;
/// Health: IPv6 extension-header chain longer than the walker follows.
pub const HEALTH_EXT_HDR_LIMIT: u32 = 2;
/// Health: a new flow could not be stored (the flow then re-classifies later).
pub const HEALTH_FLOW_INSERT_FAILED: u32 = 3;
/// Health: an event was lost because the ring buffer was full.
pub const HEALTH_RINGBUF_FULL: u32 = 4;
/// Health: the tail call to the classifier failed; the packet was judged by
/// its port hint (class other unless telnet's ports).
pub const HEALTH_TAIL_CALL_FAILED: u32 = 5;
/// Health: a fragment of a TCP segment (dropped: TCP does not need IP
/// fragmentation, and fragments would hide the payload from classification).
pub const HEALTH_TCP_FRAGMENT: u32 = 6;
/// Number of health counters.
pub const HEALTH_COUNT: usize = 7;
/// Names of the health counters, indexed by number.
pub const HEALTH_NAMES: [&str; HEALTH_COUNT] = [
    "truncated",
    "bad_header",
    "ext_header_limit",
    "flow_insert_failed",
    "ringbuf_full",
    "tail_call_failed",
    "tcp_fragment",
];
