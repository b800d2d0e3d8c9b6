//! `throughput`: one QoS 1 subscriber on `<prefix>/#`, N windowed QoS 1 publishers, and one
//! JSON line with the counts, the delivery rate and the publish-to-delivery latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rumqttc::mqttbytes::QoS;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::mqtt::{load_creds, Conn, Login};
use crate::publisher::{self, Plan};
use crate::subscriber::{self, Report};
use crate::tls::Endpoint;
use crate::ThroughputOpts;

/// MQTT keepalive of every connection, seconds.
pub const KEEP_ALIVE: u16 = 60;
/// Publisher connections opened at once.
const CONNECT_CONCURRENCY: usize = 32;

/// State shared by the publishers and the subscriber of one run.
#[derive(Debug)]
pub struct Shared {
    /// Time zero of the payload timestamps.
    base: Instant,
    /// Stop everything at this instant (`--duration-s`).
    pub deadline: Option<Instant>,
    pub published: AtomicU64,
    pub acked: AtomicU64,
    /// Earliest publish, ns since `base` (`u64::MAX` until the first one).
    pub first_publish_ns: AtomicU64,
}

impl Shared {
    fn new(duration: Option<Duration>) -> Self {
        let base = Instant::now();
        Self {
            base,
            deadline: duration.map(|d| base + d),
            published: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            first_publish_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// Nanoseconds since the shared time zero.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Resolves at `deadline`, never without one.
pub async fn deadline_reached(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

pub async fn run(opts: ThroughputOpts) -> Result<()> {
    let logins = load_creds(&opts.target.creds)?;
    let ep = Endpoint::new(&opts.target).await?;
    let sub_login = subscriber_login(&logins, opts.subscriber_user.as_deref())?;
    let mut sub = Conn::open(&ep, "load-sub", sub_login, KEEP_ALIVE).await.context("subscriber")?;
    let filter = format!("{}/#", opts.topic_prefix);
    sub.subscribe(&filter, QoS::AtLeastOnce).await.context("subscriber")?;
    eprintln!("subscriber {} on {filter:?}", sub_login.user);

    let (publishers, connect_failures) = connect_publishers(&ep, &logins, opts.publishers).await;
    eprintln!("{} of {} publishers connected", publishers.len(), opts.publishers);

    let shared = Arc::new(Shared::new(opts.duration));
    let (done_tx, done_rx) = watch::channel(None);
    let slow = Duration::from_millis(opts.slow_ms);
    let expected = usize::try_from(opts.messages).unwrap_or(usize::MAX);
    let sub_task = tokio::spawn(subscriber::receive(sub, Arc::clone(&shared), done_rx, slow, expected));

    let mut tasks = JoinSet::new();
    for (i, conn) in publishers {
        let plan = Plan {
            id: i,
            topic: format!("{}/{i}", opts.topic_prefix),
            count: share_of(opts.messages, opts.publishers, i),
            payload: opts.payload,
        };
        tasks.spawn(publisher::run(conn, plan, Arc::clone(&shared)));
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("publisher: {e:#}"),
            Err(e) => eprintln!("publisher task: {e}"),
        }
    }
    let published = shared.published.load(Ordering::Relaxed);
    eprintln!("publishers done: {published} published, {} acked", shared.acked.load(Ordering::Relaxed));
    done_tx.send_replace(Some(published));
    let report = sub_task.await.map_err(|e| anyhow!("subscriber task: {e}"))?;
    println!("{}", result_json(&shared, report, connect_failures));
    Ok(())
}

fn subscriber_login<'a>(logins: &'a [Login], user: Option<&str>) -> Result<&'a Login> {
    match user {
        None => logins.first().ok_or_else(|| anyhow!("empty creds file")),
        Some(u) => {
            logins.iter().find(|l| l.user == u).ok_or_else(|| anyhow!("--subscriber-user {u:?} not in creds file"))
        }
    }
}

/// Messages for publisher `i` of `n`: `m / n`, the remainder spread over the first ones.
fn share_of(m: u64, n: usize, i: usize) -> u64 {
    let (n, i) = (n as u64, i as u64);
    m / n + u64::from(i < m % n)
}

/// Connects `n` publishers, `CONNECT_CONCURRENCY` at a time; failures are logged and counted.
async fn connect_publishers(ep: &Endpoint, logins: &[Login], n: usize) -> (Vec<(usize, Conn)>, u64) {
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (ep, gate) = (ep.clone(), Arc::clone(&gate));
        let login = logins[i % logins.len()].clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| anyhow!("{e}"))?;
            Conn::open(&ep, &format!("load-pub-{i}"), &login, KEEP_ALIVE).await.map(|c| (i, c))
        });
    }
    let (mut conns, mut failures) = (Vec::with_capacity(n), 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| anyhow!("connect task: {e}")).and_then(|r| r) {
            Ok(c) => conns.push(c),
            Err(e) => {
                failures += 1;
                eprintln!("publisher connect failed: {e:#}");
            }
        }
    }
    conns.sort_by_key(|(i, _)| *i);
    (conns, failures)
}

fn result_json(shared: &Shared, mut report: Report, connect_failures: u64) -> serde_json::Value {
    let first = shared.first_publish_ns.load(Ordering::Relaxed);
    let secs = report
        .last_delivery_ns
        .filter(|&last| first != u64::MAX && last > first)
        .map_or(0.0, |last| Duration::from_nanos(last - first).as_secs_f64());
    let rate = if secs > 0.0 { report.delivered as f64 / secs } else { 0.0 };
    report.latencies_ns.sort_unstable();
    let pct = |p: f64| round3(percentile_ms(&report.latencies_ns, p));
    serde_json::json!({
        "published": shared.published.load(Ordering::Relaxed),
        "acked": shared.acked.load(Ordering::Relaxed),
        "delivered": report.delivered,
        "secs": (secs * 1e6).round() / 1e6,
        "msgs_per_s": round3(rate),
        "p50_ms": pct(50.0),
        "p99_ms": pct(99.0),
        "max_ms": pct(100.0),
        "connect_failures": connect_failures,
    })
}

/// Nearest-rank percentile of sorted nanosecond samples, in milliseconds (0 with no samples).
fn percentile_ms(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_ns.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted_ns.len()) - 1;
    sorted_ns[idx] as f64 / 1e6
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
