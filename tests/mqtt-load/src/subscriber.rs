//! The throughput subscriber: PUBACKs every QoS 1 message, records publish-to-delivery latency
//! from the payload timestamp, and optionally reads slowly (`--slow-ms`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Packet, PubAck, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::mqtt::{self, encode, fill, try_parse, write_flush, Conn};
use crate::throughput::Shared;
use crate::tls::Stream;

/// Once the publishers are done, stop after this long without a message.
const IDLE_STOP: Duration = Duration::from_secs(3);
/// How often the stop condition is looked at while nothing arrives.
const POLL: Duration = Duration::from_millis(100);

/// What the subscriber saw.
#[derive(Debug, Default)]
pub struct Report {
    pub delivered: u64,
    pub latencies_ns: Vec<u64>,
    /// Last delivery, ns since the shared time zero.
    pub last_delivery_ns: Option<u64>,
}

/// Receives until [`finished`]; `done` turns into the published count once all publishers
/// are done. A broken connection ends the run early, keeping what was counted.
pub async fn receive(
    conn: Conn,
    shared: Arc<Shared>,
    done: watch::Receiver<Option<u64>>,
    slow: Duration,
    expected: usize,
) -> Report {
    let Conn { mut stream, mut buf } = conn;
    let mut report = Report { latencies_ns: Vec::with_capacity(expected.min(1 << 24)), ..Report::default() };
    if let Err(e) = receive_loop(&mut stream, &mut buf, &mut report, &shared, &done, slow).await {
        eprintln!("subscriber: {e:#}");
    }
    // Best effort: the counts are already taken.
    let _ = mqtt::send(&mut stream, &Packet::Disconnect).await;
    let _ = stream.shutdown().await;
    report
}

async fn receive_loop(
    stream: &mut Stream,
    buf: &mut BytesMut,
    report: &mut Report,
    shared: &Shared,
    done: &watch::Receiver<Option<u64>>,
    slow: Duration,
) -> Result<()> {
    let mut acks = BytesMut::new();
    let mut last_message = Instant::now();
    loop {
        while let Some(packet) = try_parse(buf)? {
            let Packet::Publish(publish) = packet else { continue };
            record(&publish, shared, report);
            last_message = Instant::now();
            if publish.qos == QoS::AtLeastOnce {
                encode(&Packet::PubAck(PubAck::new(publish.pkid)), &mut acks)?;
            }
            if !slow.is_zero() {
                flush_acks(stream, &mut acks).await?;
                tokio::time::sleep(slow).await;
            }
        }
        flush_acks(stream, &mut acks).await?;
        if finished(report, last_message, shared, done) {
            return Ok(());
        }
        tokio::select! {
            biased;
            r = fill(stream, buf) => r?,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn flush_acks(stream: &mut Stream, acks: &mut BytesMut) -> Result<()> {
    if !acks.is_empty() {
        write_flush(stream, acks).await?;
        acks.clear();
    }
    Ok(())
}

fn record(publish: &Publish, shared: &Shared, report: &mut Report) {
    let now = shared.now_ns();
    report.delivered += 1;
    report.last_delivery_ns = Some(now);
    if let Some(sent) = publish.payload.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
        report.latencies_ns.push(now.saturating_sub(u64::from_be_bytes(sent)));
    }
}

/// Past the deadline, or all publishers done and everything (or nothing for `IDLE_STOP`) came.
fn finished(report: &Report, last_message: Instant, shared: &Shared, done: &watch::Receiver<Option<u64>>) -> bool {
    if shared.past_deadline() {
        return true;
    }
    match *done.borrow() {
        None => false,
        Some(published) => report.delivered >= published || last_message.elapsed() >= IDLE_STOP,
    }
}
