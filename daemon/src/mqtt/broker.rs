//! The embedded broker: rumqttd 0.20 on loopback, reachable only by moat's
//! front (its own listeners would let one stalled TLS handshake block every
//! client, and it has no topic permissions). It accepts one login, a random
//! secret made at each start, so a local process cannot bypass the front.
//!
//! Router limits are sized for a router's RAM: small commit-log segments
//! (rumqttd holds `max_segment_size × max_segment_count` per subscribed
//! filter, ~4.5× that in real memory), and moat's front reads every
//! subscriber's messages promptly into its own bounded, counted queues, so
//! rumqttd never falls behind and skips ("jumping to head") silently.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, TcpListener},
};

use moat_policy::mqtt::MqttSettings;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Per subscribed filter: 256 KiB × 4 segments of messages. The front takes
/// every message at once, so the log only has to bridge the router's passes
/// (with 64 KiB × 2, 100 publishers outran it and it skipped ahead).
const SEGMENT_BYTES: usize = 256 * 1024;
const SEGMENTS: usize = 4;
/// Messages in flight per connection between the broker and the front.
const INFLIGHT: usize = 100;

pub const INTERNAL_USER: &str = "moat-front";

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("finding a loopback port for the broker: {0}")]
    Port(std::io::Error),
    #[error("starting the broker thread: {0}")]
    Thread(std::io::Error),
}

/// Where the broker listens: rumqttd needs one listener per protocol version.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub v4: SocketAddr,
    pub v5: SocketAddr,
}

/// Starts rumqttd on its own thread; returns where it listens.
pub fn start(s: &MqttSettings, secret: &str) -> Result<Addrs, BrokerError> {
    // Reserve two free loopback ports, then hand them to rumqttd.
    let probe = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(BrokerError::Port);
    let (a, b) = (probe()?, probe()?);
    let addrs =
        Addrs { v4: a.local_addr().map_err(BrokerError::Port)?, v5: b.local_addr().map_err(BrokerError::Port)? };
    drop((a, b));
    let cfg = config(s, addrs, secret);
    std::thread::Builder::new()
        .name("moat-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(cfg);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    Ok(addrs)
}

fn config(s: &MqttSettings, addrs: Addrs, secret: &str) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: s.max_packet_size as usize,
        max_inflight_count: INFLIGHT,
        auth: Some(HashMap::from([(INTERNAL_USER.to_string(), secret.to_string())])),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = |name: &str, listen: SocketAddr| ServerSettings {
        name: name.to_string(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: connections.clone(),
    };
    let router = RouterConfig {
        max_connections: s.max_connections as usize + 16,
        max_outgoing_packet_count: 200,
        max_segment_size: SEGMENT_BYTES,
        max_segment_count: SEGMENTS,
        ..RouterConfig::default()
    };
    Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("v4".to_string(), server("v4", addrs.v4))])),
        v5: Some(HashMap::from([("v5".to_string(), server("v5", addrs.v5))])),
        ..Config::default()
    }
}
