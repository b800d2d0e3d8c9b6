//! Device → broker. PUBLISH and SUBSCRIBE are checked against the device's
//! permissions, read fresh from the current view (a reload applies at once).
//! A denied PUBLISH is acknowledged and dropped (v5: reason "not
//! authorized"); a denied filter gets a failure code in the SUBACK while the
//! rest of the SUBSCRIBE goes on, at QoS 0 toward the broker (outbound.rs
//! delivers at the granted QoS). The device's acks for moat's deliveries end
//! here. Publishing is paced by the device's publish rate (slowed, never
//! dropped).

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use moat_policy::mqtt::may_publish;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tracing::warn;

use super::{
    codec::{self as c, CodecError, Version},
    quota::MAX_SUBSCRIPTIONS_PER_SESSION,
    session::{lock, send, BrokerTx, SessionError, Shared, Slot},
    stats::{add, inc},
    Front,
};

/// Largest single write toward the broker.
const WRITE_BATCH: usize = 64 * 1024;
/// MQTT 5 reason code "Quota exceeded".
const QUOTA_EXCEEDED_V5: u8 = 0x97;

/// What the pump keeps between packets.
#[derive(Debug, Default)]
struct State {
    /// QoS 2 publishes moat refused: their PUBREL is answered here.
    refused_qos2: HashSet<u16>,
}

pub async fn pump<R: AsyncRead + Unpin>(
    front: &Front,
    s: &Shared,
    mut rd: R,
    mut buf: BytesMut,
    to_broker: BrokerTx,
) -> Result<(), SessionError> {
    let mut st = State::default();
    // Buffers start small and grow with traffic: idle connections stay cheap.
    let mut out = BytesMut::new();
    loop {
        // Every complete frame read so far goes to the broker in one write.
        while let Some(len) = c::frame_len(&buf, s.max)? {
            let frame = buf.split_to(len);
            if c::kind(&frame) == c::PUBLISH {
                let rate = front.view().settings.publish_rate;
                let wait = s.quota.publish_wait(rate);
                if !wait.is_zero() {
                    // Over its rate: what is batched goes first, then the device waits.
                    if !out.is_empty() {
                        send(&to_broker, &out).await?;
                        out.clear();
                    }
                    tokio::time::sleep(wait).await;
                }
            }
            if let Some(f) = on_frame(front, s, &mut st, frame)? {
                out.extend_from_slice(&f);
            }
            if out.len() >= WRITE_BATCH {
                break;
            }
        }
        if !out.is_empty() {
            send(&to_broker, &out).await?;
            out.clear();
            continue;
        }
        if rd.read_buf(&mut buf).await? == 0 {
            return Err(SessionError::Closed);
        }
    }
}

/// One frame from the device: what to forward to the broker, if anything.
fn on_frame(front: &Front, s: &Shared, st: &mut State, frame: BytesMut) -> Result<Option<Bytes>, SessionError> {
    let pkid = || c::ack_pkid(&frame).unwrap_or(0);
    Ok(match c::kind(&frame) {
        c::PUBLISH => on_publish(front, s, st, frame)?,
        c::SUBSCRIBE => on_subscribe(front, s, frame)?,
        c::UNSUBSCRIBE => {
            let raw = frame.clone().freeze();
            let gone = c::unsubscribe_filters(s.version, frame, s.max)?;
            lock(&s.subs).retain(|(f, _)| !gone.contains(f));
            Some(raw)
        }
        c::PUBREL if st.refused_qos2.remove(&pkid()) => {
            // v5: 0x92 "packet identifier not found" (the exchange ended at the refusal).
            let reason = (s.version == Version::V5).then_some(c::PKID_NOT_FOUND_V5);
            s.outbox.control(c::ack(c::PUBCOMP, pkid(), reason))?;
            None
        }
        // Deliveries to the device are moat's (see queue.rs): their acks end here.
        c::PUBACK | c::PUBCOMP => {
            s.outbox.acked(pkid());
            None
        }
        // A failure PUBREC (v5) ends the exchange; otherwise on to PUBREL.
        c::PUBREC if c::ack_reason(&frame) >= 0x80 => {
            s.outbox.acked(pkid());
            None
        }
        c::PUBREC => {
            s.outbox.control(c::ack(c::PUBREL, pkid(), None))?;
            None
        }
        c::CONNECT => return Err(CodecError::Protocol("second CONNECT").into()),
        _ => Some(frame.freeze()),
    })
}

fn on_publish(front: &Front, s: &Shared, st: &mut State, frame: BytesMut) -> Result<Option<Bytes>, SessionError> {
    let raw = frame.clone().freeze();
    let info = c::publish_info(s.version, frame, s.max)?;
    let view = front.view();
    let allowed = s.acl(&view).is_some_and(|acl| may_publish(&acl.publish, &info.topic, &s.device, &s.client_id));
    let quota_ok = !info.retain || s.quota.retain(&info.topic, info.empty);
    if allowed && quota_ok {
        inc(&s.counters.published);
        // A packet id moat refused before may be reused for an allowed publish.
        st.refused_qos2.remove(&info.pkid);
        return Ok(Some(raw));
    }
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
            // v3.1.1 goes on to PUBREL. In v5 a failure PUBREC ends the
            // exchange, but some clients (paho) send PUBREL anyway: it is
            // answered here, never passed to the broker, which would drop
            // the session over an unknown packet id.
            st.refused_qos2.insert(info.pkid);
        }
        _ => {}
    }
    Ok(None)
}

fn on_subscribe(front: &Front, s: &Shared, frame: BytesMut) -> Result<Option<Bytes>, SessionError> {
    let sub = c::Subscribe::parse(s.version, frame, s.max)?;
    if lock(&s.pending_subacks).contains_key(&sub.pkid()) {
        return Err(CodecError::Protocol("SUBSCRIBE reuses a packet id still in use").into());
    }
    let view = front.view();
    let filters = sub.filters();
    let held = lock(&s.subs).len();
    let mut slots = Vec::with_capacity(filters.len());
    for (i, (f, q)) in filters.iter().enumerate() {
        let slot = if !s.may_hold(&view, f) {
            Slot::Denied(s.denied_code())
        } else if held + i >= MAX_SUBSCRIPTIONS_PER_SESSION || !s.quota.filter(f) {
            Slot::Denied(if s.version == Version::V5 { QUOTA_EXCEEDED_V5 } else { 0x80 })
        } else {
            Slot::Granted((*q).min(2))
        };
        slots.push(slot);
    }
    let keep: Vec<bool> = slots.iter().map(|sl| matches!(sl, Slot::Granted(_))).collect();
    let denied = keep.iter().filter(|k| !**k).count() as u64;
    if denied > 0 {
        add(&s.counters.subscribe_denied, denied);
        if front.stats.may_log_drop() {
            let names: Vec<&str> = filters.iter().map(|(f, _)| f.as_str()).collect();
            warn!(device = %s.device, filters = ?names, "MQTT subscription refused (permissions or quota)");
        }
    }
    if denied as usize == filters.len() {
        let codes: Vec<u8> = slots.iter().map(|sl| if let Slot::Denied(c) = sl { *c } else { 0x80 }).collect();
        s.outbox.control(c::suback(s.version, sub.pkid(), &codes))?;
        return Ok(None);
    }
    let mut subs = lock(&s.subs);
    for ((f, q), k) in filters.iter().zip(&keep) {
        if *k {
            subs.retain(|(g, _)| g != f);
            subs.push((f.clone(), (*q).min(2)));
        }
    }
    drop(subs);
    lock(&s.pending_subacks).insert(sub.pkid(), slots);
    Ok(Some(sub.keep_at_qos0(&keep)?))
}
