//! MQTT on the wire: framing, and decoding of what a device sends (CONNECT,
//! PUBLISH, SUBSCRIBE, UNSUBSCRIBE) with rumqttc's codec, 3.1.1 and 5.0. The
//! frames moat writes itself are in `frames.rs` (re-exported here).

use bytes::{Bytes, BytesMut};

pub use super::frames::*;
use rumqttc::mqttbytes::{self as m, v4};
use rumqttc::v5::mqttbytes::v5;

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

/// A decoded CONNECT.
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

    /// The will, as a message to publish if the connection ends without a
    /// clean DISCONNECT (its MQTT 5 properties are not carried).
    pub fn will(&self) -> Option<crate::mqtt::message::Message> {
        let (topic, payload, qos, retain) = match self {
            Connect::V4(c) => c
                .last_will
                .as_ref()
                .map(|w| (Bytes::from(w.topic.clone()), w.message.clone(), w.qos as u8, w.retain))?,
            Connect::V5(_, w, _) => w.as_ref().map(|w| (w.topic.clone(), w.message.clone(), w.qos as u8, w.retain))?,
        };
        Some(crate::mqtt::message::Message { topic, payload, qos, retain, props: Bytes::new() })
    }

    /// Seconds of silence after which the client is gone (1.5 × keepalive;
    /// `None`: keepalive off).
    pub fn keepalive_limit(&self) -> Option<std::time::Duration> {
        let k = match self {
            Connect::V4(c) => c.keep_alive,
            Connect::V5(c, ..) => c.keep_alive,
        };
        (k > 0).then(|| std::time::Duration::from_millis(u64::from(k) * 1500))
    }
}

/// MQTT 5 subscription options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubOptions {
    /// Do not send the subscriber its own messages.
    pub no_local: bool,
    /// Keep the retain flag of messages as published.
    pub retain_as_published: bool,
    /// 0: send retained messages on subscribe; 1: only for a new
    /// subscription; 2: never.
    pub retain_handling: u8,
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadCredentials,
    NotAuthorized,
    RateExceeded,
    Busy,
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

    /// Each entry's MQTT 5 options (3.1.1: the defaults).
    pub fn options(&self) -> Vec<SubOptions> {
        match self {
            Subscribe::V4(s) => s.filters.iter().map(|_| SubOptions::default()).collect(),
            Subscribe::V5(s) => s
                .filters
                .iter()
                .map(|f| SubOptions {
                    no_local: f.nolocal,
                    retain_as_published: f.preserve_retain,
                    retain_handling: match f.retain_forward_rule {
                        v5::RetainForwardRule::OnEverySubscribe => 0,
                        v5::RetainForwardRule::OnNewSubscribe => 1,
                        v5::RetainForwardRule::Never => 2,
                    },
                })
                .collect(),
        }
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
    fn connect_fields_will_and_keepalive() {
        let f = connect_v4("cam-1", "cam", "secret");
        assert_eq!(frame_len(&f, 1024).ok().flatten(), Some(f.len()));
        let Ok(c) = Connect::parse(f, 1024) else { panic!("parse") };
        assert_eq!((c.version(), c.client_id(), c.login()), (Version::V4, "cam-1", Some(("cam", "secret"))));
        assert_eq!(
            (c.will(), c.keepalive_limit()),
            (None, Some(std::time::Duration::from_secs(15))),
            "1.5 x keepalive 10"
        );
        let mut w = v4::Connect::new("x");
        w.last_will = Some(v4::LastWill::new("dev/status", "offline", m::QoS::AtLeastOnce, true));
        let mut out = BytesMut::new();
        let _ = v4::Packet::Connect(w).write(&mut out, usize::MAX);
        let Ok(c) = Connect::parse(out, 1024) else { panic!("parse will") };
        let Some(will) = c.will() else { panic!("no will") };
        assert_eq!(
            (will.topic_str(), &will.payload[..], will.qos, will.retain),
            ("dev/status", &b"offline"[..], 1, true)
        );
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
    fn publish_fields() {
        let mut p = BytesMut::new();
        let mut publish = v4::Publish::new("a/b", m::QoS::AtLeastOnce, vec![1u8, 2]);
        publish.pkid = 5;
        let _ = v4::Packet::Publish(publish).write(&mut p, usize::MAX);
        let Ok(info) = publish_info(Version::V4, p, 1024) else { panic!("publish") };
        assert_eq!((info.topic.as_str(), info.qos, info.pkid, info.retain, info.empty), ("a/b", 1, 5, false, false));
    }
}
