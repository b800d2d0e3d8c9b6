//! The end of every packet's path, shared by the entry programs and the
//! tail-called classifier: count, decide, report, mark.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use moat_common::{
    class::{self, dir, Class},
    event,
    maps::{FLAG_QUARANTINE, FLOW_BLOCKED},
    mark, reason, DeviceEntry, FlowKey,
};

use crate::{events, maps};

const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_ICMP: u8 = 1;

/// The facts about a packet that the verdict needs.
pub struct Facts<'a> {
    pub dir: usize,
    pub dev: DeviceEntry,
    pub mac: [u8; 6],
    pub len: u64,
    pub proto: u8,
    /// The flow, for TCP/UDP packets.
    pub key: Option<&'a FlowKey>,
    /// Where the L4 payload is: (offset, length).
    pub payload: (usize, usize),
}

/// Counts the packet under `class`, then drops it (with a reason) or marks it.
pub fn finish(ctx: &TcContext, f: &Facts<'_>, class: Class) -> i32 {
    maps::count_packet(f.dev.id, class, f.dir, f.len);
    if let Some(why) = drop_reason(&f.dev, class, f.proto) {
        maps::count_drop(f.dev.id, class, why);
        if let Some(k) = f.key {
            report_block_once(k, f, class, why);
        }
        return TC_ACT_SHOT;
    }
    if let Some(k) = f.key {
        copy_if_wanted(ctx, f, k, class);
    }
    ctx.set_mark(mark::encode(f.dev.id, class));
    TC_ACT_OK
}

fn drop_reason(dev: &DeviceEntry, class: Class, proto: u8) -> Option<u32> {
    if dev.flags & FLAG_QUARANTINE != 0 {
        let allowed = class == class::DHCP || class == class::DNS || proto == IPPROTO_ICMPV6 || proto == IPPROTO_ICMP;
        return if allowed { None } else { Some(reason::QUARANTINE) };
    }
    if dev.blocked_classes & class::bit(class) != 0 {
        return Some(reason::BLOCKED_CLASS);
    }
    None
}

/// One BLOCKED event per flow, not per packet: a scanning device must not
/// flood the ring buffer.
fn report_block_once(k: &FlowKey, f: &Facts<'_>, class: Class, why: u32) {
    // Remembered whatever the flag says: a flow first dropped for quarantine
    // may be dropped for its class later, and must stay so after eviction.
    if why == reason::BLOCKED_CLASS {
        let _ = maps::BLOCKED_FLOWS.insert(k, class, 0);
    }
    if let Some(v) = maps::FLOWS.get_ptr_mut(k) {
        // SAFETY: entry in the map; a racing CPU at worst sends a second event.
        let v = unsafe { &mut *v };
        if v.flags & FLOW_BLOCKED != 0 {
            return;
        }
        v.flags |= FLOW_BLOCKED;
    }
    events::flow(event::BLOCKED, class, why as u8, f.dir, f.dev.id, &f.mac, k);
}

/// DNS answers to devices and DHCP messages from them go to user space.
fn copy_if_wanted(ctx: &TcContext, f: &Facts<'_>, k: &FlowKey, class: Class) {
    let kind = if class == class::DNS && f.dir == dir::TO_DEVICE {
        event::DNS_RESPONSE
    } else if class == class::DHCP && f.dir == dir::FROM_DEVICE && maps::dhcp_copy_allowed(&f.mac) {
        event::DHCP_REQUEST
    } else {
        return;
    };
    events::packet(ctx, kind, class, f, k);
}
