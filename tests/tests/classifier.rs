//! The classifier on crafted frames, in the real kernel, via BPF_PROG_TEST_RUN.
//! Needs root (CAP_BPF); no network namespace or attachment involved.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::path::Path;

use aya::programs::{TestRun as _, TestRunOptions};
use moat::kernel::Kernel;
use moat_common::reason;
use moat_policy::Config;
use moat_tests::frames::*;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const BLOCKER: [u8; 6] = [0x02, 0x77, 0, 0, 0, 1];
const ALLOWER: [u8; 6] = [0x02, 0x77, 0, 0, 0, 2];
const STRANGER: [u8; 6] = [0x02, 0x99, 0, 0, 0, 9];

fn config(unknown_policy: Option<&str>) -> Config {
    let unknown = unknown_policy
        .map(|p| format!("unknown_policy = \"{p}\"\n"))
        .unwrap_or_default();
    let text = format!(
        "[gateway]\nlan = \"br-lan\"\nwan = \"wan0\"\n{unknown}
[policies.camera]\nblock = [\"telnet\"]\n[policies.open]\nblock = []\n
[[devices]]\nmac = \"02:77:00:00:00:01\"\nname = \"camera\"\npolicy = \"camera\"
[[devices]]\nmac = \"02:77:00:00:00:02\"\nname = \"laptop\"\npolicy = \"open\"\n"
    );
    match Config::parse(Path::new("test.toml"), &text) {
        Ok(c) => c,
        Err(e) => panic!("test config invalid: {e}"),
    }
}

fn kernel(cfg: &Config) -> Kernel {
    assert!(
        moat_tests::cmd::is_root(),
        "classifier tests need root (CAP_BPF): run scripts/test as root"
    );
    let mut k = Kernel::load().unwrap_or_else(|e| panic!("loading classifier: {e}"));
    k.sync_devices(cfg)
        .unwrap_or_else(|e| panic!("filling maps: {e}"));
    k
}

fn verdict(k: &mut Kernel, frame: &[u8]) -> u32 {
    let prog = k.program().unwrap_or_else(|e| panic!("{e}"));
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..Default::default()
    };
    match prog.test_run(opts) {
        Ok(r) => r.return_value,
        Err(e) => panic!("test run of {} byte frame: {e:?}", frame.len()),
    }
}

#[test]
fn telnet_dropped_only_for_blocking_device() {
    let cfg = config(None);
    let mut k = kernel(&cfg);
    assert_eq!(
        verdict(&mut k, &tcp4(BLOCKER, 80)),
        TC_ACT_OK,
        "http allowed"
    );
    assert_eq!(
        verdict(&mut k, &tcp4(BLOCKER, 23)),
        TC_ACT_SHOT,
        "telnet/23 blocked"
    );
    assert_eq!(
        verdict(&mut k, &tcp4(BLOCKER, 2323)),
        TC_ACT_SHOT,
        "telnet/2323 blocked"
    );
    assert_eq!(
        verdict(&mut k, &tcp4(ALLOWER, 23)),
        TC_ACT_OK,
        "allowed device reaches 23"
    );
    assert_eq!(verdict(&mut k, &tcp4(ALLOWER, 2323)), TC_ACT_OK);

    let blocker = k.device_stats(1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(blocker.packets, 3);
    assert_eq!(blocker.bytes, 3 * 54, "14 eth + 20 ip + 20 tcp per frame");
    assert_eq!(blocker.dropped_packets, 2);
    assert_eq!(blocker.dropped_bytes, 2 * 54);
    assert_eq!(
        blocker.dropped_by_class[moat_common::class::TELNET as usize],
        2
    );
    let allower = k.device_stats(2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((allower.packets, allower.dropped_packets), (2, 0));
    let drops = k.drop_reasons().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(drops[reason::BLOCKED_CLASS as usize], 2);
    assert_eq!(drops[reason::MALFORMED as usize], 0);
}

#[test]
fn ipv6_vlan_and_extension_headers_are_classified() {
    let cfg = config(None);
    let mut k = kernel(&cfg);
    assert_eq!(
        verdict(&mut k, &tcp6(BLOCKER, 23)),
        TC_ACT_SHOT,
        "IPv6 telnet"
    );
    assert_eq!(
        verdict(&mut k, &tcp6(BLOCKER, 443)),
        TC_ACT_OK,
        "IPv6 https"
    );
    assert_eq!(verdict(&mut k, &tcp6(ALLOWER, 23)), TC_ACT_OK);

    // Hop-by-hop (0) then destination options (60) in front of TCP: a
    // device must not escape the block by adding extension headers.
    let mut f = eth(BLOCKER, ETH_P_IPV6);
    f.extend(ipv6(0, &ext_header(60, &ext_header(6, &tcp(23)))));
    assert_eq!(
        verdict(&mut k, &f),
        TC_ACT_SHOT,
        "telnet behind ext headers"
    );

    let mut f = eth_vlan(BLOCKER, ETH_P_IPV4);
    f.extend(ipv4(6, 0, &tcp(2323)));
    assert_eq!(verdict(&mut k, &f), TC_ACT_SHOT, "VLAN-tagged telnet");
    let mut f = eth_vlan(BLOCKER, ETH_P_IPV6);
    f.extend(ipv6(6, &tcp(80)));
    assert_eq!(verdict(&mut k, &f), TC_ACT_OK, "VLAN-tagged IPv6 http");

    let s = k.device_stats(1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.packets, s.dropped_packets), (5, 3));
}

#[test]
fn unknown_macs_get_unknown_policy_and_slot_zero() {
    let cfg = config(None);
    let mut k = kernel(&cfg);
    assert_eq!(
        verdict(&mut k, &tcp4(STRANGER, 23)),
        TC_ACT_SHOT,
        "built-in unknown policy blocks telnet"
    );
    assert_eq!(verdict(&mut k, &tcp4(STRANGER, 80)), TC_ACT_OK);
    let s = k.device_stats(0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.packets, s.dropped_packets), (2, 1));

    let open = config(Some("open"));
    let mut k = kernel(&open);
    assert_eq!(
        verdict(&mut k, &tcp4(STRANGER, 23)),
        TC_ACT_OK,
        "unknown_policy = open lets telnet pass"
    );
}

fn health(k: &Kernel, which: u32) -> u64 {
    k.health().unwrap_or_else(|e| panic!("{e}"))[which as usize]
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
    let mut k = kernel(&cfg);

    // IPv4 header cut after 10 bytes: dropped as malformed, counted.
    let f = tagged(ALLOWER, ETH_P_IPV4, &ipv4(6, 0, &tcp(80))[..10]);
    assert_eq!(verdict(&mut k, &f), TC_ACT_SHOT, "truncated IPv4");
    assert_eq!(health(&k, reason::HEALTH_TRUNCATED), 1);

    // TCP header cut to 2 bytes (the tiny-fragment trick): no port to judge, dropped.
    let f = tagged(ALLOWER, ETH_P_IPV4, &ipv4(6, 0, &tcp(23)[..2]));
    assert_eq!(verdict(&mut k, &f), TC_ACT_SHOT, "truncated TCP");
    assert_eq!(health(&k, reason::HEALTH_TRUNCATED), 2);
    let mut f = eth(ALLOWER, ETH_P_IPV4);
    f.extend(ipv4(6, 0, &tcp(23)[..2]));
    assert_eq!(verdict(&mut k, &f), TC_ACT_SHOT, "truncated TCP, untagged");
    assert_eq!(health(&k, reason::HEALTH_TRUNCATED), 3);

    // IHL of 3 words is invalid.
    let mut ip = ipv4(6, 0, &tcp(80));
    ip[0] = 0x43;
    assert_eq!(
        verdict(&mut k, &tagged(ALLOWER, ETH_P_IPV4, &ip)),
        TC_ACT_SHOT,
        "bad IHL"
    );
    assert_eq!(health(&k, reason::HEALTH_BAD_HEADER), 1);

    // IPv6 with a version nibble of 4.
    let mut ip = ipv6(6, &tcp(80));
    ip[0] = 0x40;
    assert_eq!(
        verdict(&mut k, &tagged(ALLOWER, ETH_P_IPV6, &ip)),
        TC_ACT_SHOT,
        "bad IPv6 version"
    );
    assert_eq!(health(&k, reason::HEALTH_BAD_HEADER), 2);

    // IPv6 header itself cut short.
    let f = tagged(ALLOWER, ETH_P_IPV6, &ipv6(6, &tcp(80))[..30]);
    assert_eq!(verdict(&mut k, &f), TC_ACT_SHOT, "truncated IPv6 header");

    // IPv6 extension header cut short.
    let mut f = eth(ALLOWER, ETH_P_IPV6);
    f.extend(ipv6(0, &[6]));
    assert_eq!(verdict(&mut k, &f), TC_ACT_SHOT, "truncated ext header");

    // Seven extension headers: more than the walker follows.
    let mut chain = tcp(80);
    for _ in 0..7 {
        chain = ext_header(if chain.len() == 20 { 6 } else { 60 }, &chain);
    }
    let mut f = eth(ALLOWER, ETH_P_IPV6);
    f.extend(ipv6(60, &chain));
    assert_eq!(
        verdict(&mut k, &f),
        TC_ACT_SHOT,
        "ext header chain too long"
    );
    assert_eq!(health(&k, reason::HEALTH_EXT_HDR_LIMIT), 1);

    // Truncated VLAN tag.
    let mut f = eth(ALLOWER, ETH_P_8021Q);
    f.push(0);
    assert_eq!(verdict(&mut k, &f), TC_ACT_SHOT, "truncated VLAN tag");

    let drops = k.drop_reasons().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(drops[reason::MALFORMED as usize], 9);
    assert_eq!(drops[reason::BLOCKED_CLASS as usize], 0);
    let s = k.device_stats(2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (s.packets, s.dropped_packets),
        (9, 9),
        "malformed frames are still counted for the device"
    );
}

#[test]
fn non_first_fragments_and_non_ip_pass() {
    let cfg = config(None);
    let mut k = kernel(&cfg);
    // A non-first IPv4 fragment has no ports: passed (conntrack reassembles before nft).
    let mut f = eth(BLOCKER, ETH_P_IPV4);
    f.extend(ipv4(6, 185, &[0u8; 24]));
    assert_eq!(verdict(&mut k, &f), TC_ACT_OK, "non-first fragment");
    // The first fragment carries the ports and is judged.
    let mut f = eth(BLOCKER, ETH_P_IPV4);
    f.extend(ipv4(6, 0x2000, &tcp(23)));
    assert_eq!(verdict(&mut k, &f), TC_ACT_SHOT, "first fragment to 23");
    // IPv6 fragment header, non-first fragment.
    let mut f = eth(BLOCKER, ETH_P_IPV6);
    f.extend(ipv6(44, &[6, 0, 0, 0x10, 0, 0, 0, 1, 0, 0, 0, 0]));
    assert_eq!(verdict(&mut k, &f), TC_ACT_OK, "IPv6 non-first fragment");
    // ARP and UDP pass untouched.
    let mut f = eth(BLOCKER, ETH_P_ARP);
    f.extend([0u8; 28]);
    assert_eq!(verdict(&mut k, &f), TC_ACT_OK, "ARP");
    let mut f = eth(BLOCKER, ETH_P_IPV4);
    f.extend(ipv4(17, 0, &[0, 53, 0, 23, 0, 8, 0, 0]));
    assert_eq!(
        verdict(&mut k, &f),
        TC_ACT_OK,
        "UDP to port 23 is not telnet"
    );
    let health = k.health().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(health.iter().sum::<u64>(), 0, "nothing here is malformed");
}

#[test]
fn runt_frames_are_refused_or_passed() {
    let cfg = config(None);
    let mut k = kernel(&cfg);
    // Exactly an Ethernet header, non-IP: passed.
    assert_eq!(
        verdict(&mut k, &eth(ALLOWER, ETH_P_ARP)),
        TC_ACT_OK,
        "bare ARP ethertype"
    );
    // Shorter than an Ethernet header: the kernel refuses the input; if a
    // kernel ever runs it, the program must pass it to the stack (which drops runts).
    let short = &eth(ALLOWER, ETH_P_ARP)[..10];
    let prog = k.program().unwrap_or_else(|e| panic!("{e}"));
    let opts = TestRunOptions {
        data_in: Some(short),
        ..Default::default()
    };
    if let Ok(r) = prog.test_run(opts) {
        assert_eq!(
            r.return_value, TC_ACT_OK,
            "a runt, if run at all, is passed"
        );
    }
}
