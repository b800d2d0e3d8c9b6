//! `moat run`: put the config into force and keep it there until told to stop.
//!
//! Order matters: device entries are in the maps before the classifier is
//! attached, and the nft table is in place before we report ready, so there is
//! no moment where a configured device is treated as unknown.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use moat_policy::{nft as ruleset, Config, OnFailure};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};
use tracing::{error, info, warn};

use crate::{
    discover,
    events::Events,
    inventory::Inventory,
    kernel::{Kernel, KernelError, Limits},
    learn::Learner,
    mud_dir, neighbours,
    nft::{self, NftError},
    pins, reload, status,
};

/// How often the status snapshot is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How often the inventory is written to disk (flash wear: batches, not events).
const INVENTORY_FLUSH_EVERY: u64 = 30;
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
    #[error(transparent)]
    Pins(#[from] pins::PinsError),
}

/// Enforces the config at `path` (already loaded as `cfg`) until
/// SIGTERM/SIGINT, then removes what it installed. SIGHUP reloads it.
pub async fn run(base: Config, path: PathBuf) -> Result<(), RunError> {
    let started = std::time::Instant::now();
    let mut decisions = open_decisions(Path::new(&base.gateway.state_dir));
    let cfg = decisions.apply(base.clone());
    // Slots handed out just now are kept from the start.
    if !decisions.by_mac.is_empty() {
        if let Err(e) = decisions.save() {
            warn!(error = %e, "saving device decisions failed");
        }
    }
    let limits = Limits::from_config(&cfg);
    let pins = pins::prepare(Path::new(&cfg.gateway.pin_dir))?;
    pins::check_compatible(&pins, limits)?;
    let adopting = pins.join(pins::LINK_INGRESS).exists();
    let mut kernel = Kernel::load(limits, Some(&pins))?;
    kernel.sync_devices(&cfg)?;
    kernel.attach(&cfg.gateway.lan, Some(&pins))?;
    nft::apply("ruleset", &ruleset::ruleset(&cfg))?;
    let ms = started.elapsed().as_millis();
    info!(lan = %cfg.gateway.lan, wan = %cfg.gateway.wan, devices = cfg.devices.len(), adopted = adopting, ms, "enforcing");
    notify_ready();

    let ring = kernel.take_events().ok_or(KernelError::Missing { what: "map", name: "EVENTS" })?;
    let mqtt = start_mqtt(&cfg);
    let (scrape_tx, scrapes) = tokio::sync::mpsc::channel(4);
    if let Some(listen) = cfg.metrics.listen {
        if let Err(e) = crate::metrics::serve::spawn(listen, scrape_tx).await {
            error!(%listen, error = %e, "metrics endpoint not started; enforcing without it");
        }
    }
    let feed = crate::api::feed::Feed::default();
    let (call_tx, calls) = tokio::sync::mpsc::channel(16);
    let api_socket = crate::api::socket::spawn(&cfg.api, call_tx, feed.clone()).map_err(|e| {
        error!(error = %e, "control API not started; enforcing without it");
    });
    let mut daemon = Daemon::new(kernel, cfg, path, base, decisions, feed);
    daemon.mqtt = mqtt;
    let result = serve(&mut daemon, ring, Inbox { scrapes, calls }).await;
    if let Ok(p) = api_socket {
        let _ = std::fs::remove_file(p);
    }

    let on_failure = daemon.cfg.gateway.on_failure;
    let pin_dir = PathBuf::from(&daemon.cfg.gateway.pin_dir);
    drop(daemon);
    match on_failure {
        OnFailure::Closed => info!("stopped; enforcement stays in the kernel (on_failure = closed)"),
        OnFailure::Open => {
            remove_enforcement(&pin_dir);
            info!("stopped; enforcement removed (on_failure = open)");
        }
    }
    result
}

/// Removes the tables and the pins (which detaches the classifier).
pub fn remove_enforcement(pin_dir: &Path) {
    if let Err(e) = nft::apply("teardown", &ruleset::teardown()) {
        warn!(error = %e, "removing the nft tables failed");
    }
    if let Err(e) = pins::remove(pin_dir) {
        warn!(error = %e, "removing pinned maps and links failed");
    }
}

/// Starts the MQTT service; a failure is logged and reported in the status,
/// and enforcement goes on without it.
fn start_mqtt(cfg: &Config) -> Result<Option<crate::mqtt::Mqtt>, String> {
    crate::mqtt::Mqtt::start(cfg).map_err(|e| {
        error!(error = %e, "MQTT service not started; enforcing without it");
        e.to_string()
    })
}

/// Tells systemd (Type=notify) that enforcement is in place; a no-op without systemd.
fn notify_ready() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        warn!(error = %e, "sd_notify READY failed");
    }
}

/// Everything the running daemon holds.
#[derive(Debug)]
pub struct Daemon {
    pub kernel: Kernel,
    /// What is in force: `base` with the runtime decisions laid over it.
    pub cfg: Config,
    /// The config file (plus local MUD imports) as last loaded.
    pub base: Config,
    /// Approvals, quarantines and policies set through the API.
    pub decisions: crate::decisions::Decisions,
    /// The API's live event stream.
    pub feed: crate::api::feed::Feed,
    pub started: std::time::Instant,
    pub path: PathBuf,
    pub events: Events,
    pub learner: Learner,
    /// nft transactions of learned elements that failed.
    pub apply_errors: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub last_reload_error: Option<String>,
    /// The device inventory, or why it is unavailable (moat enforces anyway).
    pub inventory: Result<Inventory, String>,
    /// Policies and devices added from local MUD files.
    pub mud: mud_dir::Applied,
    /// The MQTT service (`Ok(None)`: not configured; `Err`: failed to start).
    pub mqtt: Result<Option<crate::mqtt::Mqtt>, String>,
    /// Line budget for per-packet events (blocked flows, new devices).
    pub packet_log: crate::logging::PacketLog,
    /// Counters kept for the Prometheus endpoint.
    pub metrics: crate::metrics::Metrics,
    seq: u64,
}

/// What other tasks ask of the main loop.
struct Inbox {
    scrapes: tokio::sync::mpsc::Receiver<crate::metrics::serve::Scrape>,
    calls: tokio::sync::mpsc::Receiver<crate::api::Call>,
}

impl Daemon {
    /// `cfg` is `base` with `decisions` laid over it (already in force).
    fn new(
        kernel: Kernel,
        cfg: Config,
        path: PathBuf,
        base: Config,
        decisions: crate::decisions::Decisions,
        feed: crate::api::feed::Feed,
    ) -> Self {
        let cfg_state_dir = PathBuf::from(&cfg.gateway.state_dir);
        let packet_log = crate::logging::PacketLog::new(cfg.log.packet_events_per_minute);
        Daemon {
            kernel,
            cfg,
            base,
            decisions,
            feed,
            started: std::time::Instant::now(),
            path,
            events: Events::default(),
            learner: Learner::default(),
            apply_errors: 0,
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload_error: None,
            inventory: open_inventory(&cfg_state_dir),
            mud: mud_dir::Applied::default(),
            mqtt: Ok(None),
            packet_log,
            metrics: crate::metrics::Metrics::new(),
            seq: 0,
        }
    }

    /// Takes a newly applied config; a table replace emptied the learned
    /// sets, so what is still valid is put back.
    fn adopt(&mut self, done: reload::Reloaded) {
        self.cfg = done.config;
        if let Ok(Some(m)) = &self.mqtt {
            m.update(&self.cfg);
        }
        if done.replaced {
            let scripts = self.learner.restore(&self.cfg);
            self.apply_learned("restored learned elements", &scripts);
        }
    }

    /// An unknown device announced a MUD URL: if the matching file is in
    /// `mud_dir`, give the device the imported policy (applied like a reload).
    fn try_mud(&mut self, mac: &str, payload: &[u8]) {
        let Some(extra) = self.mud.fragment_for(&self.cfg, mac, payload) else { return };
        let all = format!("{}{extra}", self.mud.extra);
        let result = Config::load_with(&self.path, &all).map_err(reload::ReloadError::Config);
        match result.and_then(|base| self.apply_base(base)) {
            Ok(()) => {
                let policy =
                    self.cfg.devices.iter().find(|d| d.mac.to_string() == mac).map_or("?", |d| d.policy.as_str());
                info!(mac, policy, "applied a local MUD file");
                self.mud.commit(mac, all);
            }
            Err(e) => warn!(mac, error = %e, "applying a local MUD file failed"),
        }
    }

    /// Adds the addresses the kernel's neighbour table maps to known MACs.
    fn read_neighbours(&mut self) {
        let Ok(inv) = &mut self.inventory else { return };
        match neighbours::on(&self.cfg.gateway.lan) {
            Ok(pairs) => {
                let now = crate::clock::unix_secs();
                for (mac, addr) in pairs {
                    if inv.get(&mac).is_some() {
                        inv.address(&mac, now, &addr);
                    }
                }
            }
            Err(e) => warn!(error = %e, "reading the neighbour table failed"),
        }
    }

    /// Writes pending inventory changes; an error disables the inventory
    /// (reported in the status), never enforcement.
    fn flush_inventory(&mut self) {
        if let Ok(inv) = &mut self.inventory {
            if let Err(e) = inv.flush() {
                error!(error = %e, "inventory write failed; continuing without it");
                self.inventory = Err(e.to_string());
            }
        }
    }

    /// Reads every pending event; what they teach goes to nft in one transaction.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        let mut scripts = Vec::new();
        while let Some(item) = ring.next() {
            if let Some(e) = self.events.record(&item) {
                self.log_event(&e);
                self.metrics.on_event(&e);
                self.feed.on_event(&self.cfg, &e);
                let payload = crate::events::payload(&item);
                self.learner.on_event(&self.cfg, &e, payload, &mut scripts);
                if let Ok(inv) = &mut self.inventory {
                    discover::observe(inv, &self.cfg, &e, payload);
                }
                if e.kind == "dhcp_request" && e.device_id == 0 {
                    self.try_mud(&e.mac, payload);
                }
            }
        }
        self.apply_learned("learned elements", &scripts);
    }

    /// Blocked flows and new devices at info, within the per-device budget.
    fn log_event(&mut self, e: &crate::events::Event) {
        if !matches!(e.kind, "blocked" | "new_device") || !self.packet_log.allow(e.device_id) {
            return;
        }
        let device = self.cfg.devices.iter().find(|d| d.id == e.device_id).map_or("unknown", |d| d.name.as_str());
        let (remote, port) = e.flow.as_ref().map_or((String::new(), 0), |f| (f.remote.clone(), f.remote_port));
        if e.kind == "blocked" {
            info!(device, mac = %e.mac, class = e.class, reason = e.reason.unwrap_or(""), remote = %remote, port, "blocked");
        } else {
            info!(mac = %e.mac, "new device");
        }
    }

    /// One transaction per answer: a rejected one is counted and logged.
    fn apply_learned(&mut self, what: &'static str, scripts: &[String]) {
        for script in scripts {
            if let Err(e) = nft::apply(what, script) {
                self.apply_errors += 1;
                warn!(error = %e, "adding learned addresses failed");
            }
        }
    }

    /// Puts `new` into force (timed, counted); on failure the previous
    /// config stays, and the learned elements a restored table lost are put back.
    pub fn apply_config(&mut self, new: Config) -> Result<(), reload::ReloadError> {
        let started = std::time::Instant::now();
        let result = reload::apply(&mut self.kernel, &self.cfg, new);
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(done) => {
                self.metrics.observe_apply("ok", seconds);
                self.adopt(done);
                Ok(())
            }
            Err(e) => {
                self.metrics.observe_apply("failed", seconds);
                let scripts = self.learner.restore(&self.cfg);
                self.apply_learned("restored learned elements", &scripts);
                Err(e)
            }
        }
    }

    /// Puts a newly loaded file config into force, decisions laid over it.
    fn apply_base(&mut self, base: Config) -> Result<(), reload::ReloadError> {
        let new = self.decisions.apply(base.clone());
        self.apply_config(new)?;
        if base.api != self.base.api || base.metrics != self.base.metrics {
            warn!("[api] and [metrics] changes take effect when moat restarts");
        }
        self.base = base;
        Ok(())
    }

    /// Puts the current decisions into force over the last loaded config.
    pub fn apply_decisions(&mut self) -> Result<(), reload::ReloadError> {
        let new = self.decisions.apply(self.base.clone());
        self.apply_config(new)
    }

    /// Status snapshots written so far.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Re-reads the config file (SIGHUP, `moat reload`).
    pub fn reload(&mut self) -> Result<(), reload::ReloadError> {
        let result = Config::load_with(&self.path, &self.mud.extra)
            .map_err(reload::ReloadError::Config)
            .and_then(|base| self.apply_base(base));
        match &result {
            Ok(()) => {
                self.metrics.observe_reload("ok");
                self.reloads_ok += 1;
                self.last_reload_error = None;
            }
            Err(e) => {
                let kind = if matches!(e, reload::ReloadError::Config(_)) { "invalid" } else { "failed" };
                self.metrics.observe_reload(kind);
                self.reloads_failed += 1;
                error!(error = %e, "reload failed; still enforcing the previous config");
                self.last_reload_error = Some(e.to_string());
            }
        }
        result
    }

    /// Writes a status snapshot; failures are logged, never fatal (enforcement
    /// does not depend on reporting).
    fn publish(&mut self) {
        self.seq += 1;
        let dir = PathBuf::from(&self.cfg.gateway.run_dir);
        match status::collect(self, self.seq) {
            Ok(snap) => {
                if let Err(e) = status::write(&dir, &snap) {
                    warn!(dir = %dir.display(), error = %e, "writing status snapshot failed");
                }
            }
            Err(e) => warn!(error = %e, "reading counters failed"),
        }
    }
}

async fn serve(d: &mut Daemon, ring: RingBuf<MapData>, mut inbox: Inbox) -> Result<(), RunError> {
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(RunError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;
    // AsyncFd owns the RingBuf, which owns its fd, so the fd cannot be closed
    // while registered: the I/O-safety hole behind the deprecation (the safe
    // replacement, `register`, is `unsafe`, which this crate forbids).
    #[allow(deprecated)]
    let mut ring = AsyncFd::new(ring).map_err(RunError::Events)?;
    let mut tick = tokio::time::interval(STATUS_EVERY);
    let mut drain_tick = tokio::time::interval(DRAIN_EVERY);
    // systemd's watchdog (WatchdogSec=): ping at half the interval. Without
    // it the timer just never fires.
    let mut usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut usec);
    let every = if watchdog {
        Duration::from_micros(usec / 2).max(Duration::from_millis(100))
    } else {
        Duration::from_secs(3600)
    };
    let mut watchdog_tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = watchdog_tick.tick(), if watchdog => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                continue;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr1.recv() => {}
            _ = hup.recv() => {
                let _ = d.reload();
            }
            Some(call) = inbox.calls.recv() => {
                d.drain(ring.get_mut());
                let answer = crate::api::handle::handle(d, call.command);
                let _ = call.reply.send(answer);
                continue;
            }
            Some(reply) = inbox.scrapes.recv() => {
                d.drain(ring.get_mut());
                let _ = reply.send(crate::metrics::render(d));
                continue;
            }
            _ = tick.tick() => {}
            _ = drain_tick.tick() => {
                d.drain(ring.get_mut());
                continue;
            }
            ready = ring.readable_mut() => {
                let mut guard = ready.map_err(RunError::Events)?;
                d.drain(guard.get_inner_mut());
                guard.clear_ready();
                continue;
            }
        }
        // A snapshot includes every event the kernel has produced so far.
        d.drain(ring.get_mut());
        if d.seq.is_multiple_of(INVENTORY_FLUSH_EVERY) {
            d.read_neighbours();
            d.flush_inventory();
        }
        d.publish();
    }
    d.drain(ring.get_mut());
    d.read_neighbours();
    d.flush_inventory();
    d.publish();
    Ok(())
}

/// The inventory database file in the state directory.
pub fn inventory_path(state_dir: &Path) -> PathBuf {
    state_dir.join("inventory.sqlite3")
}

/// The runtime decisions; an unreadable file is reported and moat enforces
/// the config alone (it does not guess, and does not overwrite the file).
fn open_decisions(state_dir: &Path) -> crate::decisions::Decisions {
    crate::decisions::Decisions::open(state_dir).unwrap_or_else(|e| {
        error!(error = %e, "device decisions unavailable; enforcing the config alone");
        crate::decisions::Decisions::detached()
    })
}

fn open_inventory(state_dir: &Path) -> Result<Inventory, String> {
    Inventory::open(&inventory_path(state_dir)).map_err(|e| {
        error!(error = %e, "device inventory unavailable; enforcing without it");
        e.to_string()
    })
}
