//! Protocol classification from a flow's first payload bytes: pure, shared by
//! the eBPF program and host tests. Rules and known false positives are in
//! docs/classification.md; keep the two in step.
//!
//! Written for the verifier: the sample is read as two big-endian 64-bit
//! words and every rule is a masked compare against constants built at compile
//! time ([`Pat`]), so there are no loops and few branches. Each branch the
//! verifier has to follow is multiplied by every path that reaches this code.

use crate::class::{self, Class};

/// Payload bytes the classifier looks at.
pub const SAMPLE_LEN: usize = 16;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// What the classifier knows about a packet with payload.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// The first payload bytes; only `len` of them are valid and the rest
    /// MUST be zero: rules read bytes past `len` as zero rather than check
    /// `len` (no pattern contains a zero byte where a short sample would stop).
    pub bytes: [u8; SAMPLE_LEN],
    pub len: usize,
    /// Whole L4 payload length.
    pub payload_len: usize,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// The DHCP magic cookie (63 82 53 63) sits at payload offset 236.
    pub dhcp_cookie: bool,
}

/// A byte pattern at a fixed offset in the sample, as masks over its two words.
#[derive(Clone, Copy, Debug)]
pub struct Pat {
    v: [u64; 2],
    m: [u64; 2],
}

/// `pattern` starting at byte `off` of the sample (off + len ≤ 16).
pub const fn pat_at(off: usize, pattern: &[u8]) -> Pat {
    let mut v = [0u64; 2];
    let mut m = [0u64; 2];
    let mut i = 0;
    while i < pattern.len() {
        let pos = off + i;
        let shift = (7 - pos % 8) * 8;
        v[pos / 8] |= (pattern[i] as u64) << shift;
        m[pos / 8] |= 0xffu64 << shift;
        i += 1;
    }
    Pat { v, m }
}

/// `pattern` at the start of the sample.
pub const fn pat(pattern: &[u8]) -> Pat {
    pat_at(0, pattern)
}

/// The sample as two big-endian words, plus what the rules need.
struct Words<'a> {
    w: [u64; 2],
    s: &'a Sample,
}

impl Words<'_> {
    fn is(&self, p: Pat) -> bool {
        // `&`, not `&&`: one branch per pattern instead of two.
        ((self.w[0] & p.m[0]) == p.v[0]) & ((self.w[1] & p.m[1]) == p.v[1])
    }

    /// Byte `i` (constant in every caller).
    fn at(&self, i: usize) -> u8 {
        (self.w[i / 8 % 2] >> ((7 - i % 8) * 8)) as u8
    }

    fn port(&self, p: u16) -> bool {
        (self.s.src_port == p) | (self.s.dst_port == p)
    }
}

/// The class of a flow whose first payload is `s`.
pub fn classify(s: &Sample) -> Class {
    if s.len == 0 {
        return class::OTHER;
    }
    let b = &s.bytes;
    let w = Words {
        w: [
            u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        ],
        s,
    };
    match s.proto {
        IPPROTO_TCP => tcp(&w),
        IPPROTO_UDP => udp(&w),
        _ => class::OTHER,
    }
}

/// Class of a TCP flow before any payload: telnet's ports, else other.
pub fn tcp_port_hint(dst_port: u16) -> Class {
    if dst_port == class::TELNET_PORTS[0] || dst_port == class::TELNET_PORTS[1] {
        class::TELNET
    } else {
        class::OTHER
    }
}

fn tcp(w: &Words<'_>) -> Class {
    if is_tls(w) {
        class::TLS
    } else if is_telnet(w) {
        class::TELNET
    } else if w.is(pat(b"SSH-")) {
        class::SSH
    } else if is_mqtt_connect(w) {
        class::MQTT
    } else if is_rtsp(w) {
        class::RTSP
    } else if is_http(w) {
        class::HTTP
    } else if is_ftp(w) {
        class::FTP
    } else {
        class::OTHER
    }
}

/// FTP: the server's `220` greeting, on port 21 or naming FTP (SMTP and
/// others greet with 220 too), or the client's `USER`.
fn is_ftp(w: &Words<'_>) -> bool {
    let greeting = w.is(pat(b"220 ")) | w.is(pat(b"220-"));
    let says_ftp = w.is(pat_at(4, b"FTP"))
        | w.is(pat_at(5, b"FTP"))
        | w.is(pat_at(6, b"FTP"))
        | w.is(pat_at(7, b"FTP"))
        | w.is(pat_at(8, b"FTP"))
        | w.is(pat_at(9, b"FTP"))
        | w.is(pat_at(10, b"FTP"))
        | w.is(pat_at(11, b"FTP"))
        | w.is(pat_at(12, b"FTP"))
        | w.is(pat_at(13, b"FTP"))
        | w.is(pat_at(4, b"ftp"))
        | w.is(pat_at(5, b"ftp"))
        | w.is(pat_at(6, b"ftp"))
        | w.is(pat_at(7, b"ftp"))
        | w.is(pat_at(8, b"ftp"))
        | w.is(pat_at(9, b"ftp"))
        | w.is(pat_at(10, b"ftp"))
        | w.is(pat_at(11, b"ftp"))
        | w.is(pat_at(12, b"ftp"))
        | w.is(pat_at(13, b"ftp"));
    (greeting & (w.port(21) | says_ftp)) | w.is(pat(b"USER "))
}

/// TLS record: handshake (22), version 3.x (x ≤ 4), ClientHello (1) or ServerHello (2).
fn is_tls(w: &Words<'_>) -> bool {
    w.is(pat(&[0x16, 0x03])) & (w.at(2) <= 0x04) & ((w.at(5) == 1) | (w.at(5) == 2))
}

/// Telnet option negotiation: IAC followed by SB, WILL, WONT, DO or DONT.
fn is_telnet(w: &Words<'_>) -> bool {
    (w.at(0) == 0xff) & (w.at(1) >= 0xfa) & (w.at(1) <= 0xfe)
}

/// MQTT CONNECT: type 1 (0x10), remaining length (1-4 byte varint), then the
/// length-prefixed protocol name "MQTT" (3.1.1, 5) or "MQIsdp" (3.1).
fn is_mqtt_connect(w: &Words<'_>) -> bool {
    if w.at(0) != 0x10 {
        return false;
    }
    // The name starts after the varint: offset 2 to 5.
    let name_at = |off: usize| -> bool {
        match off {
            2 => w.is(pat_at(2, b"\x00\x04MQTT")) | w.is(pat_at(2, b"\x00\x06MQIsdp")),
            3 => w.is(pat_at(3, b"\x00\x04MQTT")) | w.is(pat_at(3, b"\x00\x06MQIsdp")),
            4 => w.is(pat_at(4, b"\x00\x04MQTT")) | w.is(pat_at(4, b"\x00\x06MQIsdp")),
            _ => w.is(pat_at(5, b"\x00\x04MQTT")) | w.is(pat_at(5, b"\x00\x06MQIsdp")),
        }
    };
    if w.at(1) & 0x80 == 0 {
        name_at(2)
    } else if w.at(2) & 0x80 == 0 {
        name_at(3)
    } else if w.at(3) & 0x80 == 0 {
        name_at(4)
    } else if w.at(4) & 0x80 == 0 {
        name_at(5)
    } else {
        false
    }
}

/// RTSP: a response, or a request line `METHOD rtsp://`.
fn is_rtsp(w: &Words<'_>) -> bool {
    w.is(pat(b"RTSP/1."))
        | w.is(pat(b"OPTIONS rtsp:"))
        | w.is(pat(b"DESCRIBE rtsp:"))
        | w.is(pat(b"SETUP rtsp:"))
        | w.is(pat(b"PLAY rtsp:"))
        | w.is(pat(b"PAUSE rtsp:"))
        | w.is(pat(b"TEARDOWN rtsp:"))
        | w.is(pat(b"ANNOUNCE rtsp:"))
        | w.is(pat(b"RECORD rtsp:"))
}

/// An HTTP/1 response or request line.
fn is_http(w: &Words<'_>) -> bool {
    w.is(pat(b"HTTP/1."))
        | w.is(pat(b"GET "))
        | w.is(pat(b"POST "))
        | w.is(pat(b"PUT "))
        | w.is(pat(b"HEAD "))
        | w.is(pat(b"DELETE "))
        | w.is(pat(b"OPTIONS "))
        | w.is(pat(b"PATCH "))
        | w.is(pat(b"CONNECT "))
        | w.is(pat(b"TRACE "))
}

fn udp(w: &Words<'_>) -> Class {
    let s = w.s;
    if (w.port(67) | w.port(68)) & (s.payload_len >= 240) & ((w.at(0) == 1) | (w.at(0) == 2)) & s.dhcp_cookie {
        class::DHCP
    } else if (w.s.dst_port == 547 || w.s.dst_port == 546) & (w.at(0) >= 1) & (w.at(0) <= 13) {
        // DHCPv6: client/server ports and a defined message type.
        class::DHCP
    } else if w.port(53) & dns_header(w) {
        class::DNS
    } else if w.port(5353) & dns_header(w) {
        class::MDNS
    } else if w.port(123) & is_ntp(w) {
        class::NTP
    } else if w.is(pat(b"M-SEARCH ")) | w.is(pat(b"NOTIFY * ")) | (w.port(1900) & w.is(pat(b"HTTP/1.1 "))) {
        class::SSDP
    } else if (w.s.dst_port == 69) & (w.is(pat(&[0, 1])) | w.is(pat(&[0, 2]))) {
        // TFTP read/write request to the server port (the transfer itself
        // moves to other ports; blocking the request stops it).
        class::TFTP
    } else if is_quic_long_header(w) {
        class::QUIC
    } else {
        class::OTHER
    }
}

/// A plausible DNS header: 12 bytes, a standard opcode (query, iquery, status,
/// notify, update), at most a few questions.
fn dns_header(w: &Words<'_>) -> bool {
    let opcode = (w.at(2) >> 3) & 0x0f;
    let qdcount = u16::from_be_bytes([w.at(4), w.at(5)]);
    let std_opcode = (opcode <= 2) | (opcode == 4) | (opcode == 5);
    (w.s.payload_len >= 12) & (w.s.len >= 12) & std_opcode & (qdcount <= 16)
}

/// NTP: 48-byte minimum, version 1-4, mode 1-5.
fn is_ntp(w: &Words<'_>) -> bool {
    let version = (w.at(0) >> 3) & 7;
    let mode = w.at(0) & 7;
    (w.s.payload_len >= 48) & (1..=4).contains(&version) & (1..=5).contains(&mode)
}

/// QUIC long header: form and fixed bits set, a known version (v1, v2, drafts).
fn is_quic_long_header(w: &Words<'_>) -> bool {
    let v = ((w.w[0] >> 24) & 0xffff_ffff) as u32;
    (w.at(0) & 0xc0 == 0xc0) & ((v == 1) | (v == 0x6b33_43cf) | (v & 0xffff_ff00 == 0xff00_0000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_place_bytes_big_endian() {
        let p = pat(b"AB");
        assert_eq!((p.v[0], p.m[0], p.m[1]), (0x4142 << 48, 0xffff << 48, 0));
        let p = pat_at(7, b"XY");
        assert_eq!((p.v[0], p.v[1]), (u64::from(b'X'), u64::from(b'Y') << 56));
    }
}
