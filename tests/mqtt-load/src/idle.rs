//! `idle`: open N TLS MQTT connections (a bounded number of handshakes at a time), keep them
//! alive with PINGREQs for the hold time, print `{"connected": n, "failed": n}`, disconnect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rumqttc::mqttbytes::v4::Packet;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::mqtt::{fill, load_creds, try_parse, Conn, Login};
use crate::throughput::KEEP_ALIVE;
use crate::tls::Endpoint;
use crate::IdleOpts;

/// TLS handshakes in progress at once.
const CONNECT_CONCURRENCY: usize = 32;
/// PINGREQ interval (half the keepalive).
const PING_EVERY: Duration = Duration::from_secs(30);
/// Connect errors printed in full; the rest are only counted.
const ERRORS_SHOWN: u64 = 5;
/// Time allowed for the DISCONNECTs at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Counts {
    /// Connected and not dropped since.
    alive: AtomicU64,
    connect_failed: AtomicU64,
    dropped: AtomicU64,
}

pub async fn run(opts: IdleOpts) -> Result<()> {
    let logins = load_creds(&opts.target.creds)?;
    let ep = Endpoint::new(&opts.target).await?;
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let counts = Arc::new(Counts::default());
    let (opened_tx, mut opened_rx) = mpsc::channel(opts.connections);
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..opts.connections {
        let login = logins[i % logins.len()].clone();
        let ctx = (ep.clone(), Arc::clone(&gate), Arc::clone(&counts));
        tasks.spawn(one_connection(i, login, ctx, opened_tx.clone(), stop_rx.clone()));
    }
    drop(opened_tx);
    while opened_rx.recv().await.is_some() {}
    let n = opts.connections as u64;
    eprintln!(
        "{} of {n} connected in {:.2} s; holding for {:?}",
        counts.alive.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        opts.hold
    );
    tokio::time::sleep(opts.hold).await;
    let alive = counts.alive.load(Ordering::Relaxed);
    eprintln!(
        "after the hold: {alive} alive, {} connect failures, {} dropped while held",
        counts.connect_failed.load(Ordering::Relaxed),
        counts.dropped.load(Ordering::Relaxed)
    );
    println!("{}", serde_json::json!({ "connected": alive, "failed": n - alive }));
    stop_tx.send_replace(true);
    if tokio::time::timeout(CLOSE_TIMEOUT, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
        eprintln!("some connections did not close within {CLOSE_TIMEOUT:?}");
    }
    Ok(())
}

/// Connects (holding a `gate` permit only for the handshake), reports on `opened`, then holds
/// the connection until `stop`.
async fn one_connection(
    i: usize,
    login: Login,
    (ep, gate, counts): (Endpoint, Arc<Semaphore>, Arc<Counts>),
    opened: mpsc::Sender<()>,
    stop: watch::Receiver<bool>,
) {
    let client_id = format!("load-idle-{i}");
    let conn = match gate.acquire().await {
        Ok(_permit) => Conn::open(&ep, &client_id, &login, KEEP_ALIVE).await,
        Err(e) => Err(e.into()),
    };
    let conn = match conn {
        Ok(c) => {
            counts.alive.fetch_add(1, Ordering::Relaxed);
            Some(c)
        }
        Err(e) => {
            if counts.connect_failed.fetch_add(1, Ordering::Relaxed) < ERRORS_SHOWN {
                eprintln!("connect failed: {e:#}");
            }
            None
        }
    };
    let _ = opened.send(()).await;
    drop(opened);
    if let Some(conn) = conn {
        if let Err(e) = hold(conn, stop).await {
            counts.alive.fetch_sub(1, Ordering::Relaxed);
            if counts.dropped.fetch_add(1, Ordering::Relaxed) < ERRORS_SHOWN {
                eprintln!("{client_id} dropped: {e:#}");
            }
        }
    }
}

/// PINGREQ every `PING_EVERY`, read whatever comes (PINGRESPs), DISCONNECT on `stop`.
async fn hold(mut conn: Conn, mut stop: watch::Receiver<bool>) -> Result<()> {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = ping.tick() => conn.send(&Packet::PingReq).await?,
            r = fill(&mut conn.stream, &mut conn.buf) => {
                r?;
                while try_parse(&mut conn.buf)?.is_some() {}
            }
        }
    }
    // Best effort: the count is already printed.
    let _ = conn.send(&Packet::Disconnect).await;
    let _ = conn.stream.shutdown().await;
    Ok(())
}
