//! The frames moat writes itself (acks, SUBACK/UNSUBACK, CONNACKs) and the
//! few fields it reads straight off the wire (lengths, packet ids, reason
//! codes).

use bytes::{BufMut as _, Bytes, BytesMut};
use rumqttc::v5::mqttbytes::v5;

use super::codec::{CodecError, Refusal, Version, CONNACK, NOT_AUTHORIZED_V5, PUBREL, SUBACK};

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

/// A successful CONNACK (no session present: sessions are clean). For MQTT
/// 5 it says what moat's broker supports: no topic aliases, no shared
/// subscriptions or subscription identifiers, its maximum packet size, and
/// the client id it assigned, if any.
pub fn connack_ok(v: Version, assigned: Option<&str>, max_packet: u32) -> Result<Bytes, CodecError> {
    if v == Version::V4 {
        return Ok(Bytes::from_static(&[CONNACK << 4, 2, 0, 0]));
    }
    let props = v5::ConnAckProperties {
        session_expiry_interval: None,
        receive_max: None,
        max_qos: None,
        retain_available: None,
        max_packet_size: Some(max_packet),
        assigned_client_identifier: assigned.map(str::to_string),
        topic_alias_max: None,
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: None,
        subscription_identifiers_available: Some(0),
        shared_subscription_available: Some(0),
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    };
    let ack = v5::ConnAck { session_present: false, code: v5::ConnectReturnCode::Success, properties: Some(props) };
    let mut out = BytesMut::new();
    v5::Packet::ConnAck(ack).write(&mut out, None).map_err(|e| CodecError::Malformed(e.to_string()))?;
    Ok(out.freeze())
}

/// UNSUBACK for `n` filters (v5: all "success").
pub fn unsuback(v: Version, pkid: u16, n: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(6 + n);
    out.put_u8(0xb0);
    match v {
        Version::V4 => {
            put_len(&mut out, 2);
            out.put_u16(pkid);
        }
        Version::V5 => {
            put_len(&mut out, 3 + n);
            out.put_u16(pkid);
            out.put_u8(0);
            out.extend(std::iter::repeat_n(0u8, n));
        }
    }
    out.freeze()
}

pub const PINGREQ: u8 = 12;
pub const DISCONNECT: u8 = 14;
pub const PINGRESP: &[u8] = &[0xd0, 0];

/// Does this DISCONNECT ask for the will to be sent (v5 reason 0x04)?
pub fn disconnect_with_will(frame: &[u8]) -> bool {
    frame.get(1).is_some_and(|l| *l > 0) && frame.get(2) == Some(&0x04)
}

/// A v5 ack frame's reason code (0 when absent: success).
pub fn ack_reason(frame: &[u8]) -> u8 {
    let Some((len, used)) = get_len(frame, 1) else { return 0 };
    if len < 3 {
        return 0;
    }
    frame.get(1 + used + 2).copied().unwrap_or(0)
}

/// Appends an MQTT variable byte integer.
pub fn put_len(out: &mut BytesMut, mut n: usize) {
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
pub fn get_len(buf: &[u8], at: usize) -> Option<(usize, usize)> {
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

/// PUBACK / PUBREC / PUBCOMP (or PUBREL) for `pkid`, with a v5 reason code.
pub fn ack(kind: u8, pkid: u16, reason: Option<u8>) -> Bytes {
    let flags = if kind == PUBREL { 2 } else { 0 };
    let [hi, lo] = pkid.to_be_bytes();
    match reason {
        Some(r) => Bytes::from(vec![kind << 4 | flags, 4, hi, lo, r, 0]),
        None => Bytes::from(vec![kind << 4 | flags, 2, hi, lo]),
    }
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
    use crate::mqtt::codec::{PUBACK, PUBREC};

    #[test]
    fn small_frames() {
        assert_eq!(&ack(PUBACK, 0x1234, None)[..], &[0x40, 2, 0x12, 0x34]);
        assert_eq!(&ack(PUBACK, 7, Some(NOT_AUTHORIZED_V5))[..], &[0x40, 4, 0, 7, 0x87, 0]);
        assert_eq!(ack_reason(&ack(PUBREC, 7, Some(NOT_AUTHORIZED_V5))), 0x87);
        assert_eq!(ack_reason(&ack(PUBREC, 7, None)), 0);
        assert_eq!(&suback(Version::V5, 9, &[1, 0x87])[..], &[0x90, 5, 0, 9, 0, 1, 0x87]);
        assert_eq!(&suback(Version::V4, 3, &[0x80])[..], &[0x90, 3, 0, 3, 0x80]);
        assert_eq!(&unsuback(Version::V4, 3, 2)[..], &[0xb0, 2, 0, 3]);
        assert_eq!(&unsuback(Version::V5, 3, 2)[..], &[0xb0, 5, 0, 3, 0, 0, 0]);
        assert_eq!(&connack_refused(Version::V4, Refusal::BadCredentials)[..], &[0x20, 2, 0, 4]);
        assert_eq!(connack_ok(Version::V4, None, 1024).ok().as_deref(), Some(&[0x20u8, 2, 0, 0][..]));
        assert!(disconnect_with_will(&[0xe0, 1, 0x04]) && !disconnect_with_will(&[0xe0, 0]));
    }
}
