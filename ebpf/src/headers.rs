//! Header walking: Ethernet (+ one 802.1Q/802.1ad tag) → IPv4/IPv6 (+ bounded
//! extension-header walk) → TCP destination port.
//!
//! Reads go through `bpf_skb_load_bytes` (`TcContext::load`), which bounds-checks
//! at run time and works on non-linear skbs.

use aya_ebpf::programs::TcContext;
use moat_common::reason;

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPV6_HLEN: usize = 40;
/// Extension headers followed before giving up (each is one bounded step).
const MAX_EXT_HEADERS: usize = 6;

/// Result of walking a packet's headers.
pub enum Parse {
    /// First (or only) fragment of a TCP segment to this port.
    Tcp(u16),
    /// Not TCP, not IP, or a non-first fragment: no port to decide on.
    Other,
    /// A header needed for the decision is cut short or invalid (health counter index).
    Malformed(u32),
}

fn be16(ctx: &TcContext, off: usize) -> Option<u16> {
    ctx.load::<[u8; 2]>(off).ok().map(u16::from_be_bytes)
}

fn byte(ctx: &TcContext, off: usize) -> Option<u8> {
    ctx.load::<u8>(off).ok()
}

/// Destination TCP port of the packet, if it is TCP.
pub fn l4_dst_port(ctx: &TcContext) -> Parse {
    let Some(mut ethertype) = be16(ctx, 12) else {
        return Parse::Malformed(reason::HEALTH_TRUNCATED);
    };
    let mut l3 = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let Some(inner) = be16(ctx, ETH_HLEN + 2) else {
            return Parse::Malformed(reason::HEALTH_TRUNCATED);
        };
        ethertype = inner;
        l3 += 4;
    }
    match ethertype {
        ETH_P_IPV4 => ipv4(ctx, l3),
        ETH_P_IPV6 => ipv6(ctx, l3),
        _ => Parse::Other,
    }
}

fn ipv4(ctx: &TcContext, l3: usize) -> Parse {
    let (Some(vihl), Some(frag), Some(proto)) =
        (byte(ctx, l3), be16(ctx, l3 + 6), byte(ctx, l3 + 9))
    else {
        return Parse::Malformed(reason::HEALTH_TRUNCATED);
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return Parse::Malformed(reason::HEALTH_BAD_HEADER);
    }
    if frag & 0x1fff != 0 || proto != IPPROTO_TCP {
        return Parse::Other;
    }
    tcp_dst(ctx, l3 + ihl)
}

fn ipv6(ctx: &TcContext, l3: usize) -> Parse {
    let (Some(ver), Some(mut next)) = (byte(ctx, l3), byte(ctx, l3 + 6)) else {
        return Parse::Malformed(reason::HEALTH_TRUNCATED);
    };
    if ver >> 4 != 6 {
        return Parse::Malformed(reason::HEALTH_BAD_HEADER);
    }
    let mut off = l3 + IPV6_HLEN;
    for _ in 0..MAX_EXT_HEADERS {
        let step = match next {
            IPPROTO_TCP => return tcp_dst(ctx, off),
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => byte(ctx, off + 1).map(|l| (usize::from(l) + 1) * 8),
            // Fragment: fixed 8 bytes; only the first fragment carries the ports.
            44 => match be16(ctx, off + 2) {
                Some(fo) if fo & 0xfff8 != 0 => return Parse::Other,
                Some(_) => Some(8),
                None => None,
            },
            // Authentication header: (len + 2) * 4 bytes.
            51 => byte(ctx, off + 1).map(|l| (usize::from(l) + 2) * 4),
            _ => return Parse::Other,
        };
        let (Some(step), Some(n)) = (step, byte(ctx, off)) else {
            return Parse::Malformed(reason::HEALTH_TRUNCATED);
        };
        next = n;
        off += step;
    }
    if next == IPPROTO_TCP {
        return tcp_dst(ctx, off);
    }
    Parse::Malformed(reason::HEALTH_EXT_HDR_LIMIT)
}

fn tcp_dst(ctx: &TcContext, l4: usize) -> Parse {
    match be16(ctx, l4 + 2) {
        Some(port) => Parse::Tcp(port),
        None => Parse::Malformed(reason::HEALTH_TRUNCATED),
    }
}
