//! One throughput publisher: QoS 1 PUBLISHes with at most `WINDOW` unacknowledged, written in
//! batches as window slots free up (like a real client), PUBACKs counted by a reader task.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::sync::{watch, Semaphore};

use crate::mqtt::{self, encode, fill, try_parse, write_flush, Conn, PAYLOAD_HEADER};
use crate::throughput::{deadline_reached, Shared};
use crate::tls::Stream;

/// QoS 1 messages in flight per publisher.
pub const WINDOW: usize = 100;
/// A publisher with messages in flight gives up after this long without a PUBACK.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// What one publisher sends.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: usize,
    pub topic: String,
    pub count: u64,
    pub payload: usize,
}

/// Publishes `plan.count` messages (or until the deadline) and waits for their PUBACKs.
pub async fn run(conn: Conn, plan: Plan, shared: Arc<Shared>) -> Result<()> {
    let Conn { stream, buf } = conn;
    let (reader, mut writer) = tokio::io::split(stream);
    let window = Arc::new(Semaphore::new(WINDOW));
    let (sent_tx, sent_rx) = watch::channel(None);
    let acker = tokio::spawn(count_acks(reader, buf, Arc::clone(&window), sent_rx, Arc::clone(&shared)));
    let (sent, send_result) = send_all(&mut writer, &plan, &window, &shared).await;
    sent_tx.send_replace(Some(sent));
    let ack_result = acker.await.map_err(|e| anyhow!("PUBACK reader task: {e}"))?;
    // Best effort: the counts are already taken.
    let _ = mqtt::send(&mut writer, &Packet::Disconnect).await;
    let _ = writer.shutdown().await;
    let who = format!("load-pub-{} ({sent} of {} sent)", plan.id, plan.count);
    send_result.and(ack_result).context(who)
}

/// Writes the PUBLISHes; returns how many were written and how writing ended.
async fn send_all<W: AsyncWrite + Unpin>(
    writer: &mut W,
    plan: &Plan,
    window: &Semaphore,
    shared: &Shared,
) -> (u64, Result<()>) {
    let mut sent = 0u64;
    let mut pkid = 0u16;
    let mut out = BytesMut::with_capacity(WINDOW * (plan.payload + plan.topic.len() + 8));
    while sent < plan.count && !shared.past_deadline() {
        let batch = tokio::select! {
            biased;
            slots = take_slots(window, plan.count - sent) => slots,
            () = deadline_reached(shared.deadline) => break,
        };
        let Some(batch) = batch else {
            // The reader closes the window when it ends: at the deadline, or on an error.
            if shared.past_deadline() {
                break;
            }
            return (sent, Err(anyhow!("connection lost (PUBACK reader ended)")));
        };
        let now = shared.now_ns();
        shared.first_publish_ns.fetch_min(now, Ordering::Relaxed);
        out.clear();
        for seq in sent..sent + batch {
            pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
            let mut publish =
                Publish::from_bytes(plan.topic.as_str(), QoS::AtLeastOnce, payload(plan.payload, now, seq));
            publish.pkid = pkid;
            if let Err(e) = encode(&Packet::Publish(publish), &mut out) {
                return (sent, Err(e));
            }
        }
        if let Err(e) = write_flush(writer, &out).await {
            return (sent, Err(e));
        }
        sent += batch;
        shared.published.fetch_add(batch, Ordering::Relaxed);
    }
    (sent, Ok(()))
}

/// Waits for one free window slot, then takes all the others that are free (up to `max`).
/// `None` when the window was closed (the reader ended).
async fn take_slots(window: &Semaphore, max: u64) -> Option<u64> {
    window.acquire().await.ok()?.forget();
    let extra = (window.available_permits() as u64).min(max - 1);
    let extra_permits = u32::try_from(extra).ok().and_then(|n| window.try_acquire_many(n).ok());
    match extra_permits {
        Some(permits) if extra > 0 => {
            permits.forget();
            Some(1 + extra)
        }
        _ => Some(1),
    }
}

/// `len` bytes: send time (ns, big endian), sequence number, zero padding.
fn payload(len: usize, now_ns: u64, seq: u64) -> Bytes {
    let mut p = BytesMut::with_capacity(len);
    p.put_u64(now_ns);
    p.put_u64(seq);
    p.resize(len.max(PAYLOAD_HEADER), 0);
    p.freeze()
}

/// Counts PUBACKs, freeing one window slot each, until all written messages are acknowledged;
/// closes the window when it ends so that the writer stops too.
async fn count_acks(
    mut reader: ReadHalf<Stream>,
    mut buf: BytesMut,
    window: Arc<Semaphore>,
    mut sent: watch::Receiver<Option<u64>>,
    shared: Arc<Shared>,
) -> Result<()> {
    let mut acked = 0u64;
    let result = async {
        loop {
            while let Some(packet) = try_parse(&mut buf)? {
                if let Packet::PubAck(_) = packet {
                    acked += 1;
                    shared.acked.fetch_add(1, Ordering::Relaxed);
                    window.add_permits(1);
                }
            }
            if sent.borrow().is_some_and(|total| acked >= total) {
                return Ok(());
            }
            let final_known = sent.borrow().is_some();
            tokio::select! {
                biased;
                r = fill(&mut reader, &mut buf) => r?,
                _ = sent.changed(), if !final_known => {}
                () = tokio::time::sleep(ACK_TIMEOUT) => bail!("no PUBACK for {ACK_TIMEOUT:?} ({acked} acked)"),
                () = deadline_reached(shared.deadline) => return Ok(()),
            }
        }
    }
    .await;
    window.close();
    result
}
