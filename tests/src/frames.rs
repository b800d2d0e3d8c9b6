//! Crafted Ethernet frames for BPF_PROG_TEST_RUN: just enough header building
//! to put any bytes at any layer, including broken ones.

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const GW_MAC: [u8; 6] = [0x02, 0x77, 0xff, 0, 0, 1];
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
/// TCP flags.
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const PSH_ACK: u8 = 0x18;

pub const DEV_V4: [u8; 4] = [10, 77, 0, 10];
pub const REMOTE_V4: [u8; 4] = [198, 51, 100, 10];
pub const DEV_V6: [u8; 16] = [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
pub const REMOTE_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];

/// Ethernet header.
pub fn eth_hdr(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Ethernet header from `src` to the gateway.
pub fn eth(src: [u8; 6], ethertype: u16) -> Vec<u8> {
    eth_hdr(GW_MAC, src, ethertype)
}

/// Ethernet header with one 802.1Q tag (VLAN 7), from `src` to the gateway.
pub fn eth_vlan(src: [u8; 6], inner: u16) -> Vec<u8> {
    let mut f = eth(src, ETH_P_8021Q);
    f.extend_from_slice(&7u16.to_be_bytes());
    f.extend_from_slice(&inner.to_be_bytes());
    f
}

/// TCP header (no options) + payload.
pub fn tcp_seg(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t.extend_from_slice(payload);
    t
}

/// Minimal TCP SYN to `dport`.
pub fn tcp(dport: u16) -> Vec<u8> {
    tcp_seg(40000, dport, SYN, &[])
}

/// UDP header + payload.
pub fn udp_dgram(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// IPv4 header (no options) between two addresses.
pub fn ip4(src: [u8; 4], dst: [u8; 4], proto: u8, frag_offset: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h[6..8].copy_from_slice(&frag_offset.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// IPv4 header from the device to the remote host.
pub fn ipv4(proto: u8, frag_offset: u16, payload: &[u8]) -> Vec<u8> {
    ip4(DEV_V4, REMOTE_V4, proto, frag_offset, payload)
}

/// IPv6 header between two addresses.
pub fn ip6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// IPv6 header from the device to the remote host.
pub fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    ip6(DEV_V6, REMOTE_V6, next, payload)
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
    f.extend(ipv4(TCP, 0, &tcp(dport)));
    f
}

/// A whole frame: Ethernet from `src` + IPv6 + TCP SYN to `dport`.
pub fn tcp6(src: [u8; 6], dport: u16) -> Vec<u8> {
    let mut f = eth(src, ETH_P_IPV6);
    f.extend(ipv6(TCP, &tcp(dport)));
    f
}

/// Which way a frame crosses the gateway's LAN side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From the device (LAN ingress).
    Out,
    /// To the device (LAN egress).
    In,
}

/// Address family and encapsulation of a crafted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    V4,
    V6,
    V4Vlan,
}

/// A full frame of a flow between the device (`dev_port`) and the remote host
/// (`remote_port`), going `way`.
pub fn flow_frame(
    dev: [u8; 6],
    way: Way,
    net: Net,
    proto: u8,
    dev_port: u16,
    remote_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let (sport, dport) = if way == Way::Out { (dev_port, remote_port) } else { (remote_port, dev_port) };
    let l4 = if proto == TCP { tcp_seg(sport, dport, PSH_ACK, payload) } else { udp_dgram(sport, dport, payload) };
    let (dst_mac, src_mac) = if way == Way::Out { (GW_MAC, dev) } else { (dev, GW_MAC) };
    match net {
        Net::V4 | Net::V4Vlan => {
            let (s, d) = if way == Way::Out { (DEV_V4, REMOTE_V4) } else { (REMOTE_V4, DEV_V4) };
            let mut f = if net == Net::V4Vlan {
                let mut f = eth_hdr(dst_mac, src_mac, ETH_P_8021Q);
                f.extend_from_slice(&7u16.to_be_bytes());
                f.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
                f
            } else {
                eth_hdr(dst_mac, src_mac, ETH_P_IPV4)
            };
            f.extend(ip4(s, d, proto, 0, &l4));
            f
        }
        Net::V6 => {
            let (s, d) = if way == Way::Out { (DEV_V6, REMOTE_V6) } else { (REMOTE_V6, DEV_V6) };
            let mut f = eth_hdr(dst_mac, src_mac, ETH_P_IPV6);
            f.extend(ip6(s, d, proto, &l4));
            f
        }
    }
}
