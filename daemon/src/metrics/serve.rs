//! The `/metrics` endpoint: a TCP listener whose connections ask the main
//! loop for a rendering (the daemon's state lives there; no locks).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, Semaphore},
};
use tracing::{debug, info};

use crate::http::{self, Response};

/// A scrape waiting for its text.
pub type Scrape = oneshot::Sender<String>;

/// Scrapes served at once (a local user cannot exhaust moat's descriptors).
const MAX_CONNECTIONS: usize = 4;
/// Whole-connection deadline: request, render and a client that reads slowly.
const DEADLINE: Duration = Duration::from_secs(15);

/// Content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `listen` and answers scrapes in the background.
pub async fn spawn(listen: SocketAddr, scrapes: mpsc::Sender<Scrape>) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    info!(%listen, "metrics endpoint listening");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((conn, peer)) => {
                    // Over the cap the connection is just closed: a scraper retries.
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else { continue };
                    let scrapes = scrapes.clone();
                    tokio::spawn(async move {
                        let answered = tokio::time::timeout(DEADLINE, answer(conn, scrapes)).await;
                        match answered {
                            Ok(Err(e)) => debug!(%peer, error = %e, "metrics connection"),
                            Err(_) => debug!(%peer, "metrics connection timed out"),
                            Ok(Ok(())) => {}
                        }
                        drop(slot);
                    });
                }
                Err(e) => {
                    debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

async fn answer(mut conn: TcpStream, scrapes: mpsc::Sender<Scrape>) -> std::io::Result<()> {
    let response = match http::read_request(&mut conn, 0).await {
        Err(e) => match e.status() {
            Some(status) => Response::text(status, "text/plain", format!("{e}\n")),
            None => return Ok(()),
        },
        Ok(req) if req.path != "/metrics" => Response::text(404, "text/plain", "only /metrics is served here\n".into()),
        Ok(req) if req.method != "GET" => {
            Response { allow: Some("GET"), ..Response::text(405, "text/plain", "GET only\n".into()) }
        }
        Ok(_) => {
            let (tx, rx) = oneshot::channel();
            let text = match scrapes.send(tx).await {
                Ok(()) => rx.await.ok(),
                Err(_) => None,
            };
            match text {
                Some(t) => Response::text(200, CONTENT_TYPE, t),
                None => Response::text(503, "text/plain", "moat is stopping\n".into()),
            }
        }
    };
    http::write_response(&mut conn, &response).await
}
