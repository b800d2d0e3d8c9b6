//! Device → router. PUBLISH and SUBSCRIBE are checked against the device's
//! permissions, read fresh from the current view (a reload applies at once).
//! A denied PUBLISH is acknowledged and dropped (v5: reason "not
//! authorized"); a denied filter gets a failure code in the SUBACK while the
//! rest of the SUBSCRIBE goes on. Allowed messages go to the router; QoS 1
//! is acknowledged once routed, QoS 2 exactly once (PUBREC, PUBREL,
//! PUBCOMP). The device's acks for moat's deliveries end here. Publishing
//! is paced by the device's publish rate (slowed, never dropped); silence
//! past 1.5 × keepalive ends the session.

use std::{collections::HashSet, time::Duration};

use bytes::BytesMut;
use moat_policy::mqtt::may_publish;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tracing::warn;

use super::{
    codec::{self as c, CodecError, Version},
    lock,
    message::Message,
    quota::MAX_SUBSCRIPTIONS_PER_SESSION,
    session::{SessionError, Shared, SubEntry},
    stats::{add, inc},
    Front,
};

/// MQTT 5 reason code "Quota exceeded".
const QUOTA_EXCEEDED_V5: u8 = 0x97;
/// MQTT 5 reason code "Shared Subscriptions not supported".
const NO_SHARED_V5: u8 = 0x9e;

/// How the device left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// DISCONNECT: no will.
    Clean,
    /// Gone without DISCONNECT, or asked for its will (v5 reason 0x04).
    Gone,
}

/// What the pump keeps between packets.
#[derive(Debug, Default)]
struct State {
    /// QoS 2 publishes moat refused: their PUBREL is answered here.
    refused_qos2: HashSet<u16>,
    /// QoS 2 publishes routed, awaiting PUBREL (a resend is not routed again).
    received_qos2: HashSet<u16>,
}

pub async fn pump<R: AsyncRead + Unpin>(
    front: &Front,
    s: &Shared,
    mut rd: R,
    mut buf: BytesMut,
    keepalive: Option<Duration>,
) -> Result<End, SessionError> {
    let mut st = State::default();
    loop {
        while let Some(len) = c::frame_len(&buf, s.max)? {
            let frame = buf.split_to(len);
            if c::kind(&frame) == c::PUBLISH {
                let wait = s.quota.publish_wait(front.view().settings.publish_rate);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            if let Some(end) = on_frame(front, s, &mut st, frame)? {
                return Ok(end);
            }
        }
        let read = rd.read_buf(&mut buf);
        let n = match keepalive {
            Some(limit) => tokio::time::timeout(limit, read).await.map_err(|_| SessionError::Timeout)??,
            None => read.await?,
        };
        if n == 0 {
            return Ok(End::Gone);
        }
    }
}

/// One frame from the device; `Some` when the session ends.
fn on_frame(front: &Front, s: &Shared, st: &mut State, frame: BytesMut) -> Result<Option<End>, SessionError> {
    let pkid = c::ack_pkid(&frame).unwrap_or(0);
    match c::kind(&frame) {
        c::PUBLISH => on_publish(front, s, st, frame)?,
        c::SUBSCRIBE => on_subscribe(front, s, frame)?,
        c::UNSUBSCRIBE => {
            let gone = c::unsubscribe_filters(s.version, frame, s.max)?;
            lock(&s.subs).retain(|e| !gone.contains(&e.filter));
            s.outbox.control(c::unsuback(s.version, pkid, gone.len()))?;
        }
        c::PUBREL => {
            if st.refused_qos2.remove(&pkid) && s.version == Version::V5 {
                // The exchange ended at the refusal: "packet identifier not found".
                s.outbox.control(c::ack(c::PUBCOMP, pkid, Some(c::PKID_NOT_FOUND_V5)))?;
            } else {
                st.received_qos2.remove(&pkid);
                s.outbox.control(c::ack(c::PUBCOMP, pkid, None))?;
            }
        }
        // Deliveries to the device are moat's (see queue.rs): their acks end here.
        c::PUBACK | c::PUBCOMP => s.outbox.acked(pkid),
        // A failure PUBREC (v5) ends the exchange; otherwise on to PUBREL.
        c::PUBREC if c::ack_reason(&frame) >= 0x80 => s.outbox.acked(pkid),
        c::PUBREC => s.outbox.control(c::ack(c::PUBREL, pkid, None))?,
        c::PINGREQ => s.outbox.control(bytes::Bytes::from_static(c::PINGRESP))?,
        c::DISCONNECT => {
            let will = s.version == Version::V5 && c::disconnect_with_will(&frame);
            return Ok(Some(if will { End::Gone } else { End::Clean }));
        }
        _ => return Err(CodecError::Protocol("packet a client may not send").into()),
    }
    Ok(None)
}

fn on_publish(front: &Front, s: &Shared, st: &mut State, frame: BytesMut) -> Result<(), SessionError> {
    let raw = frame.clone().freeze();
    let info = c::publish_info(s.version, frame, s.max)?;
    let view = front.view();
    let allowed = s.acl(&view).is_some_and(|acl| may_publish(&acl.publish, &info.topic, &s.device, &s.client_id));
    let quota_ok = !info.retain || s.quota.retain(&info.topic, info.empty);
    if !(allowed && quota_ok) {
        return refuse_publish(front, s, st, &info, allowed);
    }
    inc(&s.counters.published);
    st.refused_qos2.remove(&info.pkid);
    let duplicate = info.qos == 2 && !st.received_qos2.insert(info.pkid);
    if !duplicate {
        let msg = Message::from_frame(s.version, &raw).ok_or(CodecError::Protocol("PUBLISH"))?;
        front.router.publish(front, &msg, s.id);
    }
    match info.qos {
        1 => s.outbox.control(c::ack(c::PUBACK, info.pkid, None))?,
        2 => s.outbox.control(c::ack(c::PUBREC, info.pkid, None))?,
        _ => {}
    }
    Ok(())
}

fn refuse_publish(
    front: &Front,
    s: &Shared,
    st: &mut State,
    info: &c::PublishInfo,
    allowed: bool,
) -> Result<(), SessionError> {
    inc(&s.counters.publish_denied);
    if front.stats.may_log_drop() {
        let why = if allowed { "retained-topic quota reached" } else { "outside the device's permissions" };
        warn!(device = %s.device, topic = %info.topic, why, "MQTT publish dropped");
    }
    let reason = (s.version == Version::V5).then_some(if allowed { QUOTA_EXCEEDED_V5 } else { c::NOT_AUTHORIZED_V5 });
    match info.qos {
        1 => s.outbox.control(c::ack(c::PUBACK, info.pkid, reason))?,
        2 => {
            s.outbox.control(c::ack(c::PUBREC, info.pkid, reason))?;
            // v3.1.1 goes on to PUBREL; some v5 clients (paho) send one anyway.
            st.refused_qos2.insert(info.pkid);
        }
        _ => {}
    }
    Ok(())
}

fn on_subscribe(front: &Front, s: &Shared, frame: BytesMut) -> Result<(), SessionError> {
    let sub = c::Subscribe::parse(s.version, frame, s.max)?;
    let view = front.view();
    let (filters, options) = (sub.filters(), sub.options());
    let mut codes = Vec::with_capacity(filters.len());
    let mut granted = Vec::new();
    for ((f, q), o) in filters.iter().zip(&options) {
        let held = lock(&s.subs).len();
        let known = lock(&s.subs).iter().any(|e| &e.filter == f);
        let code = if f.starts_with("$share/") {
            if s.version == Version::V5 {
                NO_SHARED_V5
            } else {
                0x80
            }
        } else if !s.may_hold(&view, f) {
            s.denied_code()
        } else if (!known && held >= MAX_SUBSCRIPTIONS_PER_SESSION) || !s.quota.filter(f) {
            if s.version == Version::V5 {
                QUOTA_EXCEEDED_V5
            } else {
                0x80
            }
        } else {
            let qos = (*q).min(2);
            let mut subs = lock(&s.subs);
            subs.retain(|e| &e.filter != f);
            subs.push(SubEntry { filter: f.clone(), qos, options: *o });
            granted.push((f.clone(), qos, o.retain_handling == 0 || (o.retain_handling == 1 && !known)));
            qos
        };
        codes.push(code);
    }
    let denied = codes.iter().filter(|c| **c >= 0x80).count() as u64;
    if denied > 0 {
        add(&s.counters.subscribe_denied, denied);
        if front.stats.may_log_drop() {
            let names: Vec<&str> = filters.iter().map(|(f, _)| f.as_str()).collect();
            warn!(device = %s.device, filters = ?names, "MQTT subscription refused (permissions or quota)");
        }
    }
    // SUBACK first (control frames go ahead of messages), then retained messages.
    s.outbox.control(c::suback(s.version, sub.pkid(), &codes))?;
    for (f, qos, send) in granted {
        if send {
            front.router.send_retained(front, s, &f, qos);
        }
    }
    Ok(())
}
