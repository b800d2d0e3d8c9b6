//! Flow tracking: one LRU entry per 5-tuple, oriented from the device's side,
//! holding the class decided on the flow's first payload bytes.

use aya_ebpf::{helpers::generated::bpf_ktime_get_coarse_ns, programs::TcContext};
use moat_common::{
    class::{self, dir, Class},
    classify::{self, IPPROTO_TCP, SAMPLE_LEN},
    maps::{FLOW_BLOCKED, FLOW_CLASSIFIED},
    reason, Counter, DeviceEntry, FlowKey, FlowValue,
};

use crate::{headers::Packet, maps, verdict::Facts};

/// The flow key for a packet, device side first.
pub fn key(p: &Packet, d: usize) -> FlowKey {
    let (lan, remote, lan_port, remote_port) =
        if d == dir::FROM_DEVICE { (p.src, p.dst, p.sport, p.dport) } else { (p.dst, p.src, p.dport, p.sport) };
    FlowKey { lan_addr: lan, remote_addr: remote, lan_port, remote_port, proto: p.proto, family: p.family, pad: [0; 2] }
}

/// What tracking found out about a packet's flow.
pub enum Tracked {
    /// The flow's class is known (classified earlier, or no payload yet).
    Class(Class),
    /// First payload of the flow: classify it (tail call). Carries the port
    /// hint to fall back on if the tail call fails.
    Classify(Class),
}

/// The flow's entry, if any.
pub fn lookup(k: &FlowKey) -> Option<&'static mut FlowValue> {
    // SAFETY: the entry lives in the map; other CPUs may update the counters
    // too (best-effort by design, see FlowValue).
    maps::FLOWS.get_ptr_mut(k).map(|v| unsafe { &mut *v })
}

/// The device policy cached in a flow, if still valid for this packet.
pub fn cached_device(v: &FlowValue, mac: &[u8; 6], gen: u32) -> Option<DeviceEntry> {
    if v.policy_gen != gen || v.mac != *mac {
        return None;
    }
    Some(DeviceEntry { id: v.device_id, blocked_classes: v.blocked_classes, flags: u32::from(v.dev_flags), pad: 0 })
}

/// Updates (or creates) the packet's flow with its counters and the device's
/// current policy.
pub fn track(existing: Option<&'static mut FlowValue>, k: &FlowKey, p: &Packet, f: &Facts<'_>, gen: u32) -> Tracked {
    let (d, dev, mac, len) = (f.dir, &f.dev, &f.mac, f.len);
    // Coarse clock (tick resolution): a per-packet timestamp does not need
    // nanoseconds, and the precise clock costs more than a hash lookup in a VM.
    // SAFETY: clock read, no arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if let Some(v) = existing {
        v.last_seen_ns = now;
        let c = &mut v.traffic[d & 1];
        c.packets += 1;
        c.bytes += len;
        if v.policy_gen != gen || v.mac != *mac {
            cache_device(v, dev, mac, gen);
        }
        if v.flags & FLOW_CLASSIFIED == 0 && p.payload_len > 0 {
            return Tracked::Classify(v.class);
        }
        return Tracked::Class(v.class);
    }
    // The port a connection is made to: the remote's when the device starts
    // it, the device's own when the first packet comes to it.
    let service_port = if d == dir::FROM_DEVICE { k.remote_port } else { k.lan_port };
    let hint = if p.proto == IPPROTO_TCP { classify::tcp_port_hint(service_port) } else { class::OTHER };
    let mut v = FlowValue { first_seen_ns: now, last_seen_ns: now, class: hint, ..Default::default() };
    // A flow blocked before and since evicted keeps its class.
    // SAFETY: the value is copied out at once.
    let remembered = unsafe { maps::BLOCKED_FLOWS.get(k) }.copied();
    if let Some(c) = remembered {
        v.class = c;
        v.flags = FLOW_CLASSIFIED | FLOW_BLOCKED;
    }
    cache_device(&mut v, dev, mac, gen);
    v.traffic[d & 1] = Counter { packets: 1, bytes: len };
    if maps::FLOWS.insert(k, v, 0).is_err() {
        maps::health(reason::HEALTH_FLOW_INSERT_FAILED);
    }
    match remembered {
        Some(c) => Tracked::Class(c),
        None if p.payload_len > 0 => Tracked::Classify(hint),
        None => Tracked::Class(hint),
    }
}

fn cache_device(v: &mut FlowValue, dev: &DeviceEntry, mac: &[u8; 6], gen: u32) {
    v.device_id = dev.id;
    v.blocked_classes = dev.blocked_classes;
    v.dev_flags = dev.flags as u8;
    v.mac = *mac;
    v.policy_gen = gen;
}

/// Reads `min(avail, SAMPLE_LEN)` payload bytes into `dst` (zero-filled
/// after them) with one fixed-size load, so the verifier sees no variable
/// length: a short payload is read as the 16 bytes that end where it ends
/// (headers first, always present) and the header bytes are shifted out.
pub fn read_sample(ctx: &TcContext, off: usize, avail: usize, dst: &mut [u8; SAMPLE_LEN]) -> usize {
    if avail == 0 {
        return 0;
    }
    if avail >= SAMPLE_LEN {
        return match ctx.load::<[u8; SAMPLE_LEN]>(off) {
            Ok(b) => {
                *dst = b;
                SAMPLE_LEN
            }
            Err(_) => 0,
        };
    }
    let Some(start) = (off + avail).checked_sub(SAMPLE_LEN) else {
        return 0;
    };
    let Ok(raw) = ctx.load::<[u8; SAMPLE_LEN]>(start) else {
        return 0;
    };
    let hi = u64::from_be_bytes([raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7]]);
    let lo = u64::from_be_bytes([raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15]]);
    let shift = ((SAMPLE_LEN - avail) * 8) as u32; // 8..=120
    let (hi, lo) =
        if shift >= 64 { (lo << (shift - 64), 0) } else { ((hi << shift) | (lo >> (64 - shift)), lo << shift) };
    let (h, l) = (hi.to_be_bytes(), lo.to_be_bytes());
    *dst = [h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7]];
    avail
}
