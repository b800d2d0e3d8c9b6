//! Toward the device: messages the router queued (`router.rs`) and control
//! frames go out through the device's bounded queue (`queue.rs`), numbered
//! by moat within the device's Receive Maximum. A message the queue cannot
//! hold is dropped and counted, so every message routed to a device is
//! delivered or counted.

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tracing::warn;

use super::{
    queue::{Msg, Pushed},
    session::{SessionError, Shared},
    stats::{add, inc},
    Front,
};

/// Largest single write toward a device.
const WRITE_BATCH: usize = 64 * 1024;

/// Queues a message for the device; false when the device must be
/// disconnected (overflow = disconnect). Drops are counted and logged.
pub fn queue_message(front: &Front, s: &Shared, frame: Bytes, msg: Msg) -> bool {
    match s.outbox.message(frame, msg) {
        Pushed::Queued => true,
        Pushed::DroppedOldest(n) => {
            add(&s.counters.dropped_queue_full, n);
            if front.stats.may_log_drop() {
                warn!(device = %s.device, dropped = n, "MQTT subscriber queue full; oldest messages dropped");
            }
            true
        }
        Pushed::Full => {
            inc(&s.counters.disconnected_slow);
            add(&s.counters.dropped_on_close, 1);
            warn!(device = %s.device, "MQTT subscriber too slow; disconnected (overflow = disconnect)");
            false
        }
    }
}

pub async fn write_device<W: AsyncWrite + Unpin>(s: &Shared, mut wr: W) -> Result<(), SessionError> {
    while let Some((batch, msgs)) = s.outbox.take(WRITE_BATCH).await {
        wr.write_all(&batch).await?;
        wr.flush().await?;
        add(&s.counters.delivered, msgs);
    }
    Ok(())
}
