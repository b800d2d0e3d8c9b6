//! MQTT 3.1.1 framing on top of the TLS stream, with rumqttc's `mqttbytes::v4` as the codec
//! only, plus the credentials file and the CONNECT/CONNACK and SUBSCRIBE/SUBACK exchanges.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Subscribe, SubscribeReasonCode};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::tls::{Endpoint, Stream};

/// Largest packet accepted from the broker.
pub const MAX_PACKET: usize = 1 << 20;
/// Largest `--payload` (leaves room for the topic in `MAX_PACKET`).
pub const MAX_PAYLOAD: usize = MAX_PACKET - 1024;
/// Payload bytes used by the load generator itself: send time (u64 ns) + sequence (u64).
pub const PAYLOAD_HEADER: usize = 16;
/// Room made in the read buffer once less than `MIN_SPARE` is left (so idle connections keep
/// their small initial buffer).
const READ_CHUNK: usize = 16 * 1024;
const MIN_SPARE: usize = 512;
/// TCP connect + TLS handshake + CONNACK (or SUBACK) must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One `username password` line of the credentials file.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub pass: String,
}

/// Reads `username password` lines (blank lines and `#` comments are skipped).
pub fn load_creds(path: &Path) -> Result<Vec<Login>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading creds file {}", path.display()))?;
    let mut logins = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(user), Some(pass), None) => logins.push(Login { user: user.to_owned(), pass: pass.to_owned() }),
            _ => bail!("{}:{}: expected `username password`", path.display(), n + 1),
        }
    }
    if logins.is_empty() {
        bail!("creds file {} has no `username password` line", path.display());
    }
    Ok(logins)
}

/// An MQTT connection: the TLS stream and the bytes read but not yet parsed.
#[derive(Debug)]
pub struct Conn {
    pub stream: Stream,
    pub buf: BytesMut,
}

impl Conn {
    /// TLS connect, CONNECT (clean session), and wait for a successful CONNACK.
    pub async fn open(ep: &Endpoint, client_id: &str, login: &Login, keep_alive: u16) -> Result<Self> {
        let handshake = async {
            let mut conn = Self { stream: ep.connect().await?, buf: BytesMut::with_capacity(1024) };
            let mut connect = Connect::new(client_id);
            connect.keep_alive = keep_alive;
            connect.set_login(login.user.as_str(), login.pass.as_str());
            conn.send(&Packet::Connect(connect)).await?;
            match conn.recv().await? {
                Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => Ok(conn),
                Packet::ConnAck(ack) => bail!("CONNACK refused: {:?}", ack.code),
                other => bail!("expected CONNACK, got {other:?}"),
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| anyhow!("no CONNACK within {HANDSHAKE_TIMEOUT:?}"))?
            .with_context(|| format!("{client_id} (user {})", login.user))
    }

    /// SUBSCRIBE to one filter and wait for a successful SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<()> {
        let mut sub = Subscribe::new(filter, qos);
        sub.pkid = 1;
        self.send(&Packet::Subscribe(sub)).await?;
        let reply = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.recv())
            .await
            .map_err(|_| anyhow!("no SUBACK within {HANDSHAKE_TIMEOUT:?}"))??;
        match reply {
            Packet::SubAck(ack) if ack.return_codes.iter().all(|c| matches!(c, SubscribeReasonCode::Success(_))) => {
                Ok(())
            }
            Packet::SubAck(ack) => bail!("SUBSCRIBE {filter:?} refused: {:?}", ack.return_codes),
            other => bail!("expected SUBACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, packet: &Packet) -> Result<()> {
        send(&mut self.stream, packet).await
    }

    pub async fn recv(&mut self) -> Result<Packet> {
        read_packet(&mut self.stream, &mut self.buf).await
    }
}

/// Appends the encoding of `packet` to `out`.
pub fn encode(packet: &Packet, out: &mut BytesMut) -> Result<()> {
    packet.write(out, MAX_PACKET).map_err(|e| anyhow!("encoding {packet:?}: {e}"))?;
    Ok(())
}

/// Parses one complete packet off the front of `buf`, if there is one.
pub fn try_parse(buf: &mut BytesMut) -> Result<Option<Packet>> {
    match Packet::read(buf, MAX_PACKET) {
        Ok(p) => Ok(Some(p)),
        Err(CodecError::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(anyhow!("bad packet from broker: {e}")),
    }
}

/// Reads more bytes into `buf`; an orderly close is an error. Cancel safe.
pub async fn fill<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut BytesMut) -> Result<()> {
    if buf.capacity() - buf.len() < MIN_SPARE {
        buf.reserve(READ_CHUNK);
    }
    if reader.read_buf(buf).await.context("read")? == 0 {
        bail!("connection closed by broker");
    }
    Ok(())
}

/// Next packet, reading as needed. Cancel safe: bytes read stay in `buf`.
pub async fn read_packet<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut BytesMut) -> Result<Packet> {
    loop {
        if let Some(p) = try_parse(buf)? {
            return Ok(p);
        }
        fill(reader, buf).await?;
    }
}

/// Writes all of `bytes` and flushes (TLS records leave the process).
pub async fn write_flush<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> Result<()> {
    writer.write_all(bytes).await.context("write")?;
    writer.flush().await.context("flush")
}

pub async fn send<W: AsyncWrite + Unpin>(writer: &mut W, packet: &Packet) -> Result<()> {
    let mut out = BytesMut::new();
    encode(packet, &mut out)?;
    write_flush(writer, &out).await
}
