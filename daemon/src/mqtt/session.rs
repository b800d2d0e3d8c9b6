//! One device connection, end to end: CONNECT (within the handshake
//! timeout), admission, the session on the embedded broker, then two pumps.
//!
//! device → broker: PUBLISH and SUBSCRIBE are checked against the device's
//! permissions (read fresh from the current view, so a reload applies at
//! once); a denied PUBLISH is acknowledged and dropped (v5: reason "not
//! authorized"), a denied filter gets a failure code in the SUBACK while the
//! rest of the SUBSCRIBE goes on. broker → device: every message is taken
//! from the broker at once (acknowledged there) into the device's bounded
//! queue, and moat delivers it with its own packet ids; a message the queue
//! cannot hold is dropped and counted. So the broker never stalls on, or
//! silently skips ahead of, a slow subscriber: every acknowledged message is
//! delivered or counted.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use moat_policy::mqtt::{filter_matches, may_publish, may_subscribe};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpStream,
};
use tracing::{debug, info, warn};

use super::{
    admit::{admit, Admitted, Listener},
    codec::{self as c, CodecError, Connect, Version},
    queue::{Msg, Outbox, Pushed},
    stats::{add, dec, inc, DeviceCounters},
    Front,
};

/// Largest single write toward a device or the broker.
const WRITE_BATCH: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    #[test]
    fn broker_ids_are_per_device_and_escaped() {
        assert_eq!(super::broker_client_id("cam", "c1"), "cam:c1");
        assert_eq!(super::broker_client_id("a:b", "x/y#"), "a%3Ab:x%2Fy%23");
        assert_ne!(super::broker_client_id("a", "b:c"), super::broker_client_id("a:b", "c"));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("timed out waiting for CONNECT")]
    Timeout,
    #[error("connection closed")]
    Closed,
}

/// Reads one whole frame (at most `max` bytes of body).
pub async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<BytesMut, SessionError> {
    loop {
        if let Some(len) = c::frame_len(buf, max)? {
            return Ok(buf.split_to(len));
        }
        if rd.read_buf(buf).await? == 0 {
            return Err(SessionError::Closed);
        }
    }
}

/// Serves one device connection (TLS already done, or plaintext).
pub async fn serve<S>(
    front: Arc<Front>,
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    cert: Option<String>,
    listener: Listener,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let settings = front.view().settings.clone();
    let max = settings.max_packet_size as usize;
    let mut buf = BytesMut::with_capacity(512);
    let limit = Duration::from_millis(u64::from(settings.handshake_timeout_ms));
    let first = match tokio::time::timeout(limit, read_frame(&mut rd, &mut buf, max)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return debug!(%peer, error = %e, "no CONNECT"),
        Err(_) => return inc(&front.stats.handshake_timeouts),
    };
    if c::kind(&first) != c::CONNECT {
        return debug!(%peer, "first packet is not CONNECT");
    }
    let connect = match Connect::parse(first, max) {
        Ok(cn) => cn,
        Err(e) => {
            if matches!(e, CodecError::Protocol(_)) {
                // CONNACK 1: unacceptable protocol version (MQTT 3.1 and older).
                let _ = wr.write_all(&[c::CONNACK << 4, 2, 0, 1]).await;
            }
            return debug!(%peer, error = %e, "bad CONNECT");
        }
    };
    let version = connect.version();
    let admitted = match admit(&front, &connect, peer, local, cert.as_deref(), listener).await {
        Ok(a) => a,
        Err((why, _)) => {
            let _ = wr.write_all(&c::connack_refused(version, why)).await;
            let _ = wr.shutdown().await;
            return;
        }
    };
    let counters = admitted.counters.clone();
    inc(&counters.connections_open);
    let name = admitted.device.name.clone();
    match run(&front, connect, admitted, rd, wr, buf).await {
        Ok(()) | Err(SessionError::Closed) => debug!(device = %name, %peer, "MQTT session ended"),
        Err(SessionError::Codec(e)) => {
            inc(&counters.malformed);
            info!(device = %name, %peer, error = %e, "MQTT client disconnected: bad packet");
        }
        Err(e) => debug!(device = %name, %peer, error = %e, "MQTT session ended"),
    }
    dec(&counters.connections_open);
}

/// Connects the session to the broker and runs the pumps until either side ends.
async fn run<R, W>(
    front: &Front,
    connect: Connect,
    a: Admitted,
    rd: R,
    mut wr: W,
    buf: BytesMut,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let version = connect.version();
    let receive_max = connect.receive_maximum();
    let client_id = connect.client_id().to_string();
    let assigned = client_id.is_empty().then(|| format!("moat-{:016x}", rand_u64()));
    let own_id = assigned.clone().unwrap_or_else(|| client_id.clone());
    // Sessions on the broker are per device: one device can neither take
    // over nor read another's session by choosing its client id.
    let broker_id = broker_client_id(&a.device.name, &own_id);
    let addr = match version {
        Version::V4 => front.broker.v4,
        Version::V5 => front.broker.v5,
    };
    let mut broker = TcpStream::connect(addr).await?;
    broker.set_nodelay(true)?;
    broker.write_all(&connect.rewrite(broker_id, &front.broker_user, &front.broker_pass)?).await?;
    let mut bbuf = BytesMut::with_capacity(512);
    let ack = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut broker, &mut bbuf, usize::MAX))
        .await
        .map_err(|_| SessionError::Timeout)??;
    let ack = match version {
        Version::V5 => c::rewrite_connack_v5(ack, assigned.as_deref())?,
        Version::V4 => ack.freeze(),
    };
    wr.write_all(&ack).await?;
    if c::connack_code(&ack) != Some(0) {
        return Ok(());
    }
    info!(device = %a.device.name, client = %own_id, "MQTT session open");
    let settings = front.view().settings.clone();
    let s = Arc::new(Shared {
        version,
        device: a.device.name.clone(),
        client_id: own_id,
        counters: a.counters.clone(),
        outbox: Outbox::new(settings.queue_messages, settings.queue_bytes, settings.overflow, receive_max),
        pending_subacks: Mutex::new(HashMap::new()),
        subs: Mutex::new(Vec::new()),
        max: settings.max_packet_size as usize,
    });
    let (brd, bwr) = broker.into_split();
    let to_broker = Arc::new(tokio::sync::Mutex::new(bwr));
    let d2b = device_to_broker(front, &s, rd, buf, to_broker.clone());
    let b2d = broker_to_device(front, &s, brd, bbuf, to_broker);
    let wd = write_device(&s, wr);
    tokio::pin!(d2b, b2d, wd);
    let result = tokio::select! {
        // The device is gone: everything it sent is already at the broker.
        r = &mut d2b => r,
        // The broker ended the session: let the device have what is queued.
        r = &mut b2d => {
            s.outbox.finish();
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut wd).await;
            r
        }
        r = &mut wd => r,
    };
    add(&s.counters.dropped_on_close, s.outbox.close());
    result
}

/// The broker socket's write half, shared by both pumps (frames from the
/// device, and acks moat sends for it).
type BrokerTx = Arc<tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>>;

async fn send(to: &BrokerTx, bytes: &[u8]) -> Result<(), SessionError> {
    to.lock().await.write_all(bytes).await?;
    Ok(())
}

/// One filter's answer in a SUBACK.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Refused by moat with this code.
    Denied(u8),
    /// Sent on at QoS 0; the device gets this QoS if the broker accepts.
    Granted(u8),
}

/// State both pumps share.
#[derive(Debug)]
struct Shared {
    version: Version,
    device: String,
    client_id: String,
    counters: Arc<DeviceCounters>,
    outbox: Outbox,
    /// SUBSCRIBEs sent on to the broker: per packet id, what to answer for
    /// each of the device's filters.
    pending_subacks: Mutex<HashMap<u16, Vec<Slot>>>,
    /// The device's subscriptions (filter, granted QoS): the QoS each
    /// message is delivered at.
    subs: Mutex<Vec<(String, u8)>>,
    max: usize,
}

impl Shared {
    fn denied_code(&self) -> u8 {
        match self.version {
            Version::V4 => 0x80,
            Version::V5 => c::NOT_AUTHORIZED_V5,
        }
    }
}

async fn device_to_broker<R: AsyncRead + Unpin>(
    front: &Front,
    s: &Shared,
    mut rd: R,
    mut buf: BytesMut,
    to_broker: BrokerTx,
) -> Result<(), SessionError> {
    // v3.1.1 QoS 2 publishes moat refused: their PUBREL is answered here.
    let mut refused_qos2: HashSet<u16> = HashSet::new();
    // Buffers start small and grow with traffic: idle connections stay cheap.
    let mut out = BytesMut::new();
    loop {
        // Every complete frame read so far goes to the broker in one write.
        while let Some(len) = c::frame_len(&buf, s.max)? {
            let frame = buf.split_to(len);
            let forward = match c::kind(&frame) {
                c::PUBLISH => on_publish(front, s, frame, &mut refused_qos2)?,
                c::SUBSCRIBE => on_subscribe(front, s, frame)?,
                c::UNSUBSCRIBE => {
                    let raw = frame.clone().freeze();
                    let gone = c::unsubscribe_filters(s.version, frame, s.max)?;
                    lock(&s.subs).retain(|(f, _)| !gone.contains(f));
                    Some(raw)
                }
                c::PUBREL if c::ack_pkid(&frame).is_some_and(|id| refused_qos2.remove(&id)) => {
                    // v5: 0x92 "packet identifier not found" (the exchange ended at the refusal).
                    let reason = (s.version == Version::V5).then_some(c::PKID_NOT_FOUND_V5);
                    s.outbox.control(c::ack(c::PUBCOMP, c::ack_pkid(&frame).unwrap_or(0), reason));
                    None
                }
                // Deliveries to the device are moat's (see queue.rs): their acks end here.
                c::PUBACK | c::PUBCOMP => {
                    s.outbox.acked(c::ack_pkid(&frame).unwrap_or(0));
                    None
                }
                c::PUBREC => {
                    s.outbox.control(c::ack(c::PUBREL, c::ack_pkid(&frame).unwrap_or(0), None));
                    None
                }
                c::CONNECT => return Err(CodecError::Protocol("second CONNECT").into()),
                _ => Some(frame.freeze()),
            };
            if let Some(f) = forward {
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

fn on_publish(
    front: &Front,
    s: &Shared,
    frame: BytesMut,
    refused_qos2: &mut HashSet<u16>,
) -> Result<Option<Bytes>, SessionError> {
    let raw = frame.clone().freeze();
    let info = c::publish_info(s.version, frame, s.max)?;
    let view = front.view();
    let allowed = view
        .by_name(&s.device)
        .and_then(|d| d.acl.as_ref())
        .is_some_and(|acl| may_publish(&acl.publish, &info.topic, &s.device, &s.client_id));
    if allowed {
        inc(&s.counters.published);
        return Ok(Some(raw));
    }
    inc(&s.counters.publish_denied);
    if front.stats.may_log_drop() {
        warn!(device = %s.device, topic = %info.topic, "MQTT publish outside the device's permissions; dropped");
    }
    let reason = (s.version == Version::V5).then_some(c::NOT_AUTHORIZED_V5);
    match info.qos {
        1 => s.outbox.control(c::ack(c::PUBACK, info.pkid, reason)),
        2 => {
            s.outbox.control(c::ack(c::PUBREC, info.pkid, reason));
            // v3.1.1 goes on to PUBREL. In v5 a failure PUBREC ends the
            // exchange, but some clients (paho) send PUBREL anyway: it is
            // answered here, never passed to the broker, which would drop
            // the session over an unknown packet id.
            refused_qos2.insert(info.pkid);
        }
        _ => {}
    }
    Ok(None)
}

fn on_subscribe(front: &Front, s: &Shared, frame: BytesMut) -> Result<Option<Bytes>, SessionError> {
    let sub = c::Subscribe::parse(s.version, frame, s.max)?;
    let view = front.view();
    let acl = view.by_name(&s.device).and_then(|d| d.acl.as_ref());
    let filters = sub.filters();
    let keep: Vec<bool> = filters
        .iter()
        .map(|(f, _)| acl.is_some_and(|a| may_subscribe(&a.subscribe, f, &s.device, &s.client_id)))
        .collect();
    let slots: Vec<Slot> = keep
        .iter()
        .zip(&filters)
        .map(|(k, (_, q))| if *k { Slot::Granted((*q).min(2)) } else { Slot::Denied(s.denied_code()) })
        .collect();
    let denied = keep.iter().filter(|k| !**k).count() as u64;
    if denied > 0 {
        add(&s.counters.subscribe_denied, denied);
        if front.stats.may_log_drop() {
            let names: Vec<&str> = filters.iter().map(|(f, _)| f.as_str()).collect();
            warn!(device = %s.device, filters = ?names, "MQTT subscription outside the device's permissions; refused");
        }
    }
    if keep.iter().all(|k| !k) {
        let codes: Vec<u8> = slots.iter().map(|sl| if let Slot::Denied(c) = sl { *c } else { 0x80 }).collect();
        s.outbox.control(c::suback(s.version, sub.pkid(), &codes));
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The QoS a message on `topic` goes to the device at: the highest granted
/// among its matching subscriptions (MQTT 3.3.5: one delivery per message).
fn delivery_qos(s: &Shared, topic: &str) -> u8 {
    lock(&s.subs).iter().filter(|(f, _)| filter_matches(f, topic)).map(|(_, q)| *q).max().unwrap_or(0)
}

async fn broker_to_device<R: AsyncRead + Unpin>(
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
                    let (frame, msg) = for_device(s, frame, &mut acks)?;
                    if !queue_message(front, s, frame, msg) {
                        return Ok(());
                    }
                }
                // Second half of a QoS 2 delivery moat took: completed here.
                c::PUBREL => acks.extend_from_slice(&c::ack(c::PUBCOMP, c::ack_pkid(&frame).unwrap_or(0), None)),
                c::SUBACK => s.outbox.control(merge_suback(s, &frame).unwrap_or_else(|| frame.freeze())),
                _ => s.outbox.control(frame.freeze()),
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

/// A broker PUBLISH as the device gets it. The front subscribes at QoS 0,
/// so the broker streams messages without waiting on acks (rumqttd keeps
/// at most 100 QoS 1 messages in flight per client and skips ahead when a
/// subscriber lags behind its log); the message goes to the device at its
/// subscription's granted QoS (as rumqttd itself delivers), numbered by moat.
fn for_device(s: &Shared, frame: BytesMut, acks: &mut BytesMut) -> Result<(Bytes, Msg), SessionError> {
    let msg = c::peek_publish(&frame).ok_or(CodecError::Protocol("broker PUBLISH"))?;
    match msg.qos {
        0 => {
            let qos = c::publish_topic(&frame).map_or(0, |t| delivery_qos(s, t));
            if qos == 0 {
                return Ok((frame.freeze(), msg));
            }
            let (raised, pkid_at) = c::raise_qos(&frame, qos).ok_or(CodecError::Protocol("broker PUBLISH"))?;
            Ok((raised, Msg { qos, pkid: 0, pkid_at }))
        }
        // Not expected (moat subscribes at QoS 0); taken at once all the same.
        1 => {
            acks.extend_from_slice(&c::ack(c::PUBACK, msg.pkid, None));
            Ok((frame.freeze(), msg))
        }
        _ => {
            acks.extend_from_slice(&c::ack(c::PUBREC, msg.pkid, None));
            Ok((frame.freeze(), msg))
        }
    }
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

async fn write_device<W: AsyncWrite + Unpin>(s: &Shared, mut wr: W) -> Result<(), SessionError> {
    while let Some((batch, msgs)) = s.outbox.take(WRITE_BATCH).await {
        wr.write_all(&batch).await?;
        wr.flush().await?;
        add(&s.counters.delivered, msgs);
    }
    Ok(())
}

/// `device:client` with the characters rumqttd refuses in client ids
/// (`+ $ # /`, and `%` and `:` to stay unambiguous) escaped as `%XX`.
fn broker_client_id(device: &str, client: &str) -> String {
    let esc = |s: &str| {
        s.chars()
            .map(|ch| if "+$#/%:".contains(ch) { format!("%{:02X}", ch as u32) } else { ch.to_string() })
            .collect::<String>()
    };
    format!("{}:{}", esc(device), esc(client))
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    u64::from_le_bytes(b)
}
