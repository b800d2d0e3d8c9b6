//! The control socket: created 0660 with `[api] group`, each connection
//! checked against the allowed peers, one request per connection.

use std::{
    os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use moat_policy::service::ApiSettings;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
    sync::{broadcast::error::RecvError, mpsc, oneshot, Semaphore},
};
use tracing::{debug, info, warn};

use super::{
    feed::Feed,
    peer::{self, Allowed, Peer},
    routes::{self, Route},
    Call, Command, MAX_BODY,
};
use crate::http::{self, Response};

/// Requests served at once (a local client cannot exhaust the daemon).
const MAX_CONNECTIONS: usize = 32;
/// Live event streams at once, apart: followers never lock out requests.
const MAX_FOLLOWERS: usize = 8;
/// A client that does not read its answer (or its stream) this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A quiet stream says it is alive this often (a gone client is noticed).
const HEARTBEAT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("control socket {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("control socket {path}: a file that is not a socket is in the way")]
    NotASocket { path: String },
    #[error("control socket directory {path} is writable by others or owned by another user; use a directory only root or moat can write (default /run/moat)")]
    UnsafeDir { path: String },
}

/// Binds the socket and serves it in the background until the daemon exits.
pub fn spawn(api: &ApiSettings, calls: mpsc::Sender<Call>, feed: Feed) -> Result<PathBuf, SocketError> {
    let path = PathBuf::from(&api.socket);
    let gid = peer::group_id(&api.group);
    if gid.is_none() {
        warn!(group = %api.group, "[api] group does not exist; only root can use the control socket");
    }
    let listener = bind(&path, gid)?;
    info!(socket = %path.display(), group = %api.group, "control API listening");
    let allowed = Allowed { own_uid: peer::own_uid(), gid };
    tokio::spawn(accept(listener, allowed, calls, feed));
    Ok(path)
}

/// Replaces a stale socket, binds, then sets 0660 and the group. Until the
/// chmod the socket has the umask's mode, which never grants others write
/// (connect) permission under any sane umask; the peer check covers the rest.
fn bind(path: &Path, gid: Option<u32>) -> Result<UnixListener, SocketError> {
    let io = |source| SocketError::Io { path: path.display().to_string(), source };
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o750).create(dir).map_err(io)?;
        std::os::unix::fs::chown(dir, None, gid).map_err(io)?;
    }
    if let Some(dir) = path.parent() {
        safe_dir(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(io)?,
        Ok(_) => return Err(SocketError::NotASocket { path: path.display().to_string() }),
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    // lchown: never follow a link someone put in the socket's place.
    std::os::unix::fs::lchown(path, None, gid).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    Ok(listener)
}

/// The socket's directory must be writable only by root or moat itself:
/// otherwise another user could swap the socket for a link between the
/// bind and the chmod and have moat change some other file's mode.
fn safe_dir(dir: &Path) -> Result<(), SocketError> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(dir).map_err(|source| SocketError::Io { path: dir.display().to_string(), source })?;
    let owner_ok = m.uid() == 0 || m.uid() == peer::own_uid();
    if !owner_ok || m.mode() & 0o022 != 0 {
        return Err(SocketError::UnsafeDir { path: dir.display().to_string() });
    }
    Ok(())
}

async fn accept(listener: UnixListener, allowed: Allowed, calls: mpsc::Sender<Call>, feed: Feed) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let followers = Arc::new(Semaphore::new(MAX_FOLLOWERS));
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(e) => {
                debug!(error = %e, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(refuse(conn, 503, "too many control connections; try again"));
            continue;
        };
        let (allowed, calls, feed, followers) = (allowed.clone(), calls.clone(), feed.clone(), followers.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(conn, &allowed, calls, feed, followers).await {
                debug!(error = %e, "control connection ended");
            }
            drop(slot);
        });
    }
}

async fn refuse(mut conn: UnixStream, status: u16, message: &'static str) {
    let _ = timed(http::write_response(&mut conn, &Response::error(status, message))).await;
}

async fn serve(
    mut conn: UnixStream,
    allowed: &Allowed,
    calls: mpsc::Sender<Call>,
    feed: Feed,
    followers: Arc<Semaphore>,
) -> std::io::Result<()> {
    let cred = conn.peer_cred()?;
    let peer = Peer { uid: cred.uid(), gid: cred.gid(), pid: cred.pid() };
    if !allowed.permits(&peer) {
        warn!(uid = peer.uid, gid = peer.gid, "control socket: peer refused (not root, moat or in the [api] group)");
        let r = Response::error(403, "permission denied: not root, moat's user or a member of the [api] group");
        timed(http::write_response(&mut conn, &r)).await?;
        http::linger(&mut conn).await;
        return Ok(());
    }
    let req = match http::read_request(&mut conn, MAX_BODY).await {
        Ok(r) => r,
        Err(e) => match e.status() {
            Some(status) => {
                timed(http::write_response(&mut conn, &Response::error(status, e.to_string()))).await?;
                http::linger(&mut conn).await;
                return Ok(());
            }
            None => return Ok(()),
        },
    };
    debug!(method = %req.method, path = %req.path, uid = peer.uid, "control request");
    let response = match routes::route(&req) {
        Err(r) => r,
        Ok(Route::Events { follow: true }) => match followers.try_acquire_owned() {
            // The stream holds a follower slot, and gives its request slot back.
            Ok(_stream) => return follow(conn, &feed).await,
            Err(_) => Response::error(503, format!("{MAX_FOLLOWERS} event streams are open already")),
        },
        Ok(Route::Events { follow: false }) => ask(&calls, Command::RecentEvents).await,
        Ok(Route::Call(c)) => ask(&calls, c).await,
    };
    timed(http::write_response(&mut conn, &response)).await
}

/// A write that gives up on a client that does not read.
async fn timed(write: impl std::future::Future<Output = std::io::Result<()>>) -> std::io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client does not read")))
}

/// Hands a command to the main loop and waits for its answer.
async fn ask(calls: &mpsc::Sender<Call>, command: Command) -> Response {
    let (reply, answer) = oneshot::channel();
    if calls.send(Call { command, reply }).await.is_err() {
        return Response::error(503, "moat is stopping");
    }
    answer.await.unwrap_or_else(|_| Response::error(503, "moat is stopping"))
}

/// Streams events as NDJSON until the client goes away: a failed or stalled
/// write ends it, and a heartbeat line makes one happen on a quiet stream. A
/// client that half-closes (done sending) keeps its stream.
async fn follow(mut conn: UnixStream, feed: &Feed) -> std::io::Result<()> {
    let mut rx = feed.subscribe();
    timed(async {
        conn.write_all(http::head(200, "application/x-ndjson", None, None).as_bytes()).await?;
        conn.flush().await
    })
    .await?;
    let mut scratch = [0u8; 64];
    let mut reading = true;
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.tick().await;
    loop {
        let line = tokio::select! {
            got = rx.recv() => match got {
                Ok(line) => line.to_string(),
                Err(RecvError::Lagged(n)) => format!("{{\"kind\":\"lagged\",\"missed\":{n}}}"),
                Err(RecvError::Closed) => return Ok(()),
            },
            _ = beat.tick() => "{\"kind\":\"heartbeat\"}".to_string(),
            n = conn.read(&mut scratch), if reading => {
                match n {
                    Ok(0) => reading = false,
                    Ok(_) => {}
                    Err(_) => return Ok(()),
                }
                continue;
            }
        };
        timed(async {
            conn.write_all(line.as_bytes()).await?;
            conn.write_all(b"\n").await?;
            conn.flush().await
        })
        .await?;
    }
}
