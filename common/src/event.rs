//! Events the classifier sends to user space through the `EVENTS` ring buffer.
//! Every record starts with an [`EventHeader`]; `kind` says which struct it is.

use crate::maps::FlowKey;

/// An unknown MAC sent its first packet ([`FlowEvent`], key zeroed).
pub const NEW_DEVICE: u8 = 1;
/// A flow got its class ([`FlowEvent`]).
pub const NEW_FLOW: u8 = 2;
/// A flow was blocked; sent once per flow ([`FlowEvent`]).
pub const BLOCKED: u8 = 3;
/// A DNS response to a device ([`PacketEvent`]).
pub const DNS_RESPONSE: u8 = 4;
/// A DHCP message from a device ([`PacketEvent`]).
pub const DHCP_REQUEST: u8 = 5;
pub const KIND_COUNT: usize = 6;
pub const KIND_NAMES: [&str; KIND_COUNT] =
    ["invalid", "new_device", "new_flow", "blocked", "dns_response", "dhcp_request"];

/// Longest payload copied into a [`PacketEvent`]: a DNS message up to the
/// 1232-byte EDNS size resolvers use (answers for CDNs are often past 512),
/// and any DHCP message.
pub const PACKET_COPY_MAX: usize = 1232;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u8,
    pub class: u8,
    /// `reason::*` for BLOCKED, else 0.
    pub reason: u8,
    /// `class::dir::*` of the packet that caused the event.
    pub dir: u8,
    pub device_id: u32,
    /// bpf_ktime_get_boot_ns() when the event was made.
    pub ts_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    pub hdr: EventHeader,
    pub mac: [u8; 6],
    pub pad: [u8; 2],
    pub key: FlowKey,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketEvent {
    pub hdr: EventHeader,
    pub mac: [u8; 6],
    /// Bytes of `data` that are valid.
    pub len: u16,
    /// The payload's full length (may exceed `len`).
    pub orig_len: u32,
    pub key: FlowKey,
    pub data: [u8; PACKET_COPY_MAX],
    pub tail_pad: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 16);
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 64);
const _: () = assert!(core::mem::size_of::<PacketEvent>() == 16 + 12 + 40 + PACKET_COPY_MAX + 4);
const _: () = assert!(core::mem::size_of::<PacketEvent>().is_multiple_of(8));
