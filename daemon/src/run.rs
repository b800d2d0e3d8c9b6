//! `moat run`: put the config into force and keep it there until told to stop.
//!
//! Order matters: device entries are in the maps before the classifier is
//! attached, and the nft table is in place before we report ready, so there is
//! no moment where a configured device is treated as unknown.

use std::{path::Path, time::Duration};

use aya::maps::{MapData, RingBuf};
use moat_policy::{nft as ruleset, Config};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};
use tracing::{info, warn};

use crate::{
    events::Events,
    kernel::{Kernel, KernelError, Limits},
    learn::Learner,
    nft::{self, NftError},
    status,
};

/// How often the status snapshot is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How often the event ring is drained: most events are submitted without a
/// wakeup (it costs the kernel ~5 us each), so they are collected on this tick.
const DRAIN_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("watching the event ring buffer: {0}")]
    Events(std::io::Error),
}

/// Enforces `cfg` until SIGTERM/SIGINT, then removes what it installed.
pub async fn run(cfg: Config) -> Result<(), RunError> {
    let mut kernel = Kernel::load(Limits::from_config(&cfg))?;
    kernel.sync_devices(&cfg)?;
    kernel.attach(&cfg.gateway.lan)?;
    nft::apply("ruleset", &ruleset::ruleset(&cfg))?;
    info!(lan = %cfg.gateway.lan, wan = %cfg.gateway.wan, devices = cfg.devices.len(), "enforcing");

    let ring = kernel.take_events().ok_or(KernelError::Missing { what: "map", name: "EVENTS" })?;
    let result = serve(&kernel, &cfg, ring).await;

    if let Err(e) = nft::apply("teardown", &ruleset::teardown()) {
        warn!(error = %e, "removing the nft table failed");
    }
    drop(kernel); // detaches the classifier
    info!("stopped");
    result
}

async fn serve(kernel: &Kernel, cfg: &Config, ring: RingBuf<MapData>) -> Result<(), RunError> {
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(RunError::Signals)?;
    // AsyncFd owns the RingBuf, which owns its fd, so the fd cannot be closed
    // while registered: the I/O-safety hole behind the deprecation (the safe
    // replacement, `register`, is `unsafe`, which this crate forbids).
    #[allow(deprecated)]
    let mut ring = AsyncFd::new(ring).map_err(RunError::Events)?;
    let mut events = Events::default();
    let mut learn = Learning { cfg, learner: Learner::default(), apply_errors: 0 };
    let mut tick = tokio::time::interval(STATUS_EVERY);
    let mut drain_tick = tokio::time::interval(DRAIN_EVERY);
    let dir = Path::new(&cfg.gateway.run_dir);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr1.recv() => {}
            _ = tick.tick() => {}
            _ = drain_tick.tick() => {
                drain(ring.get_mut(), &mut events, &mut learn);
                continue;
            }
            ready = ring.readable_mut() => {
                let mut guard = ready.map_err(RunError::Events)?;
                drain(guard.get_inner_mut(), &mut events, &mut learn);
                guard.clear_ready();
                continue;
            }
        }
        // A snapshot includes every event the kernel has produced so far.
        drain(ring.get_mut(), &mut events, &mut learn);
        seq += 1;
        publish(kernel, cfg, &events, &learn, dir, seq);
    }
    drain(ring.get_mut(), &mut events, &mut learn);
    seq += 1;
    publish(kernel, cfg, &events, &learn, dir, seq);
    Ok(())
}

/// Reads every pending event; what they teach goes to nft in one transaction.
fn drain(ring: &mut RingBuf<MapData>, events: &mut Events, learn: &mut Learning<'_>) {
    let mut script = String::new();
    while let Some(item) = ring.next() {
        if let Some(e) = events.record(&item) {
            learn.learner.on_event(learn.cfg, &e, crate::events::payload(&item), &mut script);
        }
    }
    if !script.is_empty() {
        if let Err(e) = nft::apply("learned elements", &script) {
            learn.apply_errors += 1;
            warn!(error = %e, "adding learned addresses failed");
        }
    }
}

/// The learning state the event loop carries.
#[derive(Debug)]
pub struct Learning<'a> {
    pub cfg: &'a Config,
    pub learner: Learner,
    pub apply_errors: u64,
}

/// Writes a status snapshot; failures are logged, never fatal (enforcement
/// does not depend on reporting).
fn publish(kernel: &Kernel, cfg: &Config, events: &Events, learn: &Learning<'_>, dir: &Path, seq: u64) {
    match status::collect(kernel, cfg, events, learn, seq) {
        Ok(snap) => {
            if let Err(e) = status::write(dir, &snap) {
                warn!(dir = %dir.display(), error = %e, "writing status snapshot failed");
            }
        }
        Err(e) => warn!(error = %e, "reading counters failed"),
    }
}
