//! Reads the classifier's event ring buffer: decodes each record, logs it at
//! debug, counts it by kind, and keeps the most recent ones for the status
//! snapshot. Lost events are counted by the kernel (health `ringbuf_full`).

use std::{collections::VecDeque, net::IpAddr};

use moat_common::{
    class,
    event::{self, EventHeader, FlowEvent, PacketEvent},
    maps::FAMILY_V4,
    reason, FlowKey,
};
use serde::Serialize;
use tracing::debug;

/// Recent events kept for the status snapshot.
pub const RECENT: usize = 64;

/// One decoded event, as reported to people and tools.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    pub kind: &'static str,
    pub device_id: u32,
    pub mac: String,
    pub class: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<Flow>,
    /// Payload bytes copied (DNS/DHCP), of `payload_len`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_len: Option<u32>,
    pub ts_ns: u64,
    /// Unix time moat read it (the ring is drained every 100 ms; the
    /// kernel's `ts_ns` is monotonic, not wall-clock).
    pub time: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Flow {
    pub proto: u8,
    pub lan: String,
    pub lan_port: u16,
    pub remote: String,
    pub remote_port: u16,
}

/// Why a ring record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event record of {0} bytes is too short")]
    Short(usize),
    #[error("unknown event kind {0}")]
    Kind(u8),
}

/// Counts and recent history of decoded events.
#[derive(Debug, Default)]
pub struct Events {
    pub counts: [u64; event::KIND_COUNT],
    pub undecodable: u64,
    pub recent: VecDeque<Event>,
}

impl Events {
    /// Takes one raw ring record; returns it decoded.
    pub fn record(&mut self, raw: &[u8]) -> Option<Event> {
        match decode(raw) {
            Ok(e) => {
                debug!(kind = e.kind, device = e.device_id, mac = %e.mac, class = e.class, flow = ?e.flow, "event");
                if let Some(n) = self.counts.get_mut(kind_index(e.kind)) {
                    *n += 1;
                }
                if self.recent.len() == RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back(e.clone());
                Some(e)
            }
            Err(err) => {
                self.undecodable += 1;
                debug!(error = %err, "undecodable event");
                None
            }
        }
    }
}

fn kind_index(name: &str) -> usize {
    event::KIND_NAMES.iter().position(|n| *n == name).unwrap_or(0)
}

/// Little reader over a record's bytes (native endian: the kernel wrote them
/// on this machine). Field offsets come from the shared structs.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&self, at: usize) -> u8 {
        self.0.get(at).copied().unwrap_or(0)
    }
    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(at..at + N) {
            out.copy_from_slice(src);
        }
        out
    }
    fn u16(&self, at: usize) -> u16 {
        u16::from_ne_bytes(self.array(at))
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.array(at))
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_ne_bytes(self.array(at))
    }
}

fn mac(b: [u8; 6]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

fn addr(family: u8, raw: [u8; 16]) -> String {
    let ip: IpAddr = if family == FAMILY_V4 { [raw[0], raw[1], raw[2], raw[3]].into() } else { raw.into() };
    ip.to_string()
}

fn flow_at(b: &Bytes<'_>, at: usize) -> Flow {
    use std::mem::offset_of;
    let family = b.u8(at + offset_of!(FlowKey, family));
    Flow {
        proto: b.u8(at + offset_of!(FlowKey, proto)),
        lan: addr(family, b.array(at + offset_of!(FlowKey, lan_addr))),
        lan_port: b.u16(at + offset_of!(FlowKey, lan_port)),
        remote: addr(family, b.array(at + offset_of!(FlowKey, remote_addr))),
        remote_port: b.u16(at + offset_of!(FlowKey, remote_port)),
    }
}

/// Decodes one ring record.
pub fn decode(raw: &[u8]) -> Result<Event, DecodeError> {
    use std::mem::{offset_of, size_of};
    if raw.len() < size_of::<EventHeader>() {
        return Err(DecodeError::Short(raw.len()));
    }
    let b = Bytes(raw);
    let kind = b.u8(offset_of!(EventHeader, kind));
    let need = match kind {
        event::NEW_DEVICE | event::NEW_FLOW | event::BLOCKED => size_of::<FlowEvent>(),
        event::DNS_RESPONSE | event::DHCP_REQUEST => size_of::<PacketEvent>(),
        k => return Err(DecodeError::Kind(k)),
    };
    if raw.len() < need {
        return Err(DecodeError::Short(raw.len()));
    }
    let why = b.u8(offset_of!(EventHeader, reason));
    let mut e = Event {
        kind: event::KIND_NAMES.get(usize::from(kind)).copied().unwrap_or("invalid"),
        device_id: b.u32(offset_of!(EventHeader, device_id)),
        mac: String::new(),
        class: class::name(b.u8(offset_of!(EventHeader, class))),
        reason: (kind == event::BLOCKED).then(|| reason::NAMES.get(usize::from(why)).copied().unwrap_or("invalid")),
        direction: class::dir::NAMES.get(usize::from(b.u8(offset_of!(EventHeader, dir)))).copied().unwrap_or("invalid"),
        flow: None,
        copied: None,
        payload_len: None,
        ts_ns: b.u64(offset_of!(EventHeader, ts_ns)),
        time: crate::clock::unix_secs().unsigned_abs(),
    };
    if need == size_of::<FlowEvent>() {
        e.mac = mac(b.array(offset_of!(FlowEvent, mac)));
        if kind != event::NEW_DEVICE {
            e.flow = Some(flow_at(&b, offset_of!(FlowEvent, key)));
        }
    } else {
        e.mac = mac(b.array(offset_of!(PacketEvent, mac)));
        e.flow = Some(flow_at(&b, offset_of!(PacketEvent, key)));
        e.copied = Some(usize::from(b.u16(offset_of!(PacketEvent, len))));
        e.payload_len = Some(b.u32(offset_of!(PacketEvent, orig_len)));
    }
    Ok(e)
}

/// The copied payload of a DNS/DHCP record (for the parsers of later stages).
pub fn payload(raw: &[u8]) -> &[u8] {
    use std::mem::offset_of;
    let b = Bytes(raw);
    let len = usize::from(b.u16(offset_of!(PacketEvent, len))).min(event::PACKET_COPY_MAX);
    let start = offset_of!(PacketEvent, data);
    raw.get(start..start + len).unwrap_or(&[])
}

#[cfg(test)]
#[allow(clippy::panic)] // a failing test panics
mod tests {
    use super::*;

    fn flow_event(kind: u8) -> Vec<u8> {
        let mut v = vec![0u8; std::mem::size_of::<FlowEvent>()];
        v[0] = kind;
        v[1] = class::TELNET;
        v[2] = reason::BLOCKED_CLASS as u8;
        v[4..8].copy_from_slice(&7u32.to_ne_bytes());
        v[16..22].copy_from_slice(&[2, 0x77, 0, 0, 0, 1]);
        let key = std::mem::offset_of!(FlowEvent, key);
        v[key..key + 4].copy_from_slice(&[10, 77, 0, 10]);
        v[key + 16..key + 20].copy_from_slice(&[198, 51, 100, 10]);
        v[key + 32..key + 34].copy_from_slice(&40000u16.to_ne_bytes());
        v[key + 34..key + 36].copy_from_slice(&8023u16.to_ne_bytes());
        v[key + 36] = 6;
        v[key + 37] = FAMILY_V4;
        v
    }

    #[test]
    fn decodes_a_blocked_event() {
        let e = decode(&flow_event(event::BLOCKED)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((e.kind, e.class, e.reason, e.device_id), ("blocked", "telnet", Some("blocked_class"), 7));
        assert_eq!(e.mac, "02:77:00:00:00:01");
        let f = e.flow.unwrap_or_else(|| panic!("no flow"));
        assert_eq!(
            (f.lan.as_str(), f.lan_port, f.remote.as_str(), f.remote_port, f.proto),
            ("10.77.0.10", 40000, "198.51.100.10", 8023, 6)
        );
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert_eq!(decode(&[1, 2, 3]), Err(DecodeError::Short(3)));
        assert_eq!(decode(&flow_event(event::BLOCKED)[..40]), Err(DecodeError::Short(40)));
        assert_eq!(decode(&flow_event(99)), Err(DecodeError::Kind(99)));
        assert_eq!(
            decode(&flow_event(event::DNS_RESPONSE)),
            Err(DecodeError::Short(64)),
            "packet kinds need the full record"
        );
        let mut ev = Events::default();
        ev.record(&[0u8; 3]);
        ev.record(&flow_event(event::NEW_FLOW));
        assert_eq!((ev.undecodable, ev.counts[event::NEW_FLOW as usize], ev.recent.len()), (1, 1, 1));
    }
}
