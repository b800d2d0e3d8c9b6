//! moat's LAN ingress classifier (tc).
//!
//! Identifies the device by source MAC, counts its packets, and drops packets
//! whose class the device's policy blocks. Every drop increments a reason counter.
#![no_std]
#![no_main]

mod headers;
mod maps;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use moat_common::{class, reason, MacKey};

use headers::{l4_dst_port, Parse};

#[classifier]
pub fn moat_ingress(ctx: TcContext) -> i32 {
    match try_ingress(&ctx) {
        Ok(verdict) => verdict,
        // Only reachable when the frame is shorter than an Ethernet header, which
        // the kernel never delivers; pass so the stack makes its own decision.
        Err(()) => {
            maps::health(reason::HEALTH_TRUNCATED);
            TC_ACT_OK
        }
    }
}

fn try_ingress(ctx: &TcContext) -> Result<i32, ()> {
    let src: [u8; 6] = ctx.load(6).map_err(|_| ())?;
    let device = maps::device(&MacKey::new(src));
    let len = u64::from(ctx.len());
    maps::count_packet(device.id, len);

    let class = match l4_dst_port(ctx) {
        Parse::Tcp(port) if is_telnet_port(port) => class::TELNET,
        Parse::Tcp(_) | Parse::Other => class::OTHER,
        Parse::Malformed(health) => {
            maps::health(health);
            maps::count_drop(device.id, class::OTHER, len, reason::MALFORMED);
            return Ok(TC_ACT_SHOT);
        }
    };

    if device.blocked_classes & class::bit(class) != 0 {
        maps::count_drop(device.id, class, len, reason::BLOCKED_CLASS);
        return Ok(TC_ACT_SHOT);
    }
    Ok(TC_ACT_OK)
}

fn is_telnet_port(port: u16) -> bool {
    port == class::TELNET_PORTS[0] || port == class::TELNET_PORTS[1]
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
