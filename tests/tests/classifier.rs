//! The classifier on crafted frames, in the real kernel, via BPF_PROG_TEST_RUN:
//! verdicts, marks, flows, counters and events. Needs root (CAP_BPF); nothing
//! is attached to any interface.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::path::Path;

use aya::{
    maps::{MapData, RingBuf},
    programs::{TestRun as _, TestRunOptions},
};
use moat::{
    events::{decode, payload, Event},
    kernel::{Kernel, Limits},
};
use moat_common::{
    class::{self, dir, Class},
    maps::{FLOW_CLASSIFIED, PROG_EGRESS, PROG_INGRESS},
    mark, reason,
};
use moat_policy::Config;
use moat_tests::frames::*;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
/// Device 1: policy "camera" blocks telnet and mqtt.
const BLOCKER: [u8; 6] = [0x02, 0x77, 0, 0, 0, 1];
/// Device 2: policy "open" blocks nothing.
const ALLOWER: [u8; 6] = [0x02, 0x77, 0, 0, 0, 2];
/// Device 3: quarantined.
const SUSPECT: [u8; 6] = [0x02, 0x77, 0, 0, 0, 3];
const STRANGER: [u8; 6] = [0x02, 0x99, 0, 0, 0, 9];
/// Size of `struct __sk_buff`; `mark` is at offset 8.
const SKB_CTX: usize = 192;

fn config(unknown_policy: Option<&str>) -> Config {
    let unknown = unknown_policy.map(|p| format!("unknown_policy = \"{p}\"\n")).unwrap_or_default();
    let text = format!(
        "[gateway]\nlan = \"br-lan\"\nwan = \"wan0\"\n{unknown}
[defaults]\nblock = []\n[policies.camera]\nblock = [\"telnet\", \"mqtt\"]\n[policies.open]\nblock = []\n[policies.jail]\nquarantine = true\n
[[devices]]\nmac = \"02:77:00:00:00:01\"\nname = \"camera\"\npolicy = \"camera\"
[[devices]]\nmac = \"02:77:00:00:00:02\"\nname = \"laptop\"\npolicy = \"open\"
[[devices]]\nmac = \"02:77:00:00:00:03\"\nname = \"suspect\"\npolicy = \"jail\"\n"
    );
    Config::parse(Path::new("test.toml"), &text).unwrap_or_else(|e| panic!("test config invalid: {e}"))
}

struct Lab {
    k: Kernel,
    ring: RingBuf<MapData>,
}

fn kernel(cfg: &Config) -> Lab {
    assert!(moat_tests::cmd::is_root(), "classifier tests need root (CAP_BPF): run scripts/test as root");
    let mut k = Kernel::load(Limits::from_config(cfg), None).unwrap_or_else(|e| panic!("loading classifier: {e}"));
    k.sync_devices(cfg).unwrap_or_else(|e| panic!("filling maps: {e}"));
    let ring = k.take_events().expect("event ring");
    Lab { k, ring }
}

impl Lab {
    /// (verdict, mark) of one frame through a program.
    fn run(&mut self, prog: &'static str, frame: &[u8]) -> (u32, u32) {
        let p = self.k.program(prog).unwrap_or_else(|e| panic!("{e}"));
        let mut out = vec![0u8; frame.len() + 256];
        let mut ctx = [0u8; SKB_CTX];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_out: Some(&mut ctx),
            ..Default::default()
        };
        let r = p.test_run(opts).unwrap_or_else(|e| panic!("test run of {} byte frame: {e:?}", frame.len()));
        (r.return_value, u32::from_ne_bytes([ctx[8], ctx[9], ctx[10], ctx[11]]))
    }

    fn out(&mut self, frame: &[u8]) -> u32 {
        self.run(PROG_INGRESS, frame).0
    }

    fn way(&mut self, way: Way, frame: &[u8]) -> (u32, u32) {
        self.run(if way == Way::Out { PROG_INGRESS } else { PROG_EGRESS }, frame)
    }

    fn stats(&self, id: u32) -> moat_common::DeviceStats {
        self.k.device_stats(id).unwrap_or_else(|e| panic!("{e}"))
    }

    fn health(&self, which: u32) -> u64 {
        self.k.health().unwrap_or_else(|e| panic!("{e}"))[which as usize]
    }

    fn drops(&self, why: u32) -> u64 {
        self.k.drop_reasons().unwrap_or_else(|e| panic!("{e}"))[why as usize]
    }

    /// Every event in the ring so far, decoded, with its raw payload copy.
    fn events(&mut self) -> Vec<(Event, Vec<u8>)> {
        let mut all = Vec::new();
        while let Some(item) = self.ring.next() {
            let e = decode(&item).unwrap_or_else(|e| panic!("undecodable event: {e}"));
            all.push((e, payload(&item).to_vec()));
        }
        all
    }
}

// ---- payload samples -------------------------------------------------------

const CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0];
const MQTT_CONNECT: &[u8] =
    &[0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0, 4, b'c', b'a', b'm', b'1'];
const TELNET_IAC: &[u8] = &[0xff, 0xfd, 0x18, 0xff, 0xfd, 0x20, b'l', b'o', b'g', b'i', b'n', b':', b' '];

fn dns_message(response: bool) -> Vec<u8> {
    let mut q =
        vec![0x12, 0x34, if response { 0x81 } else { 0x01 }, 0x80, 0x00, 0x01, 0, u8::from(response), 0, 0, 0, 0];
    q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    if response {
        q.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, 10]);
    }
    q
}

fn dhcp_discover() -> Vec<u8> {
    let mut p = vec![0u8; 300];
    p[0] = 1;
    p[1] = 1;
    p[2] = 6;
    p[28..34].copy_from_slice(&ALLOWER);
    p[236..240].copy_from_slice(&[0x63, 0x82, 0x53, 0x63]);
    p[240..243].copy_from_slice(&[53, 1, 1]);
    p[243] = 255;
    p
}

/// (name, proto, device port, remote port, which side speaks first, payload, class)
type Case = (&'static str, u8, u16, u16, Way, Vec<u8>, Class);

fn corpus() -> Vec<Case> {
    let mut ntp = vec![0u8; 48];
    ntp[0] = 0x23;
    let mut quic = vec![0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    quic.resize(1200, 0);
    vec![
        ("tls on 1883", TCP, 40001, 1883, Way::Out, CLIENT_HELLO.to_vec(), class::TLS),
        ("tls on 443", TCP, 40002, 443, Way::Out, CLIENT_HELLO.to_vec(), class::TLS),
        ("mqtt on 443", TCP, 40003, 443, Way::Out, MQTT_CONNECT.to_vec(), class::MQTT),
        ("mqtt on 1883", TCP, 40004, 1883, Way::Out, MQTT_CONNECT.to_vec(), class::MQTT),
        ("telnet on 8023 (server speaks first)", TCP, 40005, 8023, Way::In, TELNET_IAC.to_vec(), class::TELNET),
        ("http on 8080", TCP, 40006, 8080, Way::Out, b"GET /status HTTP/1.1\r\n".to_vec(), class::HTTP),
        ("ftp banner on 2121", TCP, 40007, 2121, Way::In, b"220 FTP server ready\r\n".to_vec(), class::FTP),
        ("ssh on 2222", TCP, 40008, 2222, Way::In, b"SSH-2.0-dropbear_2022\r\n".to_vec(), class::SSH),
        ("rtsp on 8554", TCP, 40009, 8554, Way::Out, b"OPTIONS rtsp://cam/ RTSP/1.0\r\n".to_vec(), class::RTSP),
        ("dns query", UDP, 40010, 53, Way::Out, dns_message(false), class::DNS),
        ("dhcp discover", UDP, 68, 67, Way::Out, dhcp_discover(), class::DHCP),
        ("ntp", UDP, 40011, 123, Way::Out, ntp, class::NTP),
        (
            "ssdp",
            UDP,
            40012,
            1900,
            Way::Out,
            b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n".to_vec(),
            class::SSDP,
        ),
        ("mdns", UDP, 5353, 5353, Way::Out, dns_message(false), class::MDNS),
        ("quic", UDP, 40013, 443, Way::Out, quic, class::QUIC),
        ("tftp read request", UDP, 40015, 69, Way::Out, b"\x00\x01fw.bin\x00octet\x00".to_vec(), class::TFTP),
        ("unrecognised tcp", TCP, 40014, 9000, Way::Out, b"\x00\x01binary".to_vec(), class::OTHER),
    ]
}

#[test]
fn every_class_is_recognised_from_payload_in_both_families_and_vlan() {
    let cfg = config(None);
    let mut lab = kernel(&cfg);
    for net in [Net::V4, Net::V6, Net::V4Vlan] {
        for (name, proto, dport, rport, first, payload, want) in corpus() {
            let f = flow_frame(ALLOWER, first, net, proto, dport, rport, &payload);
            let (verdict, m) = lab.way(first, &f);
            assert_eq!(verdict, TC_ACT_OK, "{name} {net:?}: the open policy passes everything");
            assert_eq!(mark::decode(m), Some((2, want)), "{name} {net:?}: mark {m:#x}");
            // The other direction of the same flow keeps the class, whatever it carries.
            let back = if first == Way::Out { Way::In } else { Way::Out };
            let f = flow_frame(ALLOWER, back, net, proto, dport, rport, b"\x00\x00\x00\x00");
            let (_, m) = lab.way(back, &f);
            assert_eq!(mark::decode(m), Some((2, want)), "{name} {net:?}: reply keeps the flow's class");
        }
    }
    let s = lab.stats(2);
    let n = (corpus().len() * 3) as u64;
    assert_eq!(s.total(dir::FROM_DEVICE).packets + s.total(dir::TO_DEVICE).packets, 2 * n);
    assert_eq!(s.traffic[class::TLS as usize][dir::FROM_DEVICE].packets, 2 * 3, "two TLS flows x three encapsulations");
    assert_eq!(s.traffic[class::TELNET as usize][dir::TO_DEVICE].packets, 3);
    assert_eq!(s.dropped(), 0);
    let flows = lab.k.flows();
    assert_eq!(flows.len(), corpus().len() * 2, "one flow per case per family (VLAN shares v4's)");
    assert!(flows.iter().all(|(_, v)| v.flags & FLOW_CLASSIFIED != 0 && v.device_id == 2));
}

#[test]
fn blocked_classes_drop_on_any_port_and_tls_on_1883_passes() {
    let cfg = config(None);
    let mut lab = kernel(&cfg);
    let mqtt_443 = flow_frame(BLOCKER, Way::Out, Net::V4, TCP, 41000, 443, MQTT_CONNECT);
    assert_eq!(lab.out(&mqtt_443), TC_ACT_SHOT, "plaintext MQTT on 443 is blocked");
    let tls_1883 = flow_frame(BLOCKER, Way::Out, Net::V4, TCP, 41001, 1883, CLIENT_HELLO);
    let (v, m) = lab.way(Way::Out, &tls_1883);
    assert_eq!((v, mark::decode(m)), (TC_ACT_OK, Some((1, class::TLS))), "TLS on 1883 passes");
    // Telnet on 8023: the handshake passes (no payload yet), the server's
    // negotiation is dropped, and so is everything after it in both directions.
    let syn = {
        let mut f = eth(BLOCKER, ETH_P_IPV4);
        f.extend(ipv4(TCP, 0, &tcp_seg(41002, 8023, SYN, &[])));
        f
    };
    assert_eq!(lab.out(&syn), TC_ACT_OK, "SYN to 8023 carries no evidence yet");
    let iac = flow_frame(BLOCKER, Way::In, Net::V4, TCP, 41002, 8023, TELNET_IAC);
    assert_eq!(lab.way(Way::In, &iac).0, TC_ACT_SHOT, "telnet negotiation to the device is dropped");
    let later = flow_frame(BLOCKER, Way::Out, Net::V4, TCP, 41002, 8023, b"root\r\n");
    assert_eq!(lab.out(&later), TC_ACT_SHOT, "the flow stays telnet");
    // Ports 23/2323 are telnet before any payload.
    assert_eq!(lab.out(&tcp4(BLOCKER, 23)), TC_ACT_SHOT);
    assert_eq!(lab.out(&tcp6(BLOCKER, 2323)), TC_ACT_SHOT);
    assert_eq!(lab.out(&tcp4(ALLOWER, 23)), TC_ACT_OK);

    let s = lab.stats(1);
    assert_eq!(s.dropped_by_class[class::MQTT as usize], 1);
    assert_eq!(s.dropped_by_class[class::TELNET as usize], 4);
    assert_eq!(s.dropped_by_reason[reason::BLOCKED_CLASS as usize], 5);
    assert_eq!(lab.drops(reason::BLOCKED_CLASS), 5);
    assert_eq!(
        s.traffic[class::TELNET as usize][dir::TO_DEVICE].packets,
        1,
        "the dropped negotiation is counted as telnet traffic too"
    );

    // One BLOCKED event per flow (the 8023 flow dropped twice, reported once).
    let blocked: Vec<Event> = lab.events().into_iter().map(|(e, _)| e).filter(|e| e.kind == "blocked").collect();
    assert_eq!(blocked.len(), 4, "{blocked:#?}");
    let telnet_8023 =
        blocked.iter().find(|e| e.flow.as_ref().is_some_and(|f| f.remote_port == 8023)).expect("8023 blocked event");
    assert_eq!((telnet_8023.class, telnet_8023.reason, telnet_8023.device_id), ("telnet", Some("blocked_class"), 1));
    assert_eq!(telnet_8023.direction, "to_device");
    let f = telnet_8023.flow.as_ref().expect("flow");
    assert_eq!((f.lan.as_str(), f.lan_port, f.remote.as_str(), f.proto), ("10.77.0.10", 41002, "198.51.100.10", 6));
}

#[test]
fn quarantine_passes_only_dhcp_dns_and_icmpv6() {
    let cfg = config(None);
    let mut lab = kernel(&cfg);
    let dns = flow_frame(SUSPECT, Way::Out, Net::V4, UDP, 42000, 53, &dns_message(false));
    assert_eq!(lab.out(&dns), TC_ACT_OK, "DNS");
    let dhcp = flow_frame(SUSPECT, Way::Out, Net::V4, UDP, 68, 67, &dhcp_discover());
    assert_eq!(lab.out(&dhcp), TC_ACT_OK, "DHCP");
    let mut ns = eth(SUSPECT, ETH_P_IPV6);
    ns.extend(ipv6(58, &[135, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(lab.out(&ns), TC_ACT_OK, "ICMPv6 (neighbour discovery)");
    let http = flow_frame(SUSPECT, Way::Out, Net::V4, TCP, 42001, 80, b"GET / HTTP/1.1\r\n");
    assert_eq!(lab.out(&http), TC_ACT_SHOT, "HTTP");
    assert_eq!(lab.out(&tcp4(SUSPECT, 443)), TC_ACT_SHOT, "even a SYN");
    let mut ping = eth(SUSPECT, ETH_P_IPV4);
    ping.extend(ipv4(1, 0, &[8, 0, 0, 0, 0, 1, 0, 1]));
    assert_eq!(lab.out(&ping), TC_ACT_OK, "ICMP (pinging the gateway; nftables keeps it off the internet)");
    let s = lab.stats(3);
    assert_eq!(s.dropped_by_reason[reason::QUARANTINE as usize], 2);
    assert_eq!(lab.drops(reason::QUARANTINE), 2);
}

#[test]
fn events_carry_flows_new_devices_and_dns_dhcp_copies() {
    let cfg = config(Some("open"));
    let mut lab = kernel(&cfg);
    let q = dns_message(false);
    let r = dns_message(true);
    lab.out(&flow_frame(ALLOWER, Way::Out, Net::V4, UDP, 43000, 53, &q));
    lab.way(Way::In, &flow_frame(ALLOWER, Way::In, Net::V4, UDP, 43000, 53, &r));
    lab.out(&flow_frame(ALLOWER, Way::Out, Net::V4, UDP, 68, 67, &dhcp_discover()));
    // A stranger sends three packets: one NEW_DEVICE event.
    for port in [80, 81, 82] {
        lab.out(&tcp4(STRANGER, port));
    }
    let events = lab.events();
    let kinds: Vec<&str> = events.iter().map(|(e, _)| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "new_device").count(), 1, "{kinds:?}");
    let (nd, _) = events.iter().find(|(e, _)| e.kind == "new_device").expect("new_device");
    assert_eq!((nd.mac.as_str(), nd.device_id), ("02:99:00:00:00:09", 0));

    let (dns_flow, _) = events.iter().find(|(e, _)| e.kind == "new_flow" && e.class == "dns").expect("dns new_flow");
    let f = dns_flow.flow.as_ref().expect("flow");
    assert_eq!((f.lan_port, f.remote_port, f.proto, dns_flow.device_id), (43000, 53, 17, 2));

    let (resp, bytes) = events.iter().find(|(e, _)| e.kind == "dns_response").expect("dns_response");
    assert_eq!(bytes, &r, "the response payload is copied verbatim");
    assert_eq!((resp.copied, resp.payload_len, resp.direction), (Some(r.len()), Some(r.len() as u32), "to_device"));
    assert!(
        !events.iter().any(|(e, _)| e.kind == "dns_response" && e.direction == "from_device"),
        "queries are not copied"
    );

    let (dhcp, bytes) = events.iter().find(|(e, _)| e.kind == "dhcp_request").expect("dhcp_request");
    assert_eq!(bytes, &dhcp_discover());
    assert_eq!((dhcp.mac.as_str(), dhcp.class), ("02:77:00:00:00:02", "dhcp"));
    assert_eq!(lab.health(reason::HEALTH_RINGBUF_FULL), 0);
}

#[test]
fn flows_track_both_directions_and_padding_is_not_payload() {
    let cfg = config(None);
    let mut lab = kernel(&cfg);
    // A bare ACK padded to Ethernet's 60-byte minimum: the 6 padding bytes
    // must not be taken for payload (they would classify the flow as "other").
    let mut ack = eth(ALLOWER, ETH_P_IPV4);
    ack.extend(ipv4(TCP, 0, &tcp_seg(44000, 443, ACK, &[])));
    ack.resize(60, 0xff);
    lab.out(&ack);
    let flows = lab.k.flows();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].1.flags & FLOW_CLASSIFIED, 0, "no payload yet");
    lab.out(&flow_frame(ALLOWER, Way::Out, Net::V4, TCP, 44000, 443, CLIENT_HELLO));
    lab.way(Way::In, &flow_frame(ALLOWER, Way::In, Net::V4, TCP, 44000, 443, &[0x16, 3, 3, 0, 0x7a, 2]));
    let flows = lab.k.flows();
    assert_eq!(flows.len(), 1, "both directions share one flow");
    let (k, v) = flows[0];
    assert_eq!((k.lan_port, k.remote_port, v.class, v.device_id), (44000, 443, class::TLS, 2));
    assert_eq!((v.traffic[dir::FROM_DEVICE].packets, v.traffic[dir::TO_DEVICE].packets), (2, 1));
    assert!(v.last_seen_ns >= v.first_seen_ns && v.first_seen_ns > 0);
}

#[test]
fn gateway_broadcasts_are_nobodys_traffic() {
    let cfg = config(None);
    let mut lab = kernel(&cfg);
    let mut arp = eth_hdr([0xff; 6], GW_MAC, ETH_P_ARP);
    arp.extend([0u8; 28]);
    assert_eq!(lab.run(PROG_EGRESS, &arp).0, TC_ACT_OK);
    assert_eq!(lab.stats(0).total(dir::TO_DEVICE).packets, 0, "not counted as an unknown device");
}

/// Frames whose IP header is broken: the kernel's test runner refuses to feed
/// those with a plain IP ethertype (it checks the header first), so they go in
/// behind an 802.1Q tag, which reaches the same parser. On a real wire nothing
/// stops such frames before tc ingress.
fn tagged(src: [u8; 6], inner: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = eth_vlan(src, inner);
    f.extend_from_slice(l3);
    f
}

#[test]
fn truncated_and_malformed_headers_get_defined_verdicts() {
    let cfg = config(None);
    let mut lab = kernel(&cfg);
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "IPv4 cut after 10 bytes",
            tagged(ALLOWER, ETH_P_IPV4, &ipv4(TCP, 0, &tcp(80))[..10]),
            reason::HEALTH_TRUNCATED,
        ),
        (
            "TCP cut to 2 bytes (tagged)",
            tagged(ALLOWER, ETH_P_IPV4, &ipv4(TCP, 0, &tcp(23)[..2])),
            reason::HEALTH_TRUNCATED,
        ),
        (
            "TCP cut to 2 bytes",
            {
                let mut f = eth(ALLOWER, ETH_P_IPV4);
                f.extend(ipv4(TCP, 0, &tcp(23)[..2]));
                f
            },
            reason::HEALTH_TRUNCATED,
        ),
        (
            "IHL of 3 words",
            {
                let mut ip = ipv4(TCP, 0, &tcp(80));
                ip[0] = 0x43;
                tagged(ALLOWER, ETH_P_IPV4, &ip)
            },
            reason::HEALTH_BAD_HEADER,
        ),
        (
            "IPv4 total length below IHL",
            {
                let mut ip = ipv4(TCP, 0, &tcp(80));
                ip[2] = 0;
                ip[3] = 10;
                tagged(ALLOWER, ETH_P_IPV4, &ip)
            },
            reason::HEALTH_BAD_HEADER,
        ),
        (
            "TCP data offset of 2 words",
            {
                let mut t = tcp(80);
                t[12] = 2 << 4;
                let mut f = eth(ALLOWER, ETH_P_IPV4);
                f.extend(ipv4(TCP, 0, &t));
                f
            },
            reason::HEALTH_BAD_HEADER,
        ),
        (
            "IPv6 version 4",
            {
                let mut ip = ipv6(TCP, &tcp(80));
                ip[0] = 0x40;
                tagged(ALLOWER, ETH_P_IPV6, &ip)
            },
            reason::HEALTH_BAD_HEADER,
        ),
        ("IPv6 header cut", tagged(ALLOWER, ETH_P_IPV6, &ipv6(TCP, &tcp(80))[..30]), reason::HEALTH_TRUNCATED),
        (
            "IPv6 ext header cut",
            {
                let mut f = eth(ALLOWER, ETH_P_IPV6);
                f.extend(ipv6(0, &[6]));
                f
            },
            reason::HEALTH_TRUNCATED,
        ),
        (
            "seven ext headers",
            {
                let mut chain = tcp(80);
                for _ in 0..7 {
                    chain = ext_header(if chain.len() == 20 { 6 } else { 60 }, &chain);
                }
                let mut f = eth(ALLOWER, ETH_P_IPV6);
                f.extend(ipv6(60, &chain));
                f
            },
            reason::HEALTH_EXT_HDR_LIMIT,
        ),
        (
            "VLAN tag cut",
            {
                let mut f = eth(ALLOWER, ETH_P_8021Q);
                f.push(0);
                f
            },
            reason::HEALTH_TRUNCATED,
        ),
    ];
    for (name, frame, health) in &cases {
        let before = lab.health(*health);
        assert_eq!(lab.out(frame), TC_ACT_SHOT, "{name}");
        assert_eq!(lab.health(*health), before + 1, "{name}: health counter");
    }
    let n = cases.len() as u64;
    assert_eq!(lab.drops(reason::MALFORMED), n);
    assert_eq!(lab.drops(reason::BLOCKED_CLASS), 0);
    let s = lab.stats(2);
    assert_eq!((s.total(dir::FROM_DEVICE).packets, s.dropped_by_reason[reason::MALFORMED as usize]), (n, n));
}

#[test]
fn fragments_ext_headers_and_non_ip() {
    let cfg = config(None);
    let mut lab = kernel(&cfg);
    // Hop-by-hop + destination options in front of TCP/23: still telnet.
    let mut f = eth(BLOCKER, ETH_P_IPV6);
    f.extend(ipv6(0, &ext_header(60, &ext_header(TCP, &tcp(23)))));
    assert_eq!(lab.out(&f), TC_ACT_SHOT, "telnet behind ext headers");
    // Non-first UDP fragments carry no ports: passed (conntrack reassembles before nft).
    let mut f = eth(BLOCKER, ETH_P_IPV4);
    f.extend(ipv4(UDP, 185, &[0u8; 24]));
    assert_eq!(lab.out(&f), TC_ACT_OK, "non-first IPv4 UDP fragment");
    let mut f = eth(BLOCKER, ETH_P_IPV6);
    f.extend(ipv6(44, &[17, 0, 0, 0x10, 0, 0, 0, 1, 0, 0, 0, 0]));
    assert_eq!(lab.out(&f), TC_ACT_OK, "non-first IPv6 UDP fragment");
    // A first UDP fragment is judged on its ports but never classified from:
    // its payload is incomplete.
    let mut f = eth(ALLOWER, ETH_P_IPV4);
    f.extend(ipv4(UDP, 0x2000, &udp_dgram(47100, 53, &dns_message(false))));
    assert_eq!(lab.out(&f), TC_ACT_OK, "first UDP fragment");
    let flow = lab.k.flows().into_iter().find(|(k, _)| k.lan_port == 47100).expect("flow");
    assert_eq!(flow.1.flags & FLOW_CLASSIFIED, 0, "not classified from a fragment");
    let total: u64 = lab.k.health().unwrap_or_else(|e| panic!("{e}")).iter().sum();
    assert_eq!(total, 0, "nothing so far is malformed");
    // TCP needs no fragmentation: every TCP fragment is dropped, first or not,
    // so a payload can never hide from classification in fragments.
    let mut f = eth(ALLOWER, ETH_P_IPV4);
    f.extend(ipv4(TCP, 0x2000, &tcp(8023)));
    assert_eq!(lab.out(&f), TC_ACT_SHOT, "first TCP fragment");
    let mut f = eth(ALLOWER, ETH_P_IPV4);
    f.extend(ipv4(TCP, 185, &[0u8; 24]));
    assert_eq!(lab.out(&f), TC_ACT_SHOT, "non-first TCP fragment");
    let mut f = eth(ALLOWER, ETH_P_IPV6);
    f.extend(ipv6(44, &[6, 0, 0, 0x10, 0, 0, 0, 1, 0, 0, 0, 0]));
    assert_eq!(lab.out(&f), TC_ACT_SHOT, "IPv6 TCP fragment");
    assert_eq!(lab.health(reason::HEALTH_TCP_FRAGMENT), 3);
    let mut arp = eth(BLOCKER, ETH_P_ARP);
    arp.extend([0u8; 28]);
    assert_eq!(lab.out(&arp), TC_ACT_OK, "ARP");
    assert_eq!(lab.out(&eth(BLOCKER, ETH_P_ARP)), TC_ACT_OK, "bare ARP ethertype");
    // Shorter than an Ethernet header: the kernel refuses the input; if a kernel
    // ever runs it, the program passes it to the stack (which drops runts).
    let short = &eth(ALLOWER, ETH_P_ARP)[..10];
    let p = lab.k.program(PROG_INGRESS).unwrap_or_else(|e| panic!("{e}"));
    if let Ok(r) = p.test_run(TestRunOptions { data_in: Some(short), ..Default::default() }) {
        assert_eq!(r.return_value, TC_ACT_OK, "a runt, if run at all, is passed");
    }
}

#[test]
fn unknown_macs_get_the_unknown_policy_in_slot_zero() {
    let cfg = config(None);
    let mut lab = kernel(&cfg);
    // Built-in unknown policy: quarantine (DHCP and DNS only).
    assert_eq!(lab.out(&tcp4(STRANGER, 23)), TC_ACT_SHOT, "telnet");
    assert_eq!(lab.out(&tcp4(STRANGER, 80)), TC_ACT_SHOT, "http");
    let dns = flow_frame(STRANGER, Way::Out, Net::V4, UDP, 45001, 53, &dns_message(false));
    assert_eq!(lab.out(&dns), TC_ACT_OK, "dns");
    let s = lab.stats(0);
    assert_eq!((s.total(dir::FROM_DEVICE).packets, s.dropped_by_reason[reason::QUARANTINE as usize]), (3, 2));

    let cfg = config(Some("camera"));
    let mut lab = kernel(&cfg);
    assert_eq!(lab.out(&tcp4(STRANGER, 23)), TC_ACT_SHOT, "unknown_policy = camera blocks telnet");
    let mqtt = flow_frame(STRANGER, Way::Out, Net::V4, TCP, 45000, 1883, MQTT_CONNECT);
    assert_eq!(lab.out(&mqtt), TC_ACT_SHOT, "and plaintext MQTT");
    assert_eq!(lab.out(&tcp4(STRANGER, 80)), TC_ACT_OK, "but not http");
    let cfg = config(Some("open"));
    let mut lab = kernel(&cfg);
    assert_eq!(lab.out(&tcp4(STRANGER, 23)), TC_ACT_OK, "unknown_policy = open lets telnet pass");
}

fn config_with_laptop_policy(policy: &str) -> Config {
    let mut cfg = config(None);
    for d in &mut cfg.devices {
        if d.name == "laptop" {
            d.policy = policy.to_string();
        }
    }
    cfg
}

#[test]
fn policy_changes_apply_to_established_flows_and_the_cache_is_per_mac() {
    let cfg = config(None);
    let mut lab = kernel(&cfg);
    let iac = flow_frame(ALLOWER, Way::In, Net::V4, TCP, 46000, 8023, TELNET_IAC);
    assert_eq!(lab.way(Way::In, &iac).0, TC_ACT_OK, "open policy: telnet flow passes");
    let next = flow_frame(ALLOWER, Way::Out, Net::V4, TCP, 46000, 8023, b"admin\r\n");
    assert_eq!(lab.out(&next), TC_ACT_OK);

    // Same 5-tuple from another device's MAC: judged by that device's policy,
    // not the one cached in the flow.
    let spoofed = flow_frame(BLOCKER, Way::Out, Net::V4, TCP, 46000, 8023, b"admin\r\n");
    assert_eq!(lab.out(&spoofed), TC_ACT_SHOT, "the cached policy belongs to the laptop's MAC only");

    lab.k.sync_devices(&config_with_laptop_policy("camera")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lab.out(&next), TC_ACT_SHOT, "the new policy applies to the established flow at once");
    lab.k.sync_devices(&cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lab.out(&next), TC_ACT_OK, "and so does changing it back");
}

#[test]
fn eviction_from_a_full_flow_table_does_not_unblock_a_flow() {
    let mut cfg = config(None);
    cfg.classifier.flow_table_size = 256;
    let mut lab = kernel(&cfg);
    let iac = flow_frame(BLOCKER, Way::In, Net::V4, TCP, 47000, 8023, TELNET_IAC);
    assert_eq!(lab.way(Way::In, &iac).0, TC_ACT_SHOT, "telnet on 8023 blocked");
    let remembered = lab.k.blocked_flows().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(remembered.len(), 1, "the blocked flow is remembered");
    assert_eq!((remembered[0].0.remote_port, remembered[0].1), (8023, class::TELNET));
    for port in 0..2000 {
        assert_eq!(lab.out(&flow_frame(ALLOWER, Way::Out, Net::V4, TCP, 10000 + port, 443, CLIENT_HELLO)), TC_ACT_OK);
    }
    let flows = lab.k.flows();
    assert!(flows.len() <= 256, "the table is bounded: {}", flows.len());
    assert!(
        !flows.iter().any(|(k, _)| k.remote_port == 8023),
        "the telnet flow was evicted (else this test proves nothing)"
    );
    // Mid-stream bytes that look like nothing in particular: without memory of
    // the block they would classify as `other` and pass.
    let mid = flow_frame(BLOCKER, Way::Out, Net::V4, TCP, 47000, 8023, b"root\r\n");
    assert_eq!(lab.out(&mid), TC_ACT_SHOT, "an evicted blocked flow stays blocked");
    let mid_allowed = flow_frame(ALLOWER, Way::Out, Net::V4, TCP, 10000, 443, b"\x17\x03\x03\x00\x05hello");
    assert_eq!(lab.out(&mid_allowed), TC_ACT_OK, "an evicted allowed flow stays allowed");
}

#[test]
fn telnet_ports_count_for_connections_to_the_device_too_and_dhcp_copies_are_rate_limited() {
    let cfg = config(None);
    let mut lab = kernel(&cfg);
    // A SYN from outside to the device's own port 23 (its telnetd).
    let mut syn = eth_hdr(BLOCKER, GW_MAC, ETH_P_IPV4);
    syn.extend(ip4(REMOTE_V4, DEV_V4, TCP, 0, &tcp_seg(50000, 23, SYN, &[])));
    assert_eq!(lab.way(Way::In, &syn).0, TC_ACT_SHOT, "telnet to the device is telnet");
    // DHCP copies: at most one per MAC per second.
    for _ in 0..5 {
        lab.out(&flow_frame(ALLOWER, Way::Out, Net::V4, UDP, 68, 67, &dhcp_discover()));
    }
    let copies = lab.events().into_iter().filter(|(e, _)| e.kind == "dhcp_request").count();
    assert_eq!(copies, 1, "a burst of DHCP from one device is copied once");
}
