//! Events to user space. A full ring buffer loses the event and counts it
//! (health `ringbuf_full`); it never changes a verdict.

/// `bpf_ringbuf_submit` flag: do not notify the reader.
const BPF_RB_NO_WAKEUP: u64 = 1;

use aya_ebpf::{
    helpers::{bpf_ktime_get_boot_ns, generated::bpf_skb_load_bytes},
    programs::TcContext,
    EbpfContext as _,
};
use moat_common::{
    class::Class,
    event::{self, EventHeader, FlowEvent, PacketEvent, PACKET_COPY_MAX},
    reason, FlowKey, MacKey,
};

use crate::{maps, verdict::Facts};

fn header(kind: u8, class: Class, why: u8, dir: usize, device_id: u32) -> EventHeader {
    // SAFETY: boot-time clock read, no arguments.
    let ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    EventHeader { kind, class, reason: why, dir: dir as u8, device_id, ts_ns }
}

pub fn flow(kind: u8, class: Class, why: u8, dir: usize, device_id: u32, mac: &[u8; 6], key: &FlowKey) {
    let Some(mut e) = maps::EVENTS.reserve::<FlowEvent>(0) else {
        maps::health(reason::HEALTH_RINGBUF_FULL);
        return;
    };
    e.write(FlowEvent { hdr: header(kind, class, why, dir, device_id), mac: *mac, pad: [0; 2], key: *key });
    // No wakeup: notifying the reader costs ~5 us per event (measured), more
    // than everything else on a flow's first packet. The daemon drains these
    // on a short timer; only DNS answers (below) wake it at once.
    e.submit(BPF_RB_NO_WAKEUP);
}

/// Reports an unknown MAC the first time it is seen (remembered in an LRU).
pub fn new_device_once(mac: &[u8; 6], dir: usize) {
    let k = MacKey::new(*mac);
    // SAFETY: presence check only; the value is not read.
    if unsafe { maps::UNKNOWN_SEEN.get(k) }.is_some() {
        return;
    }
    // SAFETY: boot-time clock read.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let _ = maps::UNKNOWN_SEEN.insert(k, now, 0);
    flow(event::NEW_DEVICE, 0, 0, dir, 0, mac, &FlowKey::default());
}

/// Copies a packet's payload (up to PACKET_COPY_MAX bytes) to user space.
pub fn packet(ctx: &TcContext, kind: u8, class: Class, f: &Facts<'_>, key: &FlowKey) {
    let Some(mut e) = maps::EVENTS.reserve::<PacketEvent>(0) else {
        maps::health(reason::HEALTH_RINGBUF_FULL);
        return;
    };
    let ev = e.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned PacketEvent; fields
    // are written in place (the struct is too big for the BPF stack).
    let ev = unsafe { &mut *ev };
    ev.hdr = header(kind, class, 0, f.dir, f.dev.id);
    ev.mac = f.mac;
    ev.orig_len = f.payload.1 as u32;
    ev.key = *key;
    match copy_payload(ctx, f.payload, &mut ev.data) {
        Some(n) => {
            ev.len = n as u16;
            e.submit(0);
        }
        None => e.discard(0),
    }
}

/// Copies up to PACKET_COPY_MAX payload bytes into `dst`; the byte count, or
/// None when there is nothing to copy. The length is shaped as `(n - 1) + 1`
/// with `n - 1` checked below the maximum, so the verifier sees 1..=MAX.
fn copy_payload(ctx: &TcContext, (off, len): (usize, usize), dst: &mut [u8; PACKET_COPY_MAX]) -> Option<usize> {
    let avail = len.min((ctx.len() as usize).saturating_sub(off));
    let last = avail.checked_sub(1)? as u32;
    if last >= PACKET_COPY_MAX as u32 {
        return copy_exact(ctx, off, dst, PACKET_COPY_MAX as u32);
    }
    copy_exact(ctx, off, dst, last + 1)
}

#[inline(always)]
fn copy_exact(ctx: &TcContext, off: usize, dst: &mut [u8; PACKET_COPY_MAX], len: u32) -> Option<usize> {
    // SAFETY: `dst` has PACKET_COPY_MAX bytes and 1 <= len <= PACKET_COPY_MAX;
    // the helper bounds-checks the packet side.
    let r = unsafe { bpf_skb_load_bytes(ctx.as_ptr(), off as u32, dst.as_mut_ptr().cast(), len) };
    (r == 0).then_some(len as usize)
}
