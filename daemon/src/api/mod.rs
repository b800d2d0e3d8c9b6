//! The control API: HTTP/JSON over a Unix socket (mode 0660, group
//! `[api] group`, peers checked by credentials). Connection tasks parse and
//! validate requests (`routes`), then hand each command to the main loop,
//! which owns the daemon's state and answers it (`handle`). Live events go
//! out through a broadcast channel as NDJSON (`feed`).

mod decide;
pub mod feed;
pub mod handle;
pub mod peer;
pub mod routes;
pub mod socket;
mod view;

use tokio::sync::oneshot;

use crate::http::Response;

/// Largest request body accepted (bigger: 413).
pub const MAX_BODY: usize = 64 * 1024;

/// What a client asked the daemon to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status,
    Devices,
    /// One device, by MAC or name.
    Device(String),
    /// Let a device through: its policy (default `[gateway] approved_policy`),
    /// a name for a device the config does not list; lifts a quarantine.
    Approve {
        device: String,
        policy: Option<String>,
        name: Option<String>,
    },
    Quarantine {
        device: String,
        reason: String,
    },
    SetPolicy {
        device: String,
        policy: String,
    },
    /// Delete what moat holds about a device.
    Forget(String),
    Plan,
    Reload,
    /// The recent classifier events, as NDJSON.
    RecentEvents,
}

/// A command on its way to the main loop, with where the answer goes.
#[derive(Debug)]
pub struct Call {
    pub command: Command,
    pub reply: oneshot::Sender<Response>,
}
