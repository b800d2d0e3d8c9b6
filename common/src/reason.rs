//! Why the classifier dropped a packet, and program health counters.
//!
//! Indexes into the `DROP_REASONS` and `HEALTH` per-CPU arrays.

/// The device's policy blocks the packet's class.
pub const BLOCKED_CLASS: u32 = 0;
/// A header that should carry the fields a policy decides on is cut short or
/// invalid (e.g. a first IP fragment too short to hold the TCP ports: the classic
/// tiny-fragment evasion). Dropped rather than guessed.
pub const MALFORMED: u32 = 1;
/// Number of drop reasons.
pub const COUNT: u32 = 2;
/// Names as exported to users, indexed by reason.
pub const NAMES: [&str; COUNT as usize] = ["blocked_class", "malformed"];

/// Health: a header could not be read (packet shorter than the header).
pub const HEALTH_TRUNCATED: u32 = 0;
/// Health: a header was read but is invalid (bad version, header length).
pub const HEALTH_BAD_HEADER: u32 = 1;
/// Health: IPv6 extension-header chain longer than the walker follows.
pub const HEALTH_EXT_HDR_LIMIT: u32 = 2;
/// Number of health counters.
pub const HEALTH_COUNT: u32 = 3;
/// Names of the health counters, indexed by number.
pub const HEALTH_NAMES: [&str; HEALTH_COUNT as usize] =
    ["truncated", "bad_header", "ext_header_limit"];
