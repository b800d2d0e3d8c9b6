//! Broker → device. The front subscribes at QoS 0, so the broker streams
//! messages without waiting on acks (rumqttd keeps at most 100 QoS 1
//! messages in flight per client and skips ahead, silently, when a
//! subscriber lags behind its log). Each message is taken at once into the
//! device's bounded queue, delivered at the granted QoS of the device's
//! matching subscriptions (as rumqttd itself delivers), numbered by moat.
//! A message the queue cannot hold is dropped and counted; one the device's
//! permissions no longer cover (after a reload) is dropped and counted. So
//! every message the broker acknowledged is delivered or counted.

use bytes::{Bytes, BytesMut};
use moat_policy::mqtt::filter_matches;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tracing::warn;

use super::{
    codec::{self as c, CodecError},
    queue::{Msg, Pushed},
    session::{lock, send, BrokerTx, SessionError, Shared, Slot},
    stats::{add, inc},
    Front,
};

/// Largest single write toward a device.
const WRITE_BATCH: usize = 64 * 1024;

pub async fn pump<R: AsyncRead + Unpin>(
    front: &Front,
    s: &Shared,
    mut rd: R,
    mut buf: BytesMut,
    to_broker: BrokerTx,
) -> Result<(), SessionError> {
    let mut acks = BytesMut::new();
    loop {
        while let Some(len) = c::frame_len(&buf, usize::MAX)? {
            let frame = buf.split_to(len);
            match c::kind(&frame) {
                c::PUBLISH => {
                    let Some((frame, msg)) = for_device(front, s, frame, &mut acks)? else { continue };
                    if !queue_message(front, s, frame, msg) {
                        return Ok(());
                    }
                }
                // Second half of a QoS 2 delivery moat took: completed here.
                c::PUBREL => acks.extend_from_slice(&c::ack(c::PUBCOMP, c::ack_pkid(&frame).unwrap_or(0), None)),
                c::SUBACK => s.outbox.control(merge_suback(s, &frame).unwrap_or_else(|| frame.freeze()))?,
                _ => s.outbox.control(frame.freeze())?,
            }
        }
        if !acks.is_empty() {
            send(&to_broker, &acks).await?;
            acks.clear();
        }
        if rd.read_buf(&mut buf).await? == 0 {
            return Err(SessionError::Closed);
        }
    }
}

/// The QoS a message on `topic` goes to the device at, from the device's
/// subscriptions that match it and that its permissions still allow (the
/// highest granted: MQTT 3.3.5, one delivery per message); `None` when no
/// permitted subscription matches.
fn delivery_qos(front: &Front, s: &Shared, topic: &str) -> Option<u8> {
    let view = front.view();
    lock(&s.subs).iter().filter(|(f, _)| filter_matches(f, topic) && s.may_hold(&view, f)).map(|(_, q)| *q).max()
}

/// A broker PUBLISH as the device gets it, or `None` (dropped, counted).
fn for_device(
    front: &Front,
    s: &Shared,
    frame: BytesMut,
    acks: &mut BytesMut,
) -> Result<Option<(Bytes, Msg)>, SessionError> {
    let msg = c::peek_publish(&frame).ok_or(CodecError::Protocol("broker PUBLISH"))?;
    // Not expected (moat subscribes at QoS 0); taken at once all the same.
    match msg.qos {
        1 => acks.extend_from_slice(&c::ack(c::PUBACK, msg.pkid, None)),
        2 => acks.extend_from_slice(&c::ack(c::PUBREC, msg.pkid, None)),
        _ => {}
    }
    let Some(qos) = c::publish_topic(&frame).and_then(|t| delivery_qos(front, s, t)) else {
        inc(&s.counters.dropped_not_permitted);
        return Ok(None);
    };
    if qos == 0 || msg.qos > 0 {
        return Ok(Some((frame.freeze(), msg)));
    }
    let (raised, pkid_at) = c::raise_qos(&frame, qos).ok_or(CodecError::Protocol("broker PUBLISH"))?;
    Ok(Some((raised, Msg { qos, pkid: 0, pkid_at })))
}

/// Queues a message for the device; false when the device must be
/// disconnected (overflow = disconnect). Drops are counted and logged.
fn queue_message(front: &Front, s: &Shared, frame: Bytes, msg: Msg) -> bool {
    match s.outbox.message(frame, msg) {
        Pushed::Queued => true,
        Pushed::DroppedOldest(n) => {
            add(&s.counters.dropped_queue_full, n);
            if front.stats.may_log_drop() {
                warn!(device = %s.device, dropped = n, "MQTT subscriber queue full; oldest messages dropped");
            }
            true
        }
        Pushed::Full => {
            inc(&s.counters.disconnected_slow);
            add(&s.counters.dropped_on_close, 1);
            warn!(device = %s.device, "MQTT subscriber too slow; disconnected (overflow = disconnect)");
            false
        }
    }
}

/// The broker's SUBACK with moat's answers: its refusals put back in place
/// and the device's requested QoS for what the broker accepted. `None` when
/// the packet id is not one moat sent.
fn merge_suback(s: &Shared, frame: &[u8]) -> Option<Bytes> {
    let (pkid, broker_codes) = c::suback_codes(s.version, frame)?;
    let slots = lock(&s.pending_subacks).remove(&pkid)?;
    let mut from_broker = broker_codes.into_iter();
    let merged: Vec<u8> = slots
        .iter()
        .map(|slot| match slot {
            Slot::Denied(code) => *code,
            Slot::Granted(q) => match from_broker.next() {
                Some(b) if b < 0x80 => *q,
                Some(b) => b,
                None => 0x80,
            },
        })
        .collect();
    Some(c::suback(s.version, pkid, &merged))
}

pub async fn write_device<W: AsyncWrite + Unpin>(s: &Shared, mut wr: W) -> Result<(), SessionError> {
    while let Some((batch, msgs)) = s.outbox.take(WRITE_BATCH).await {
        wr.write_all(&batch).await?;
        wr.flush().await?;
        add(&s.counters.delivered, msgs);
    }
    Ok(())
}
