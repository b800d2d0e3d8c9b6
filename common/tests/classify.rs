//! Classification rules on payload samples (host-side; the same code runs in
//! the kernel, where tests/tests/classifier.rs checks it on whole frames).

use moat_common::{
    class::{self, Class},
    classify::{classify, tcp_port_hint, Sample, IPPROTO_TCP, IPPROTO_UDP, SAMPLE_LEN},
};

fn sample(proto: u8, src_port: u16, dst_port: u16, payload: &[u8]) -> Sample {
    let mut bytes = [0u8; SAMPLE_LEN];
    let len = payload.len().min(SAMPLE_LEN);
    bytes[..len].copy_from_slice(&payload[..len]);
    let dhcp_cookie = payload.get(236..240) == Some(&[0x63, 0x82, 0x53, 0x63][..]);
    Sample { bytes, len, payload_len: payload.len(), proto, src_port, dst_port, dhcp_cookie }
}

fn tcp(dst_port: u16, payload: &[u8]) -> Class {
    classify(&sample(IPPROTO_TCP, 40000, dst_port, payload))
}

fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Class {
    classify(&sample(IPPROTO_UDP, src_port, dst_port, payload))
}

pub const CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
pub const SERVER_HELLO: &[u8] = &[0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00, 0x76, 0x03, 0x03];
/// CONNECT, remaining length 16, "MQTT", level 4.
pub const MQTT_311: &[u8] = &[0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c];
/// CONNECT with a 2-byte remaining length, "MQIsdp", level 3.
pub const MQTT_31: &[u8] = &[0x10, 0x82, 0x01, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03];

#[test]
fn tls_on_any_port() {
    assert_eq!(tcp(443, CLIENT_HELLO), class::TLS);
    assert_eq!(tcp(1883, CLIENT_HELLO), class::TLS, "TLS on the MQTT port is still TLS");
    assert_eq!(tcp(40000, SERVER_HELLO), class::TLS);
    let mut app_data = CLIENT_HELLO.to_vec();
    app_data[0] = 0x17;
    assert_eq!(tcp(443, &app_data), class::OTHER, "mid-stream application data is not a hello");
    assert_eq!(tcp(443, &CLIENT_HELLO[..5]), class::OTHER, "too short to see the handshake type");
}

#[test]
fn plaintext_mqtt_on_any_port() {
    assert_eq!(tcp(1883, MQTT_311), class::MQTT);
    assert_eq!(tcp(443, MQTT_311), class::MQTT, "plaintext MQTT on 443 is still MQTT");
    assert_eq!(tcp(1883, MQTT_31), class::MQTT);
    let mut wrong = MQTT_311.to_vec();
    wrong[4] = b'X';
    assert_eq!(tcp(1883, &wrong), class::OTHER);
    assert_eq!(tcp(1883, &[0x10, 0xff, 0xff, 0xff, 0xff, 0x00, 0x04]), class::OTHER, "5-byte varint is invalid");
    assert_eq!(tcp(1883, &[0x30, 0x05, 0x00, 0x01, b'a']), class::OTHER, "PUBLISH first is not a CONNECT");
}

#[test]
fn telnet_by_negotiation_or_port() {
    assert_eq!(tcp(8023, &[0xff, 0xfd, 0x18]), class::TELNET, "IAC DO on port 8023");
    assert_eq!(tcp(40000, &[0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03]), class::TELNET, "IAC WILL");
    assert_eq!(tcp(23, &[0xff, 0xfa, 0x18]), class::TELNET, "IAC SB");
    assert_eq!(tcp(23, &[0xff, 0xf0]), class::OTHER, "IAC SE alone is no negotiation");
    assert_eq!(tcp_port_hint(23), class::TELNET);
    assert_eq!(tcp_port_hint(2323), class::TELNET);
    assert_eq!(tcp_port_hint(8023), class::OTHER);
}

#[test]
fn http_rtsp_ssh_ftp() {
    assert_eq!(tcp(8080, b"GET / HTTP/1.1\r\nHost: x\r\n"), class::HTTP);
    assert_eq!(tcp(80, b"POST /api HTTP/1.1\r\n"), class::HTTP);
    assert_eq!(tcp(80, b"OPTIONS * HTTP/1.1\r\n"), class::HTTP);
    assert_eq!(tcp(40000, b"HTTP/1.0 200 OK\r\n"), class::HTTP);
    assert_eq!(tcp(80, b"GETX / HTTP/1.1"), class::OTHER);
    assert_eq!(tcp(554, b"OPTIONS rtsp://cam/stream RTSP/1.0\r\n"), class::RTSP);
    assert_eq!(tcp(8554, b"DESCRIBE rtsp://10.0.0.1/ RTSP/1.0"), class::RTSP);
    assert_eq!(tcp(40000, b"RTSP/1.0 200 OK\r\n"), class::RTSP);
    assert_eq!(tcp(22, b"SSH-2.0-OpenSSH_9.2\r\n"), class::SSH);
    assert_eq!(tcp(2222, b"SSH-1.99-dropbear\r\n"), class::SSH);
    assert_eq!(tcp(21, b"220 ProFTPD Server\r\n"), class::FTP);
    assert_eq!(tcp(21, b"220-Welcome\r\n"), class::FTP, "any 220 greeting on port 21");
    assert_eq!(tcp(2121, b"220 (vsFTPd 3.0.3)\r\n"), class::FTP, "a greeting naming FTP on any port");
    assert_eq!(tcp(2121, b"220 Welcome\r\n"), class::OTHER, "a bare 220 elsewhere is not enough");
    assert_eq!(tcp(25, b"220 mail.example ESMTP\r\n"), class::OTHER, "SMTP is not FTP");
    assert_eq!(tcp(21, b"USER anonymous\r\n"), class::FTP);
    assert_eq!(tcp(21, b"2200 nope"), class::OTHER);
}

fn dns_query() -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    q
}

fn dhcp_discover() -> Vec<u8> {
    let mut p = vec![0u8; 300];
    p[0] = 1;
    p[1] = 1;
    p[2] = 6;
    p[236..240].copy_from_slice(&[0x63, 0x82, 0x53, 0x63]);
    p
}

#[test]
fn udp_classes() {
    assert_eq!(udp(40000, 53, &dns_query()), class::DNS);
    assert_eq!(udp(53, 40000, &dns_query()), class::DNS, "responses too");
    assert_eq!(udp(40000, 53, &[0u8; 8]), class::OTHER, "too short for a DNS header");
    assert_eq!(udp(40000, 9999, &dns_query()), class::OTHER, "DNS is only recognised with port 53");
    assert_eq!(udp(5353, 5353, &dns_query()), class::MDNS);
    assert_eq!(udp(68, 67, &dhcp_discover()), class::DHCP);
    let mut no_cookie = dhcp_discover();
    no_cookie[236] = 0;
    assert_eq!(udp(68, 67, &no_cookie), class::OTHER);
    assert_eq!(udp(546, 547, &[1, 0xaa, 0xbb, 0xcc, 0, 1]), class::DHCP, "DHCPv6 solicit");
    assert_eq!(udp(546, 547, &[99, 0, 0, 0]), class::OTHER, "not a DHCPv6 message type");
    let mut ntp = vec![0u8; 48];
    ntp[0] = 0x23; // version 4, mode 3 (client)
    assert_eq!(udp(40000, 123, &ntp), class::NTP);
    assert_eq!(udp(40000, 123, &ntp[..20]), class::OTHER, "NTP needs 48 bytes");
    assert_eq!(udp(40000, 1900, b"M-SEARCH * HTTP/1.1\r\n"), class::SSDP);
    assert_eq!(udp(1900, 40000, b"NOTIFY * HTTP/1.1\r\n"), class::SSDP);
    assert_eq!(udp(1900, 40000, b"HTTP/1.1 200 OK\r\n"), class::SSDP);
    let mut quic = vec![0xc3, 0, 0, 0, 1, 8];
    quic.resize(1200, 0);
    assert_eq!(udp(40000, 443, &quic), class::QUIC);
    quic[4] = 2;
    assert_eq!(udp(40000, 443, &quic), class::OTHER, "unknown QUIC version");
    assert_eq!(udp(40000, 443, &[0x43, 0, 0, 0, 1]), class::OTHER, "short header is not classified");
    assert_eq!(udp(40000, 69, b"\x00\x01firmware.bin\x00octet\x00"), class::TFTP, "TFTP read request");
    assert_eq!(udp(40000, 69, b"\x00\x02upload.bin\x00octet\x00"), class::TFTP, "TFTP write request");
    assert_eq!(udp(40000, 69, b"\x00\x03data"), class::OTHER, "a DATA packet is not a request");
    assert_eq!(udp(69, 40000, b"\x00\x01x\x00octet\x00"), class::OTHER, "only requests to port 69");
}

#[test]
fn empty_and_other_protocols() {
    assert_eq!(tcp(80, b""), class::OTHER);
    assert_eq!(classify(&sample(1, 0, 0, b"ping")), class::OTHER, "ICMP");
    assert_eq!(tcp(80, &[0u8; 16]), class::OTHER);
}
