//! The tail-called classifier: runs once per flow, on its first payload
//! packet. Everything it knows comes from `PENDING`, so the verifier checks it
//! once instead of once per path through the header parser.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use moat_common::{
    class::dir,
    classify::{classify, Sample, IPPROTO_UDP},
    event,
    maps::FLOW_CLASSIFIED,
};

use crate::{
    events, flow, maps,
    verdict::{finish, Facts},
};

const DHCP_COOKIE: [u8; 4] = [0x63, 0x82, 0x53, 0x63];
/// Payload offsets beyond this are not classified (no real header chain is longer).
const MAX_PAYLOAD_OFF: usize = 2048;

pub fn run(ctx: &TcContext) -> i32 {
    let Some(p) = maps::PENDING.get(0).copied() else {
        return TC_ACT_OK; // unreachable: a per-CPU array always has slot 0
    };
    let d = p.dir as usize & 1;
    let off = p.payload_off as usize;
    let plen = p.payload_len as usize & 0xffff;
    let mut s = Sample { proto: p.proto, payload_len: plen, ..Default::default() };
    (s.src_port, s.dst_port) =
        if d == dir::FROM_DEVICE { (p.key.lan_port, p.key.remote_port) } else { (p.key.remote_port, p.key.lan_port) };
    if off <= MAX_PAYLOAD_OFF {
        let avail = plen.min((ctx.len() as usize).saturating_sub(off));
        s.len = flow::read_sample(ctx, off, avail, &mut s.bytes);
        if p.proto == IPPROTO_UDP && plen >= 240 {
            s.dhcp_cookie = ctx.load::<[u8; 4]>(off + 236).is_ok_and(|c| c == DHCP_COOKIE);
        }
    }
    let class = classify(&s);
    if let Some(v) = maps::FLOWS.get_ptr_mut(p.key) {
        // SAFETY: entry in the map; racing first packets classify alike.
        let v = unsafe { &mut *v };
        v.class = class;
        v.flags |= FLOW_CLASSIFIED;
    }
    events::flow(event::NEW_FLOW, class, 0, d, p.dev.id, &p.mac, &p.key);
    let facts =
        Facts { dir: d, dev: p.dev, mac: p.mac, len: p.len, proto: p.proto, key: Some(&p.key), payload: (off, plen) };
    finish(ctx, &facts, class)
}
