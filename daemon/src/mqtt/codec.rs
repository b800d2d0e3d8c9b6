//! MQTT on the wire for the front: framing and decoding with rumqttc's codec
//! (3.1.1 and 5.0), plus the few tiny frames moat writes itself (acks,
//! refusals). Only CONNECT, PUBLISH and SUBSCRIBE from a device are decoded;
//! every other frame is passed on as the bytes that came in.

use bytes::{BufMut as _, Bytes, BytesMut};
use rumqttc::mqttbytes::{self as m, v4};
use rumqttc::v5::mqttbytes::{v5, QoS as QoS5};

pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const SUBACK: u8 = 9;
pub const UNSUBSCRIBE: u8 = 10;

/// MQTT 5 reason code "Not authorized".
pub const NOT_AUTHORIZED_V5: u8 = 0x87;
/// MQTT 5 reason code "Packet Identifier not found".
pub const PKID_NOT_FOUND_V5: u8 = 0x92;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V4,
    V5,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("packet of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// Length of the first complete frame in `buf`, `None` if more bytes are needed.
pub fn frame_len(buf: &BytesMut, max: usize) -> Result<Option<usize>, CodecError> {
    match m::check(buf.iter(), max) {
        Ok(h) => Ok(Some(h.frame_length())),
        Err(m::Error::InsufficientBytes(_)) => Ok(None),
        Err(m::Error::PayloadSizeLimitExceeded(n)) => Err(CodecError::TooLarge(n)),
        Err(e) => Err(CodecError::Malformed(e.to_string())),
    }
}

pub fn kind(frame: &[u8]) -> u8 {
    frame.first().map_or(0, |b| b >> 4)
}

/// A decoded CONNECT, kept whole so it can be re-encoded toward the broker.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per connection, briefly
pub enum Connect {
    V4(v4::Connect),
    V5(v5::Connect, Option<v5::LastWill>, Option<v5::Login>),
}

/// The protocol level in a CONNECT frame (byte after the protocol name).
fn level(frame: &[u8]) -> Option<u8> {
    let hdr = 1 + frame.iter().skip(1).take(4).position(|b| b & 0x80 == 0)? + 1;
    let name_len = usize::from(u16::from_be_bytes([*frame.get(hdr)?, *frame.get(hdr + 1)?]));
    frame.get(hdr + 2 + name_len).copied()
}

impl Connect {
    pub fn parse(frame: BytesMut, max: usize) -> Result<Self, CodecError> {
        let bad = |e: &dyn std::fmt::Display| CodecError::Malformed(e.to_string());
        let mut buf = frame;
        match level(&buf) {
            Some(5) => match v5::Packet::read(&mut buf, Some(max as u32)).map_err(|e| bad(&e))? {
                v5::Packet::Connect(c, w, l) => Ok(Connect::V5(c, w, l)),
                _ => Err(CodecError::Protocol("first packet must be CONNECT")),
            },
            Some(4) => match v4::Packet::read(&mut buf, max).map_err(|e| bad(&e))? {
                v4::Packet::Connect(c) => Ok(Connect::V4(c)),
                _ => Err(CodecError::Protocol("first packet must be CONNECT")),
            },
            _ => Err(CodecError::Protocol("unsupported protocol version (3.1.1 and 5 are)")),
        }
    }

    pub fn version(&self) -> Version {
        match self {
            Connect::V4(_) => Version::V4,
            Connect::V5(..) => Version::V5,
        }
    }

    pub fn client_id(&self) -> &str {
        match self {
            Connect::V4(c) => &c.client_id,
            Connect::V5(c, ..) => &c.client_id,
        }
    }

    /// A 3.1.1 client with no client id must ask for a clean session
    /// (MQTT-3.1.3-8).
    pub fn invalid_empty_id(&self) -> bool {
        matches!(self, Connect::V4(c) if c.client_id.is_empty() && !c.clean_session)
    }

    /// (username, password) if the client sent them.
    pub fn login(&self) -> Option<(&str, &str)> {
        match self {
            Connect::V4(c) => c.login.as_ref().map(|l| (l.username.as_str(), l.password.as_str())),
            Connect::V5(_, _, l) => l.as_ref().map(|l| (l.username.as_str(), l.password.as_str())),
        }
    }

    /// The will's topic, if any (it is published on the device's behalf, so
    /// the device must be allowed to publish there).
    pub fn will_topic(&self) -> Option<String> {
        match self {
            Connect::V4(c) => c.last_will.as_ref().map(|w| w.topic.clone()),
            Connect::V5(_, w, _) => w.as_ref().map(|w| String::from_utf8_lossy(&w.topic).into_owned()),
        }
    }

    /// The device's Receive Maximum (v5), the most QoS 1/2 deliveries it
    /// takes unacknowledged; 65535 when it does not say.
    pub fn receive_maximum(&self) -> u16 {
        match self {
            Connect::V4(_) => u16::MAX,
            Connect::V5(c, ..) => c.properties.as_ref().and_then(|p| p.receive_maximum).unwrap_or(u16::MAX),
        }
    }

    /// The CONNECT toward the broker: moat's client id and internal login.
    /// The device's Receive Maximum is moat's to honour (it delivers to the
    /// device itself), so the broker gets none.
    pub fn rewrite(self, client_id: String, user: &str, pass: &str) -> Result<Bytes, CodecError> {
        let mut out = BytesMut::new();
        let fail = |e: &dyn std::fmt::Display| CodecError::Malformed(e.to_string());
        match self {
            // Always a clean session on the broker: rumqttd would restore a
            // stored session's subscriptions unchecked, past a permission
            // change (the device is told no session is present).
            Connect::V4(mut c) => {
                c.client_id = client_id;
                c.clean_session = true;
                c.login = Some(v4::Login::new(user, pass));
                v4::Packet::Connect(c).write(&mut out, usize::MAX).map_err(|e| fail(&e))?;
            }
            Connect::V5(mut c, w, _) => {
                c.client_id = client_id;
                c.clean_start = true;
                if let Some(p) = c.properties.as_mut() {
                    p.session_expiry_interval = None;
                    p.receive_maximum = None;
                    // moat reads each topic; no aliases from the broker either.
                    p.topic_alias_max = None;
                }
                let login = Some(v5::Login::new(user, pass));
                v5::Packet::Connect(c, w, login).write(&mut out, None).map_err(|e| fail(&e))?;
            }
        }
        Ok(out.freeze())
    }
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadCredentials,
    NotAuthorized,
    RateExceeded,
    Busy,
}

/// A CONNACK refusing the connection, in the client's version.
pub fn connack_refused(v: Version, why: Refusal) -> Bytes {
    let code = match (v, why) {
        (Version::V4, Refusal::BadCredentials) => 4,
        (Version::V4, Refusal::NotAuthorized) => 5,
        (Version::V4, Refusal::RateExceeded | Refusal::Busy) => 3,
        (Version::V5, Refusal::BadCredentials) => 0x86,
        (Version::V5, Refusal::NotAuthorized) => NOT_AUTHORIZED_V5,
        (Version::V5, Refusal::RateExceeded) => 0x9f,
        (Version::V5, Refusal::Busy) => 0x89,
    };
    match v {
        Version::V4 => Bytes::from(vec![CONNACK << 4, 2, 0, code]),
        Version::V5 => Bytes::from(vec![CONNACK << 4, 3, 0, code, 0]),
    }
}

/// The broker's CONNACK for a v5 client, without topic aliases (moat checks
/// every topic name, so clients must send them) and with the client id moat
/// assigned if the client sent none.
pub fn rewrite_connack_v5(frame: BytesMut, assigned: Option<&str>) -> Result<Bytes, CodecError> {
    let mut buf = frame;
    let bad = |e: &dyn std::fmt::Display| CodecError::Malformed(e.to_string());
    let v5::Packet::ConnAck(mut ack) = v5::Packet::read(&mut buf, None).map_err(|e| bad(&e))? else {
        return Err(CodecError::Protocol("broker sent no CONNACK"));
    };
    ack.session_present = false;
    if let Some(p) = ack.properties.as_mut() {
        p.topic_alias_max = None;
    }
    if let Some(id) = assigned {
        let mut props = ack.properties.take().unwrap_or(v5::ConnAckProperties {
            session_expiry_interval: None,
            receive_max: None,
            max_qos: None,
            retain_available: None,
            max_packet_size: None,
            assigned_client_identifier: None,
            topic_alias_max: None,
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: None,
            subscription_identifiers_available: None,
            shared_subscription_available: None,
            server_keep_alive: None,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        });
        props.assigned_client_identifier = Some(id.to_string());
        ack.properties = Some(props);
    }
    let mut out = BytesMut::new();
    v5::Packet::ConnAck(ack).write(&mut out, None).map_err(|e| bad(&e))?;
    Ok(out.freeze())
}

/// The broker's v3.1.1 CONNACK with "session present" cleared (moat always
/// starts a clean session on the broker).
pub fn connack_v4_no_session(frame: BytesMut) -> Bytes {
    let mut f = frame;
    if let Some(flags) = f.get_mut(2) {
        *flags = 0;
    }
    f.freeze()
}

/// A v5 ack frame's reason code (0 when absent: success).
pub fn ack_reason(frame: &[u8]) -> u8 {
    let Some((len, used)) = get_len(frame, 1) else { return 0 };
    if len < 3 {
        return 0;
    }
    frame.get(1 + used + 2).copied().unwrap_or(0)
}

/// A CONNACK's return code (v4 and v5 alike: the second byte of the body).
pub fn connack_code(frame: &[u8]) -> Option<u8> {
    let hdr = 1 + frame.iter().skip(1).take(4).position(|b| b & 0x80 == 0)? + 1;
    frame.get(hdr + 1).copied()
}

/// What the front needs of a device's PUBLISH.
#[derive(Debug, PartialEq, Eq)]
pub struct PublishInfo {
    pub topic: String,
    pub qos: u8,
    pub pkid: u16,
    pub retain: bool,
    pub empty: bool,
}

pub fn publish_info(v: Version, frame: BytesMut, max: usize) -> Result<PublishInfo, CodecError> {
    let mut buf = frame;
    let bad = |e: &dyn std::fmt::Display| CodecError::Malformed(e.to_string());
    match v {
        Version::V4 => match v4::Packet::read(&mut buf, max).map_err(|e| bad(&e))? {
            v4::Packet::Publish(p) => Ok(PublishInfo {
                topic: p.topic,
                qos: p.qos as u8,
                pkid: p.pkid,
                retain: p.retain,
                empty: p.payload.is_empty(),
            }),
            _ => Err(CodecError::Protocol("not a PUBLISH")),
        },
        Version::V5 => match v5::Packet::read(&mut buf, Some(max as u32)).map_err(|e| bad(&e))? {
            v5::Packet::Publish(p) => {
                if p.properties.as_ref().is_some_and(|pr| pr.topic_alias.is_some()) {
                    return Err(CodecError::Protocol("topic alias used but none was granted"));
                }
                let topic =
                    String::from_utf8(p.topic.to_vec()).map_err(|_| CodecError::Protocol("topic is not UTF-8"))?;
                Ok(PublishInfo { topic, qos: p.qos as u8, pkid: p.pkid, retain: p.retain, empty: p.payload.is_empty() })
            }
            _ => Err(CodecError::Protocol("not a PUBLISH")),
        },
    }
}

/// A decoded SUBSCRIBE.
#[derive(Debug)]
pub enum Subscribe {
    V4(v4::Subscribe),
    V5(v5::Subscribe),
}

impl Subscribe {
    pub fn parse(v: Version, frame: BytesMut, max: usize) -> Result<Self, CodecError> {
        let mut buf = frame;
        let bad = |e: &dyn std::fmt::Display| CodecError::Malformed(e.to_string());
        match v {
            Version::V4 => match v4::Packet::read(&mut buf, max).map_err(|e| bad(&e))? {
                v4::Packet::Subscribe(s) => Ok(Subscribe::V4(s)),
                _ => Err(CodecError::Protocol("not a SUBSCRIBE")),
            },
            Version::V5 => match v5::Packet::read(&mut buf, Some(max as u32)).map_err(|e| bad(&e))? {
                v5::Packet::Subscribe(s) => Ok(Subscribe::V5(s)),
                _ => Err(CodecError::Protocol("not a SUBSCRIBE")),
            },
        }
    }

    pub fn pkid(&self) -> u16 {
        match self {
            Subscribe::V4(s) => s.pkid,
            Subscribe::V5(s) => s.pkid,
        }
    }

    /// (filter, requested QoS) of each entry.
    pub fn filters(&self) -> Vec<(String, u8)> {
        match self {
            Subscribe::V4(s) => s.filters.iter().map(|f| (f.path.clone(), f.qos as u8)).collect(),
            Subscribe::V5(s) => s.filters.iter().map(|f| (f.path.clone(), f.qos as u8)).collect(),
        }
    }

    /// The SUBSCRIBE toward the broker: only the filters marked `keep`, each
    /// at QoS 0 (moat takes every message at once and delivers it to the
    /// device at the granted QoS itself; see session.rs).
    pub fn keep_at_qos0(self, keep: &[bool]) -> Result<Bytes, CodecError> {
        let mut out = BytesMut::new();
        let fail = |e: &dyn std::fmt::Display| CodecError::Malformed(e.to_string());
        let mut k = keep.iter();
        match self {
            Subscribe::V4(mut s) => {
                s.filters.retain(|_| *k.next().unwrap_or(&false));
                s.filters.iter_mut().for_each(|f| f.qos = m::QoS::AtMostOnce);
                v4::Packet::Subscribe(s).write(&mut out, usize::MAX).map_err(|e| fail(&e))?;
            }
            Subscribe::V5(mut s) => {
                s.filters.retain(|_| *k.next().unwrap_or(&false));
                s.filters.iter_mut().for_each(|f| f.qos = QoS5::AtMostOnce);
                v5::Packet::Subscribe(s).write(&mut out, None).map_err(|e| fail(&e))?;
            }
        }
        Ok(out.freeze())
    }
}

/// The filters of an UNSUBSCRIBE.
pub fn unsubscribe_filters(v: Version, frame: BytesMut, max: usize) -> Result<Vec<String>, CodecError> {
    let mut buf = frame;
    let bad = |e: &dyn std::fmt::Display| CodecError::Malformed(e.to_string());
    match v {
        Version::V4 => match v4::Packet::read(&mut buf, max).map_err(|e| bad(&e))? {
            v4::Packet::Unsubscribe(u) => Ok(u.topics),
            _ => Err(CodecError::Protocol("not an UNSUBSCRIBE")),
        },
        Version::V5 => match v5::Packet::read(&mut buf, Some(max as u32)).map_err(|e| bad(&e))? {
            v5::Packet::Unsubscribe(u) => Ok(u.filters),
            _ => Err(CodecError::Protocol("not an UNSUBSCRIBE")),
        },
    }
}

/// The topic of a PUBLISH frame.
pub fn publish_topic(frame: &[u8]) -> Option<&str> {
    let (_, used) = get_len(frame, 1)?;
    let at = 1 + used;
    let tlen = usize::from(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    std::str::from_utf8(frame.get(at + 2..at + 2 + tlen)?).ok()
}

/// A QoS 0 PUBLISH frame re-sent at `qos` (1 or 2): the flags changed and
/// a packet id slot (0, filled in when sent) after the topic. Returns the
/// frame and the slot's offset.
pub fn raise_qos(frame: &[u8], qos: u8) -> Option<(Bytes, usize)> {
    let (len, used) = get_len(frame, 1)?;
    let body = frame.get(1 + used..1 + used + len)?;
    let tlen = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let (topic, rest) = (body.get(..2 + tlen)?, body.get(2 + tlen..)?);
    let mut out = BytesMut::with_capacity(frame.len() + 4);
    out.put_u8((frame.first()? & 0xf9) | (qos << 1));
    put_len(&mut out, len + 2);
    out.extend_from_slice(topic);
    let at = out.len();
    out.put_u16(0);
    out.extend_from_slice(rest);
    Some((out.freeze(), at))
}

/// Appends an MQTT variable byte integer.
fn put_len(out: &mut BytesMut, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if n == 0 {
            break;
        }
    }
}

/// Reads a variable byte integer at `at`: (value, bytes used).
fn get_len(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut n = 0usize;
    for i in 0..4 {
        let b = *buf.get(at + i)?;
        n |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

/// A SUBACK with one return code per filter.
pub fn suback(v: Version, pkid: u16, codes: &[u8]) -> Bytes {
    let props = usize::from(v == Version::V5);
    let mut out = BytesMut::with_capacity(8 + codes.len());
    out.put_u8(SUBACK << 4);
    put_len(&mut out, 2 + props + codes.len());
    out.put_u16(pkid);
    if v == Version::V5 {
        out.put_u8(0);
    }
    out.extend_from_slice(codes);
    out.freeze()
}

/// (packet id, return codes) of a SUBACK from the broker.
pub fn suback_codes(v: Version, frame: &[u8]) -> Option<(u16, Vec<u8>)> {
    let (len, used) = get_len(frame, 1)?;
    let body = frame.get(1 + used..1 + used + len)?;
    let pkid = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    let mut at = 2;
    if v == Version::V5 {
        let (plen, pused) = get_len(body, 2)?;
        at += pused + plen;
    }
    Some((pkid, body.get(at..)?.to_vec()))
}

/// PUBACK / PUBREC / PUBCOMP (or PUBREL) for `pkid`, with a v5 reason code.
pub fn ack(kind: u8, pkid: u16, reason: Option<u8>) -> Bytes {
    let flags = if kind == PUBREL { 2 } else { 0 };
    let [hi, lo] = pkid.to_be_bytes();
    match reason {
        Some(r) => Bytes::from(vec![kind << 4 | flags, 4, hi, lo, r, 0]),
        None => Bytes::from(vec![kind << 4 | flags, 2, hi, lo]),
    }
}

/// QoS, packet id and the id's offset of a PUBLISH frame, read without
/// decoding the rest.
pub fn peek_publish(frame: &[u8]) -> Option<super::queue::Msg> {
    let qos = (frame.first()? >> 1) & 3;
    if qos == 0 {
        return Some(super::queue::Msg { qos, pkid: 0, pkid_at: 0 });
    }
    let (_, used) = get_len(frame, 1)?;
    let at = 1 + used;
    let tlen = usize::from(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    let p = at + 2 + tlen;
    let pkid = u16::from_be_bytes([*frame.get(p)?, *frame.get(p + 1)?]);
    Some(super::queue::Msg { qos, pkid, pkid_at: p })
}

/// Packet id of an ack-type frame (PUBACK, PUBREC, PUBREL, PUBCOMP).
pub fn ack_pkid(frame: &[u8]) -> Option<u16> {
    let (_, used) = get_len(frame, 1)?;
    Some(u16::from_be_bytes([*frame.get(1 + used)?, *frame.get(2 + used)?]))
}

#[cfg(test)]
#[allow(clippy::panic)] // a failing test panics
mod tests {
    use super::*;

    fn connect_v4(client: &str, user: &str, pass: &str) -> BytesMut {
        let mut c = v4::Connect::new(client);
        c.login = Some(v4::Login::new(user, pass));
        let mut out = BytesMut::new();
        let _ = v4::Packet::Connect(c).write(&mut out, usize::MAX);
        out
    }

    #[test]
    fn connect_round_trip_and_rewrite() {
        let f = connect_v4("cam-1", "cam", "secret");
        assert_eq!(frame_len(&f, 1024).ok().flatten(), Some(f.len()));
        let Ok(c) = Connect::parse(f, 1024) else { panic!("parse") };
        assert_eq!((c.version(), c.client_id(), c.login()), (Version::V4, "cam-1", Some(("cam", "secret"))));
        let Ok(out) = c.rewrite("cam/cam-1".into(), "moat", "internal") else { panic!("rewrite") };
        let Ok(again) = Connect::parse(BytesMut::from(&out[..]), 1024) else { panic!("reparse") };
        assert_eq!((again.client_id(), again.login()), ("cam/cam-1", Some(("moat", "internal"))));
    }

    #[test]
    fn framing_limits() {
        let mut big = BytesMut::from(&[0x30u8, 0xff, 0xff, 0x03][..]);
        assert!(matches!(frame_len(&big, 1024), Err(CodecError::TooLarge(_))));
        big.truncate(1);
        assert!(matches!(frame_len(&big, 1024), Ok(None)));
        let bad = BytesMut::from(&[0x30u8, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert!(frame_len(&bad, usize::MAX).is_err());
    }

    #[test]
    fn small_frames() {
        assert_eq!(&ack(PUBACK, 0x1234, None)[..], &[0x40, 2, 0x12, 0x34]);
        assert_eq!(&ack(PUBACK, 7, Some(NOT_AUTHORIZED_V5))[..], &[0x40, 4, 0, 7, 0x87, 0]);
        assert_eq!(ack_reason(&ack(PUBREC, 7, Some(NOT_AUTHORIZED_V5))), 0x87);
        assert_eq!(ack_reason(&ack(PUBREC, 7, None)), 0);
        assert_eq!(&connack_v4_no_session(BytesMut::from(&[0x20u8, 2, 1, 0][..]))[..], &[0x20, 2, 0, 0]);
        let s = suback(Version::V5, 9, &[1, 0x87]);
        assert_eq!(suback_codes(Version::V5, &s), Some((9, vec![1, 0x87])));
        let s4 = suback(Version::V4, 3, &[0x80]);
        assert_eq!(suback_codes(Version::V4, &s4), Some((3, vec![0x80])));
        assert_eq!(&connack_refused(Version::V4, Refusal::BadCredentials)[..], &[0x20, 2, 0, 4]);
        let mut p = BytesMut::new();
        let mut publish = v4::Publish::new("a/b", m::QoS::AtLeastOnce, vec![1u8, 2]);
        publish.pkid = 5;
        let _ = v4::Packet::Publish(publish).write(&mut p, usize::MAX);
        assert_eq!(peek_publish(&p), Some(crate::mqtt::queue::Msg { qos: 1, pkid: 5, pkid_at: 7 }));
        assert_eq!(publish_topic(&p), Some("a/b"));
        let Ok(info) = publish_info(Version::V4, p, 1024) else { panic!("publish") };
        assert_eq!(info.topic, "a/b");
        let mut q0 = BytesMut::new();
        let _ = v4::Packet::Publish(v4::Publish::new("t", m::QoS::AtMostOnce, vec![9u8])).write(&mut q0, 99);
        let Some((raised, at)) = raise_qos(&q0, 1) else { panic!("raise") };
        assert_eq!((&raised[..], at), (&[0x32u8, 6, 0, 1, b't', 0, 0, 9][..], 5));
    }
}
