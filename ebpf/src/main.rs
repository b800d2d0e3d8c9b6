//! moat's LAN classifier (tc): `moat_ingress` sees packets from devices,
//! `moat_egress` packets to them. Both identify the device by MAC and track
//! the flow; a flow's first payload packet is handed to `moat_classify` (tail
//! call), which decides its class. Every packet is counted and either dropped
//! (with a reason counter) or marked for nftables.
#![no_std]
#![no_main]

mod classifier;
mod events;
mod flow;
mod headers;
mod maps;
mod verdict;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use moat_common::{
    class::{self, dir},
    maps::JUMP_CLASSIFY,
    reason, MacKey,
};

use flow::Tracked;
use headers::Parse;
use verdict::{finish, Facts};

#[classifier]
pub fn moat_ingress(ctx: TcContext) -> i32 {
    process(&ctx, dir::FROM_DEVICE)
}

#[classifier]
pub fn moat_egress(ctx: TcContext) -> i32 {
    process(&ctx, dir::TO_DEVICE)
}

#[classifier]
pub fn moat_classify(ctx: TcContext) -> i32 {
    classifier::run(&ctx)
}

/// Does nothing: the benchmark's baseline, built and loaded like the others.
#[classifier]
pub fn moat_pass(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}

fn process(ctx: &TcContext, d: usize) -> i32 {
    match try_process(ctx, d) {
        Ok(verdict) => verdict,
        // Only a frame shorter than an Ethernet header gets here, which the
        // kernel never delivers; pass it so the stack makes its own decision.
        Err(()) => {
            maps::health(reason::HEALTH_TRUNCATED);
            TC_ACT_OK
        }
    }
}

fn try_process(ctx: &TcContext, d: usize) -> Result<i32, ()> {
    headers::linearize(ctx);
    // The device is the source on ingress, the destination on egress.
    let mac: [u8; 6] = headers::bytes(ctx, if d == dir::FROM_DEVICE { 6 } else { 0 }).ok_or(())?;
    if d == dir::TO_DEVICE && mac[0] & 1 == 1 {
        return Ok(TC_ACT_OK); // the gateway's own broadcast/multicast: no device
    }
    // Read before any device lookup: a policy written after this read comes
    // with a newer generation, so a stale cache entry is never kept.
    let gen = maps::policy_gen();
    let len = u64::from(ctx.len());
    let p = match headers::parse(ctx) {
        Parse::Ip(p) => p,
        // ARP and friends pass, even in quarantine: without ARP nothing works.
        Parse::NonIp => {
            let dev = device(&mac, d);
            maps::count_packet(dev.id, class::OTHER, d, len);
            return Ok(TC_ACT_OK);
        }
        Parse::Malformed(health) => {
            let dev = device(&mac, d);
            maps::health(health);
            maps::count_packet(dev.id, class::OTHER, d, len);
            maps::count_drop(dev.id, class::OTHER, reason::MALFORMED);
            return Ok(TC_ACT_SHOT);
        }
    };
    if !p.has_ports {
        let dev = device(&mac, d);
        let facts = Facts { dir: d, dev, mac, len, proto: p.proto, key: None, payload: (0, 0) };
        return Ok(finish(ctx, &facts, class::OTHER));
    }
    let k = flow::key(&p, d);
    let existing = flow::lookup(&k);
    // Established flows carry their device's policy; others look it up.
    let dev = match existing.as_deref().and_then(|v| flow::cached_device(v, &mac, gen)) {
        Some(dev) => dev,
        None => device(&mac, d),
    };
    let facts = Facts { dir: d, dev, mac, len, proto: p.proto, key: Some(&k), payload: (p.payload_off, p.payload_len) };
    match flow::track(existing, &k, &p, &facts, gen) {
        Tracked::Class(c) => Ok(finish(ctx, &facts, c)),
        Tracked::Classify(hint) => {
            if let Some(slot) = maps::PENDING.get_ptr_mut(0) {
                // SAFETY: per-CPU slot, read only by the tail call below.
                unsafe {
                    *slot = maps::Pending {
                        key: k,
                        dev,
                        len,
                        payload_off: p.payload_off as u32,
                        payload_len: p.payload_len as u32,
                        dir: d as u32,
                        mac,
                        proto: p.proto,
                        pad: 0,
                    };
                    maps::JUMP.tail_call(ctx, JUMP_CLASSIFY);
                }
            }
            maps::health(reason::HEALTH_TAIL_CALL_FAILED);
            Ok(finish(ctx, &facts, hint))
        }
    }
}

/// The device entry for a MAC (unknown-device policy if not configured),
/// reporting an unknown sender the first time it is seen.
fn device(mac: &[u8; 6], d: usize) -> moat_common::DeviceEntry {
    let (dev, known) = maps::device(&MacKey::new(*mac));
    if !known && d == dir::FROM_DEVICE {
        events::new_device_once(mac, d);
    }
    dev
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
