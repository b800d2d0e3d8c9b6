//! The plaintext upgrade: a device's tcp/1883 toward the internet is
//! redirected here by nftables (only for policies that name an upstream).
//! The kernel's flow table says which device it is (looked up with the
//! address the device dialled, from SO_ORIGINAL_DST); the session is carried
//! to the policy's upstream broker over TLS, its certificate verified against
//! the configured CA, so the device's messages never cross the internet in
//! clear. The bytes are relayed as they are: the upstream broker speaks for
//! itself (it authenticates the device's own cloud credentials).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsFd,
    path::Path,
    sync::{Arc, Mutex, OnceLock},
};

use moat_policy::mqtt::Upstream;
use nix::sys::socket::{getsockopt, sockopt};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

use super::{stats::inc, Front};

/// TCP connect plus TLS handshake to the upstream.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Client configs per CA file (built once: parsing PEM per connection is waste).
fn client_config(ca: &str) -> Result<Arc<ClientConfig>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<ClientConfig>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let mut map = super::lock(cache);
    if let Some(c) = map.get(ca) {
        return Ok(c.clone());
    }
    let cfg = super::tls::client(Path::new(ca)).map_err(|e| e.to_string())?;
    map.insert(ca.to_string(), cfg.clone());
    Ok(cfg)
}

/// Where the device meant to go, before the redirect.
fn original_dst(s: &TcpStream, peer: &SocketAddr) -> Option<SocketAddr> {
    if peer.is_ipv4() {
        let a = getsockopt(&s.as_fd(), sockopt::OriginalDst).ok()?;
        let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
        Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
    } else {
        let a = getsockopt(&s.as_fd(), sockopt::Ip6tOriginalDst).ok()?;
        Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)), u16::from_be(a.sin6_port)))
    }
}

/// Relays one redirected connection to its device's upstream.
pub async fn relay(front: Arc<Front>, mut device: TcpStream, peer: SocketAddr, local: SocketAddr) {
    let Some(dst) = original_dst(&device, &peer) else {
        return warn!(%peer, "MQTT upgrade: no original destination; closed");
    };
    let view = front.view();
    // The classifier saw the dialled address, unless br_netfilter redirected
    // in the bridge before the classifier ran: then it saw the gateway's.
    let seen = front.identity.lookup(peer, dst).or_else(|| front.identity.lookup(peer, local));
    let Some((seen, dev)) = seen.and_then(|s| view.device(s.device_id, &s.mac).map(|d| (s, d.clone()))) else {
        return warn!(%peer, "MQTT upgrade: connection from an unknown device; closed");
    };
    let Some(up) = dev.acl.as_ref().and_then(|a| a.upstream.as_deref()).and_then(|u| view.upstream(u)).cloned() else {
        return warn!(device = %dev.name, "MQTT upgrade: the device's policy names no upstream; closed");
    };
    let counters = front.stats.device(&dev.name);
    if !front.quotas.of(seen.device_id).allow_connect(view.settings.connections_per_minute) {
        inc(&counters.rate_limited);
        return;
    }
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&up)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return warn!(device = %dev.name, upstream = %up.host, error = %e, "MQTT upgrade: upstream unreachable")
        }
        Err(_) => return warn!(device = %dev.name, upstream = %up.host, "MQTT upgrade: upstream timed out"),
    };
    inc(&counters.upgraded_sessions);
    info!(device = %dev.name, %dst, upstream = %up.host, "MQTT upgrade: plaintext session carried over TLS");
    if let Err(e) = tokio::io::copy_bidirectional(&mut device, &mut upstream).await {
        tracing::debug!(device = %dev.name, error = %e, "MQTT upgrade session ended");
    }
}

async fn connect(up: &Upstream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let cfg = client_config(&up.ca_file)?;
    let tcp = match up.address {
        Some(ip) => TcpStream::connect(SocketAddr::new(ip, up.port)).await,
        None => TcpStream::connect((up.host.as_str(), up.port)).await,
    }
    .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = super::tls::server_name(&up.host).map_err(|e| e.to_string())?;
    TlsConnector::from(cfg).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))
}
