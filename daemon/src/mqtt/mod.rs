//! The gateway's MQTT service for devices: a broker of moat's own (TLS with
//! rustls, per-device identity and topic permissions, routing into bounded
//! per-session queues, retained messages, wills), plus the plaintext-upgrade
//! relay.
//!
//! It runs on its own thread and tokio runtime, so a slow nft transaction in
//! the enforcement loop never delays a message, and MQTT trouble never stops
//! enforcement. The daemon hands it each new config (`update`).

mod admit;
pub mod cli;
mod codec;
pub mod creds;
mod frames;
mod identity;
mod inbound;
mod listen;
mod message;
mod outbound;
pub mod pki;
mod queue;
mod quota;
mod router;
mod session;
mod stats;
mod tls;
mod upgrade;
mod view;

use std::{
    net::IpAddr,
    path::Path,
    sync::{Arc, RwLock},
};

use moat_policy::Config;
use tracing::info;

pub use stats::{DeviceTotals, Totals};
pub use view::View;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("MQTT runtime: {0}")]
    Runtime(std::io::Error),
    #[error("listening on {what} port {port}: {source}")]
    Listen { what: &'static str, port: u16, source: std::io::Error },
}

/// What every connection task shares.
#[derive(Debug)]
pub struct Front {
    view: RwLock<Arc<View>>,
    identity: identity::Identity,
    creds: Arc<creds::Store>,
    stats: Arc<stats::Stats>,
    router: router::Router,
    /// Password checks run one at a time (argon2 uses 8 MiB each).
    verify_slots: tokio::sync::Semaphore,
    quotas: quota::Quotas,
}

impl Front {
    /// The current config view (cheap: an `Arc` clone).
    pub fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The running MQTT service.
#[derive(Debug)]
pub struct Mqtt {
    front: Arc<Front>,
}

impl Mqtt {
    /// Starts the broker and the listeners when the config has `[mqtt]`.
    pub fn start(cfg: &Config) -> Result<Option<Mqtt>, MqttError> {
        let Some(settings) = &cfg.mqtt else { return Ok(None) };
        raise_nofile();
        let dir = pki::dir(Path::new(&cfg.gateway.state_dir))?;
        let ca = pki::Ca::load_or_create(&dir)?;
        let addrs = lan_addresses(&cfg.gateway.lan);
        let mut names = vec!["localhost".to_string()];
        names.extend(settings.names.iter().cloned());
        ca.issue_server(&dir, &names, &addrs)?;
        let server_tls = tls::server(&dir, settings.client_certificates.then_some(ca.pem_path.as_path()))?;
        let front = Arc::new(Front {
            view: RwLock::new(Arc::new(View::from_config(cfg))),
            identity: identity::Identity::new(Path::new(&cfg.gateway.pin_dir)),
            creds: Arc::new(creds::Store::new(&dir)),
            stats: Arc::default(),
            router: router::Router::default(),
            verify_slots: tokio::sync::Semaphore::new(1),
            quotas: quota::Quotas::default(),
        });
        listen::spawn(front.clone(), &cfg.gateway.lan, settings, server_tls)?;
        info!(tls_port = settings.tls_port, ca = %ca.pem_path.display(), "MQTT broker for devices listening");
        Ok(Some(Mqtt { front }))
    }

    /// Applies a reloaded config: permissions and devices change at once for
    /// open connections too (listener settings need a restart).
    pub fn update(&self, cfg: &Config) {
        let view = Arc::new(View::from_config(cfg));
        *self.front.view.write().unwrap_or_else(std::sync::PoisonError::into_inner) = view;
    }

    /// Counters summed over devices (for the metrics).
    pub fn totals(&self) -> Totals {
        Totals { sessions: self.front.router.sessions(), ..self.front.stats.totals() }
    }

    /// Counters for the status snapshot.
    pub fn status(&self) -> serde_json::Value {
        let mut v = self.front.stats.snapshot();
        v["sessions"] = self.front.router.sessions().into();
        v
    }
}

/// Locks a mutex; a panicked holder's data is still used (every value kept
/// under these locks is valid at all times).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A socket per device connection: lift the soft descriptor limit to the
/// hard one (1,024 is the default soft limit).
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
            tracing::warn!(soft, hard, "could not raise the open-files limit");
        }
    }
}

/// The LAN interface's addresses (for the server certificate).
fn lan_addresses(iface: &str) -> Vec<IpAddr> {
    let out = std::process::Command::new("ip").args(["-j", "addr", "show", "dev", iface]).output();
    let Ok(out) = out else { return Vec::new() };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else { return Vec::new() };
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str().and_then(|s| s.parse().ok()))
        .collect()
}
