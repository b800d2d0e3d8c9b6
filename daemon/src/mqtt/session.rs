//! One device connection, end to end: CONNECT (within the handshake
//! timeout), admission, a clean session on the embedded broker, then the two
//! pumps (`inbound.rs`: device → broker, `outbound.rs`: broker → device).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::BytesMut;
use moat_policy::mqtt::may_subscribe;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpStream,
};
use tracing::{debug, info};

use super::{
    admit::{admit, Admitted, Listener},
    codec::{self as c, CodecError, Connect, Refusal, Version},
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

/// One filter's answer in a SUBACK.
#[derive(Debug, Clone, Copy)]
pub enum Slot {
    /// Refused by moat with this code.
    Denied(u8),
    /// Sent on at QoS 0; the device gets this QoS if the broker accepts.
    Granted(u8),
}

/// State both pumps share.
#[derive(Debug)]
pub struct Shared {
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
    /// SUBSCRIBEs sent on to the broker: per packet id, what to answer for
    /// each of the device's filters.
    pub pending_subacks: Mutex<HashMap<u16, Vec<Slot>>>,
    /// The device's subscriptions (filter, granted QoS).
    pub subs: Mutex<Vec<(String, u8)>>,
    pub max: usize,
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

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The broker socket's write half, shared by both pumps (frames from the
/// device, and acks moat sends for it).
pub type BrokerTx = Arc<tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>>;

pub async fn send(to: &BrokerTx, bytes: &[u8]) -> Result<(), SessionError> {
    to.lock().await.write_all(bytes).await?;
    Ok(())
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

/// Connects the session to the broker and runs the pumps until either side ends.
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
    let receive_max = connect.receive_maximum();
    let client_id = connect.client_id().to_string();
    let assigned = client_id.is_empty().then(|| format!("moat-{:016x}", rand_u64()));
    let own_id = assigned.clone().unwrap_or_else(|| client_id.clone());
    // Sessions on the broker are per device: one device can neither take
    // over nor read another's session by choosing its client id.
    let broker_id = broker_client_id(&a.device.name, &own_id);
    let addr = match version {
        Version::V4 => front.broker.v4,
        Version::V5 => front.broker.v5,
    };
    let mut broker = TcpStream::connect(addr).await?;
    broker.set_nodelay(true)?;
    broker.write_all(&connect.rewrite(broker_id, &front.broker_user, &front.broker_pass)?).await?;
    let mut bbuf = BytesMut::with_capacity(512);
    let ack = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut broker, &mut bbuf, usize::MAX))
        .await
        .map_err(|_| SessionError::Timeout)??;
    let ack = match version {
        Version::V5 => c::rewrite_connack_v5(ack, assigned.as_deref())?,
        Version::V4 => c::connack_v4_no_session(ack),
    };
    wr.write_all(&ack).await?;
    if c::connack_code(&ack) != Some(0) {
        return Ok(());
    }
    info!(device = %a.device.name, client = %own_id, "MQTT session open");
    let settings = front.view().settings.clone();
    let s = Arc::new(Shared {
        version,
        device: a.device.name.clone(),
        device_id: a.device_id,
        mac: a.device.mac,
        client_id: own_id,
        counters: a.counters.clone(),
        quota: a.quota.clone(),
        outbox: Outbox::new(settings.queue_messages, settings.queue_bytes, settings.overflow, receive_max),
        pending_subacks: Mutex::new(HashMap::new()),
        subs: Mutex::new(Vec::new()),
        max: settings.max_packet_size as usize,
    });
    let (brd, bwr) = broker.into_split();
    let to_broker = Arc::new(tokio::sync::Mutex::new(bwr));
    let d2b = inbound::pump(front, &s, rd, buf, to_broker.clone());
    let b2d = outbound::pump(front, &s, brd, bbuf, to_broker);
    let wd = outbound::write_device(&s, wr);
    tokio::pin!(d2b, b2d, wd);
    let result = tokio::select! {
        // The device is gone: everything it sent is already at the broker.
        r = &mut d2b => r,
        // The broker ended the session: let the device have what is queued.
        r = &mut b2d => {
            s.outbox.finish();
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut wd).await;
            r
        }
        r = &mut wd => r,
    };
    add(&s.counters.dropped_on_close, s.outbox.close());
    result
}

/// `device:client` with the characters rumqttd refuses in client ids
/// (`+ $ # /`, and `%` and `:` to stay unambiguous) escaped as `%XX`.
fn broker_client_id(device: &str, client: &str) -> String {
    let esc = |s: &str| {
        s.chars()
            .map(|ch| if "+$#/%:".contains(ch) { format!("%{:02X}", ch as u32) } else { ch.to_string() })
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
    fn broker_ids_are_per_device_and_escaped() {
        assert_eq!(super::broker_client_id("cam", "c1"), "cam:c1");
        assert_eq!(super::broker_client_id("a:b", "x/y#"), "a%3Ab:x%2Fy%23");
        assert_ne!(super::broker_client_id("a", "b:c"), super::broker_client_id("a:b", "c"));
    }
}
