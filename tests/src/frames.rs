//! Crafted Ethernet frames for BPF_PROG_TEST_RUN: just enough header building
//! to put any bytes at any layer, including broken ones.

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
const GW_MAC: [u8; 6] = [0x02, 0x77, 0xff, 0, 0, 1];

/// Ethernet header from `src` to the gateway.
pub fn eth(src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = GW_MAC.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Ethernet header with one 802.1Q tag (VLAN 7).
pub fn eth_vlan(src: [u8; 6], inner: u16) -> Vec<u8> {
    let mut f = eth(src, ETH_P_8021Q);
    f.extend_from_slice(&7u16.to_be_bytes());
    f.extend_from_slice(&inner.to_be_bytes());
    f
}

/// Minimal TCP header (SYN) to `dport`.
pub fn tcp(dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t
}

/// IPv4 header (no options) carrying `payload` of protocol `proto`.
pub fn ipv4(proto: u8, frag_offset: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    let total = (20 + payload.len()) as u16;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6..8].copy_from_slice(&frag_offset.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&[10, 77, 0, 10]);
    h[16..20].copy_from_slice(&[198, 51, 100, 10]);
    h.extend_from_slice(payload);
    h
}

/// IPv6 header with `next` header and `payload` (which may start with extension headers).
pub fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8] = 0xfd;
    h[9] = 0x77;
    h[23] = 10;
    h[24..28].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    h[39] = 0x10;
    h.extend_from_slice(payload);
    h
}

/// An 8-byte IPv6 extension header (hop-by-hop / dest-opts style) followed by `rest`.
pub fn ext_header(next: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0, 1, 4, 0, 0, 0, 0];
    h.extend_from_slice(rest);
    h
}

/// A whole frame: Ethernet from `src` + IPv4 + TCP SYN to `dport`.
pub fn tcp4(src: [u8; 6], dport: u16) -> Vec<u8> {
    let mut f = eth(src, ETH_P_IPV4);
    f.extend(ipv4(6, 0, &tcp(dport)));
    f
}

/// A whole frame: Ethernet from `src` + IPv6 + TCP SYN to `dport`.
pub fn tcp6(src: [u8; 6], dport: u16) -> Vec<u8> {
    let mut f = eth(src, ETH_P_IPV6);
    f.extend(ipv6(6, &tcp(dport)));
    f
}
