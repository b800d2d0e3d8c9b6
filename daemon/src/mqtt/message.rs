//! A published message as the router holds it: topic, payload, QoS, retain
//! and the raw MQTT 5 properties, independent of the protocol version it
//! came in, and encoded again for each subscriber's version.

use bytes::{BufMut as _, Bytes, BytesMut};

use super::codec::{get_len, put_len, Version, PUBLISH};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 PUBLISH properties as sent (empty for 3.1.1 senders).
    pub props: Bytes,
}

impl Message {
    /// Splits a PUBLISH frame (already validated by the codec) without
    /// copying the payload.
    pub fn from_frame(v: Version, frame: &Bytes) -> Option<Self> {
        let flags = frame.first()? & 0x0f;
        let (len, used) = get_len(frame, 1)?;
        let body = frame.slice(1 + used..(1 + used + len).min(frame.len()));
        let tlen = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
        let qos = (flags >> 1) & 3;
        let mut at = 2 + tlen + if qos > 0 { 2 } else { 0 };
        let topic = body.slice(2..(2 + tlen).min(body.len()));
        let props = if v == Version::V5 {
            let (plen, pused) = get_len(&body, at)?;
            let p = body.slice((at + pused).min(body.len())..(at + pused + plen).min(body.len()));
            at += pused + plen;
            p
        } else {
            Bytes::new()
        };
        let payload = body.slice(at.min(body.len())..);
        Some(Message { topic, payload, qos, retain: flags & 1 == 1, props })
    }

    /// The topic as text (the codec checked it is UTF-8).
    pub fn topic_str(&self) -> &str {
        std::str::from_utf8(&self.topic).unwrap_or("")
    }

    /// The PUBLISH frame for a subscriber of version `v` at `qos` with the
    /// `retain` flag; for QoS 1/2 a packet id slot (0) whose offset is
    /// returned (the queue fills it in).
    pub fn encode(&self, v: Version, qos: u8, retain: bool) -> (Bytes, usize) {
        let mut props = BytesMut::new();
        if v == Version::V5 {
            put_len(&mut props, self.props.len());
            props.extend_from_slice(&self.props);
        }
        let id_len = if qos > 0 { 2 } else { 0 };
        let len = 2 + self.topic.len() + id_len + props.len() + self.payload.len();
        let mut out = BytesMut::with_capacity(len + 5);
        out.put_u8(PUBLISH << 4 | (qos & 3) << 1 | u8::from(retain));
        put_len(&mut out, len);
        out.put_u16(self.topic.len() as u16);
        out.extend_from_slice(&self.topic);
        let at = out.len();
        if qos > 0 {
            out.put_u16(0);
        }
        out.extend_from_slice(&props);
        out.extend_from_slice(&self.payload);
        (out.freeze(), if qos > 0 { at } else { 0 })
    }
}

#[cfg(test)]
#[allow(clippy::panic)] // a failing test panics
mod tests {
    use super::*;

    #[test]
    fn round_trips_between_versions() {
        // v5 QoS 1, retain, topic "a/b", pkid 9, one property (payload format 1).
        let v5 = Bytes::from_static(&[0x33, 11, 0, 3, b'a', b'/', b'b', 0, 9, 2, 1, 1, b'x']);
        let Some(m) = Message::from_frame(Version::V5, &v5) else { panic!("split") };
        assert_eq!(
            (m.topic_str(), m.qos, m.retain, &m.props[..], &m.payload[..]),
            ("a/b", 1, true, &[1u8, 1][..], &b"x"[..])
        );
        let (v4, at) = m.encode(Version::V4, 1, false);
        assert_eq!((&v4[..], at), (&[0x32u8, 8, 0, 3, b'a', b'/', b'b', 0, 0, b'x'][..], 7));
        let (again, at5) = m.encode(Version::V5, 1, true);
        assert_eq!((&again[..], at5), (&[0x33u8, 11, 0, 3, b'a', b'/', b'b', 0, 0, 2, 1, 1, b'x'][..], 7));
        let (q0, at0) = m.encode(Version::V4, 0, false);
        assert_eq!((&q0[..], at0), (&[0x30u8, 6, 0, 3, b'a', b'/', b'b', b'x'][..], 0));
    }
}
