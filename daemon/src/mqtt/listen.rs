//! The listeners, on the LAN interface only (SO_BINDTODEVICE): TLS, the
//! optional plaintext port, and the upgrade port for redirected plaintext
//! MQTT. The accept loops only accept: TLS handshakes and CONNECT run in each
//! connection's own task under a timeout, so a client that stalls mid-
//! handshake holds nothing but its own task.

use std::{
    net::{Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use moat_policy::mqtt::MqttSettings;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::{admit::Listener, session, upgrade, Front, MqttError};

/// Worker threads for MQTT (the enforcement loop has its own).
const WORKERS: usize = 2;

/// Binds every listener and runs them on a new thread with its own runtime
/// (called from the daemon's runtime, which must not block on another).
/// Returns once bound, or with why not.
pub fn spawn(front: Arc<Front>, lan: &str, s: &MqttSettings, tls: Arc<ServerConfig>) -> Result<(), MqttError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (lan, s) = (lan.to_string(), s.clone());
    std::thread::Builder::new()
        .name("moat-mqtt".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKERS)
                // Password checks are the only blocking work: few threads,
                // so few malloc arenas holding argon2's 8 MiB.
                .max_blocking_threads(1)
                .thread_name("moat-mqtt")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(tx.send(Err(MqttError::Runtime(e)))),
            };
            rt.block_on(async move {
                match listeners(&lan, &s) {
                    Ok(ls) => {
                        let _ = tx.send(Ok(()));
                        serve(front, ls, &s, tls).await;
                    }
                    Err(e) => drop(tx.send(Err(e))),
                }
            });
        })
        .map_err(MqttError::Runtime)?;
    rx.recv().unwrap_or_else(|_| Err(MqttError::Runtime(std::io::Error::other("MQTT thread ended"))))
}

struct Listeners {
    tls: TcpListener,
    plain: Option<TcpListener>,
    upgrade: Option<TcpListener>,
}

fn listeners(lan: &str, s: &MqttSettings) -> Result<Listeners, MqttError> {
    let bind =
        |what: &'static str, port: u16| bind(lan, port).map_err(|source| MqttError::Listen { what, port, source });
    let ls = Listeners {
        tls: bind("TLS", s.tls_port)?,
        plain: s.plaintext_port.map(|p| bind("plaintext", p)).transpose()?,
        upgrade: (!s.upstreams.is_empty()).then(|| bind("upgrade", s.upgrade_port)).transpose()?,
    };
    Ok(ls)
}

/// Runs the accept loops forever.
async fn serve(front: Arc<Front>, ls: Listeners, s: &MqttSettings, tls: Arc<ServerConfig>) {
    let open = Arc::new(AtomicU32::new(0));
    let max = s.max_connections;
    let timeout = Duration::from_millis(u64::from(s.handshake_timeout_ms));
    let acceptor = TlsAcceptor::from(tls);
    let (f, o) = (front.clone(), open.clone());
    tokio::spawn(accept_loop(ls.tls, f, o, max, true, move |front, stream, peer, local| {
        handshake(front, acceptor.clone(), stream, peer, local, timeout)
    }));
    if let Some(l) = ls.plain {
        let (f, o) = (front.clone(), open.clone());
        tokio::spawn(accept_loop(l, f, o, max, true, |front, stream, peer, local| {
            session::serve(front, stream, peer, local, None, Listener::Plaintext)
        }));
    }
    // Redirected connections are found by the address the device dialled
    // (upgrade.rs), not at accept.
    if let Some(l) = ls.upgrade {
        tokio::spawn(accept_loop(l, front, open, max, false, upgrade::relay));
    }
    std::future::pending::<()>().await;
}

/// A dual-stack listener bound to the LAN interface.
fn bind(lan: &str, port: u16) -> std::io::Result<TcpListener> {
    let sock = TcpSocket::new_v6()?;
    sock.set_reuseaddr(true)?;
    sock.bind_device(Some(lan.as_bytes()))?;
    sock.bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))?;
    sock.listen(1024)
}

/// Accepts connections and gives each its own task. Closed at once (and
/// counted): over `max` open connections; with `gated`, connections no
/// configured device is behind, and those over the device's own limit (so
/// one device cannot hold every slot with stalled handshakes).
async fn accept_loop<F, Fut>(l: TcpListener, front: Arc<Front>, open: Arc<AtomicU32>, max: u32, gated: bool, serve: F)
where
    F: Fn(Arc<Front>, TcpStream, SocketAddr, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, peer) = match l.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= max {
            super::stats::inc(&front.stats.over_capacity);
            continue;
        }
        let Ok(local) = stream.local_addr() else { continue };
        let _ = stream.set_nodelay(true);
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let local = SocketAddr::new(local.ip().to_canonical(), local.port());
        let quota = if gated {
            let Some(seen) = front.identity.lookup(peer, local) else {
                super::stats::inc(&front.stats.unknown_peer);
                continue;
            };
            let q = front.quotas.of(seen.device_id);
            if !q.enter(front.view().settings.max_connections_per_device) {
                super::stats::inc(&front.stats.over_device_limit);
                continue;
            }
            Some(q)
        } else {
            None
        };
        open.fetch_add(1, Ordering::Relaxed);
        let (fut, open) = (serve(front.clone(), stream, peer, local), open.clone());
        tokio::spawn(async move {
            fut.await;
            open.fetch_sub(1, Ordering::Relaxed);
            if let Some(q) = quota {
                q.leave();
            }
        });
    }
}

/// TLS handshake (bounded in time), then the MQTT session.
async fn handshake(
    front: Arc<Front>,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    limit: Duration,
) {
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let cert = super::tls::peer_name(tls.get_ref().1);
            session::serve(front, tls, peer, local, cert, Listener::Tls).await;
        }
        Ok(Err(e)) => {
            super::stats::inc(&front.stats.handshake_failures);
            debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => super::stats::inc(&front.stats.handshake_timeouts),
    }
}
