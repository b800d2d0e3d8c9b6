//! One device connection, end to end: CONNECT (within the handshake
//! timeout), admission, a clean session registered with the router, then
//! the device's packets (`inbound.rs`) and its queue's writer
//! (`outbound.rs`) until it leaves; then its will.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::BytesMut;
use moat_policy::mqtt::may_subscribe;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    sync::Notify,
};
use tracing::{debug, info};

use super::{
    admit::{admit, Admitted, Listener},
    codec::{self as c, CodecError, Connect, Refusal, SubOptions, Version},
    inbound, outbound,
    queue::{NotReading, Outbox},
    quota::DeviceQuota,
    stats::{add, dec, inc, DeviceCounters},
    view::View,
    Front,
};

/// Largest first packet (CONNECT) read before the device is authenticated.
const MAX_CONNECT: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("timed out waiting for CONNECT")]
    Timeout,
    #[error("connection closed")]
    Closed,
    #[error("the device stopped reading")]
    NotReading,
}

impl From<NotReading> for SessionError {
    fn from(_: NotReading) -> Self {
        SessionError::NotReading
    }
}

/// Reads one whole frame (at most `max` bytes of body).
pub async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<BytesMut, SessionError> {
    loop {
        if let Some(len) = c::frame_len(buf, max)? {
            return Ok(buf.split_to(len));
        }
        if rd.read_buf(buf).await? == 0 {
            return Err(SessionError::Closed);
        }
    }
}

/// One subscription of a session.
#[derive(Debug, Clone)]
pub struct SubEntry {
    pub filter: String,
    pub qos: u8,
    pub options: SubOptions,
}

/// A session: what the pumps and the router share.
#[derive(Debug)]
pub struct Shared {
    /// Unique among sessions (the router's registration key may be reused).
    pub id: u64,
    pub version: Version,
    pub device: String,
    /// The device's classifier id and MAC: its permissions are looked up
    /// by these on every packet (a reload that moves the name moves nothing).
    pub device_id: u32,
    pub mac: [u8; 6],
    pub client_id: String,
    pub counters: Arc<DeviceCounters>,
    pub quota: Arc<DeviceQuota>,
    pub outbox: Outbox,
    pub subs: Mutex<Vec<SubEntry>>,
    pub max: usize,
    /// Ends the session (taken over by a new connection with its client id,
    /// or too slow under `overflow = "disconnect"`).
    pub kill: Notify,
}

impl Shared {
    pub fn denied_code(&self) -> u8 {
        match self.version {
            Version::V4 => 0x80,
            Version::V5 => c::NOT_AUTHORIZED_V5,
        }
    }

    /// The device's current permissions (`None`: no broker access any more).
    pub fn acl<'v>(&self, view: &'v View) -> Option<&'v moat_policy::mqtt::PolicyMqtt> {
        view.device(self.device_id, &self.mac).and_then(|d| d.acl.as_ref())
    }

    /// Is `filter` still a subscription the device may hold?
    pub fn may_hold(&self, view: &View, filter: &str) -> bool {
        self.acl(view).is_some_and(|a| may_subscribe(&a.subscribe, filter, &self.device, &self.client_id))
    }
}

/// Serves one device connection (TLS already done, or plaintext).
pub async fn serve<S>(
    front: Arc<Front>,
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    cert: Option<String>,
    listener: Listener,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let settings = front.view().settings.clone();
    let mut buf = BytesMut::with_capacity(512);
    let limit = Duration::from_millis(u64::from(settings.handshake_timeout_ms));
    let cap = MAX_CONNECT.min(settings.max_packet_size as usize);
    let first = match tokio::time::timeout(limit, read_frame(&mut rd, &mut buf, cap)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return debug!(%peer, error = %e, "no CONNECT"),
        Err(_) => return inc(&front.stats.handshake_timeouts),
    };
    if c::kind(&first) != c::CONNECT {
        return debug!(%peer, "first packet is not CONNECT");
    }
    let connect = match Connect::parse(first, cap) {
        Ok(cn) => cn,
        Err(e) => {
            if matches!(e, CodecError::Protocol(_)) {
                // CONNACK 1: unacceptable protocol version (MQTT 3.1 and older).
                let _ = wr.write_all(&[c::CONNACK << 4, 2, 0, 1]).await;
            }
            return debug!(%peer, error = %e, "bad CONNECT");
        }
    };
    if connect.invalid_empty_id() {
        let _ = wr.write_all(&[c::CONNACK << 4, 2, 0, 2]).await;
        return;
    }
    let version = connect.version();
    let admitted = match admit(&front, &connect, peer, local, cert.as_deref(), listener).await {
        Ok(a) => a,
        Err((why, _)) => return refuse(wr, version, why).await,
    };
    let counters = admitted.counters.clone();
    inc(&counters.connections_open);
    let name = admitted.device.name.clone();
    match run(&front, connect, admitted, rd, wr, buf).await {
        Ok(()) | Err(SessionError::Closed) => debug!(device = %name, %peer, "MQTT session ended"),
        Err(SessionError::Codec(e)) => {
            inc(&counters.malformed);
            info!(device = %name, %peer, error = %e, "MQTT client disconnected: bad packet");
        }
        Err(e) => info!(device = %name, %peer, error = %e, "MQTT session ended"),
    }
    dec(&counters.connections_open);
}

async fn refuse<W: AsyncWrite + Unpin>(mut wr: W, version: Version, why: Refusal) {
    let _ = wr.write_all(&c::connack_refused(version, why)).await;
    let _ = wr.shutdown().await;
}

/// Runs an admitted session until the device leaves, misbehaves or is
/// taken over; then its will (unless it said a clean goodbye).
async fn run<R, W>(
    front: &Front,
    connect: Connect,
    a: Admitted,
    rd: R,
    mut wr: W,
    buf: BytesMut,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let version = connect.version();
    let client_id = connect.client_id().to_string();
    let assigned = client_id.is_empty().then(|| format!("moat-{:016x}", rand_u64()));
    let own_id = assigned.clone().unwrap_or_else(|| client_id.clone());
    let settings = front.view().settings.clone();
    wr.write_all(&c::connack_ok(version, assigned.as_deref(), settings.max_packet_size)?).await?;
    info!(device = %a.device.name, client = %own_id, "MQTT session open");
    let s = Arc::new(Shared {
        id: front.router.session_id(),
        version,
        device: a.device.name.clone(),
        device_id: a.device_id,
        mac: a.device.mac,
        client_id: own_id.clone(),
        counters: a.counters.clone(),
        quota: a.quota.clone(),
        outbox: Outbox::new(
            settings.queue_messages,
            settings.queue_bytes,
            settings.overflow,
            connect.receive_maximum(),
        ),
        subs: Mutex::new(Vec::new()),
        max: settings.max_packet_size as usize,
        kill: Notify::new(),
    });
    // Sessions are per device: one device can neither take over nor read
    // another's session by choosing its client id.
    let key = session_key(&a.device.name, &own_id);
    if let Some(old) = front.router.register(&key, s.clone()) {
        old.kill.notify_one();
    }
    let will = connect.will();
    let inbound = inbound::pump(front, &s, rd, buf, connect.keepalive_limit());
    let writer = outbound::write_device(&s, wr);
    tokio::pin!(inbound, writer);
    let result = tokio::select! {
        r = &mut inbound => r,
        r = &mut writer => r.map(|()| inbound::End::Gone),
        _ = s.kill.notified() => Ok(inbound::End::Gone),
    };
    front.router.unregister(&key, s.id);
    if let (Some(w), true) = (will, !matches!(result, Ok(inbound::End::Clean))) {
        front.router.publish(front, &w, 0);
    }
    add(&s.counters.dropped_on_close, s.outbox.close());
    result.map(|_| ())
}

/// The session's key, `device:client`, with `%` and `:` escaped as `%XX`
/// (so two devices' keys can never be equal).
fn session_key(device: &str, client: &str) -> String {
    let esc = |s: &str| {
        s.chars()
            .map(|ch| if "%:".contains(ch) { format!("%{:02X}", ch as u32) } else { ch.to_string() })
            .collect::<String>()
    };
    format!("{}:{}", esc(device), esc(client))
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn session_keys_are_per_device_and_escaped() {
        assert_eq!(super::session_key("cam", "c1"), "cam:c1");
        assert_eq!(super::session_key("a:b", "x/y%"), "a%3Ab:x/y%25");
        assert_ne!(super::session_key("a", "b:c"), super::session_key("a:b", "c"));
    }
}
