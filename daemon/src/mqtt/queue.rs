//! The bounded queue of frames toward one device. Messages (PUBLISH) count
//! against `queue_messages`/`queue_bytes`; control frames (acks, SUBACK,
//! PINGRESP) are few by protocol and always queued. When a message does not
//! fit, the overflow policy decides: drop the oldest messages (the caller
//! counts them) or refuse, and the caller disconnects the device.
//!
//! Delivery is numbered here: moat's packet ids, an in-flight window of the
//! device's Receive Maximum, the device's acks consumed here.

use std::{
    collections::{HashSet, VecDeque},
    sync::Mutex,
};

use bytes::{Bytes, BytesMut};
use moat_policy::mqtt::Overflow;
use tokio::sync::Notify;

/// A queued message: its QoS and where its packet id sits in the frame
/// (moat numbers deliveries to the device itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    pub qos: u8,
    pub pkid_at: usize,
}

#[derive(Debug)]
struct Frame {
    bytes: Bytes,
    msg: Msg,
}

#[derive(Debug, Default)]
struct Inner {
    /// Acks, SUBACK, PINGRESP, PUBREL: sent ahead of messages, so a full
    /// in-flight window never holds back the frames that would free it.
    controls: VecDeque<Bytes>,
    control_bytes: usize,
    frames: VecDeque<Frame>,
    msg_bytes: usize,
    closed: bool,
    /// Packet ids of QoS 1/2 deliveries the device has not completed.
    inflight: HashSet<u16>,
    next_id: u16,
}

impl Inner {
    fn free_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.inflight.contains(&self.next_id) {
                return self.next_id;
            }
        }
    }
}

/// Control frames waiting for a device that does not read: past this it is
/// disconnected (a client that sends without reading would grow it forever).
const MAX_CONTROL_BYTES: usize = 256 * 1024;

/// The device stopped reading while its control frames piled up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotReading;

/// What happened to a pushed message.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued after dropping this many older messages.
    DroppedOldest(u64),
    /// Not queued: the queue is full and the policy is to disconnect.
    Full,
}

#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    notify: Notify,
    max_msgs: usize,
    max_bytes: usize,
    overflow: Overflow,
    /// The device's Receive Maximum (v5; 65535 otherwise).
    inflight_limit: usize,
}

impl Outbox {
    pub fn new(max_msgs: u32, max_bytes: u32, overflow: Overflow, inflight_limit: u16) -> Self {
        Outbox {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            max_msgs: max_msgs.max(1) as usize,
            max_bytes: max_bytes.max(1) as usize,
            overflow,
            inflight_limit: usize::from(inflight_limit.max(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        super::lock(&self.inner)
    }

    /// Queues a control frame; `Err` when the device has not been reading.
    pub fn control(&self, bytes: Bytes) -> Result<(), NotReading> {
        let mut q = self.lock();
        if q.control_bytes + bytes.len() > MAX_CONTROL_BYTES {
            return Err(NotReading);
        }
        q.control_bytes += bytes.len();
        q.controls.push_back(bytes);
        drop(q);
        self.notify.notify_one();
        Ok(())
    }

    /// Queues a message, applying the overflow policy.
    pub fn message(&self, bytes: Bytes, msg: Msg) -> Pushed {
        let mut q = self.lock();
        let mut dropped = 0;
        while !q.frames.is_empty() && (q.frames.len() + 1 > self.max_msgs || q.msg_bytes + bytes.len() > self.max_bytes)
        {
            if self.overflow == Overflow::Disconnect {
                return Pushed::Full;
            }
            if let Some(old) = q.frames.pop_front() {
                q.msg_bytes -= old.bytes.len();
                dropped += 1;
            }
        }
        q.msg_bytes += bytes.len();
        q.frames.push_back(Frame { bytes, msg });
        drop(q);
        self.notify.notify_one();
        if dropped == 0 {
            Pushed::Queued
        } else {
            Pushed::DroppedOldest(dropped)
        }
    }

    /// The device completed delivery `id` (PUBACK, or PUBCOMP for QoS 2).
    pub fn acked(&self, id: u16) {
        if self.lock().inflight.remove(&id) {
            self.notify.notify_one();
        }
    }

    /// Waits for frames and takes up to `max_bytes` of them as one buffer
    /// (one TLS write): control frames first, then messages, numbering QoS
    /// 1/2 messages for the device and keeping at most `inflight_limit` of
    /// them unacknowledged. `None` once closed and drained. Also returns how
    /// many messages the batch holds.
    pub async fn take(&self, max_bytes: usize) -> Option<(BytesMut, u64)> {
        loop {
            let notified = self.notify.notified();
            {
                let mut q = self.lock();
                let (out, msgs) = self.fill(&mut q, max_bytes);
                if !out.is_empty() {
                    return Some((out, msgs));
                }
                if q.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    fn fill(&self, q: &mut Inner, max_bytes: usize) -> (BytesMut, u64) {
        let mut out = BytesMut::new();
        while let Some(c) = q.controls.pop_front() {
            q.control_bytes -= c.len();
            out.extend_from_slice(&c);
        }
        let mut msgs = 0u64;
        while let Some(f) = q.frames.front() {
            if !out.is_empty() && out.len() + f.bytes.len() > max_bytes {
                break;
            }
            if f.msg.qos > 0 && q.inflight.len() >= self.inflight_limit {
                break;
            }
            let Some(f) = q.frames.pop_front() else { break };
            q.msg_bytes -= f.bytes.len();
            msgs += 1;
            let start = out.len();
            out.extend_from_slice(&f.bytes);
            if f.msg.qos > 0 {
                let id = q.free_id();
                q.inflight.insert(id);
                let at = start + f.msg.pkid_at;
                if let Some(slot) = out.get_mut(at..at + 2) {
                    slot.copy_from_slice(&id.to_be_bytes());
                }
            }
        }
        (out, msgs)
    }

    /// Stops the queue; returns the messages still in it (never delivered).
    pub fn close(&self) -> u64 {
        let mut q = self.lock();
        q.closed = true;
        let left = q.frames.len() as u64;
        q.frames.clear();
        q.controls.clear();
        q.control_bytes = 0;
        q.msg_bytes = 0;
        drop(q);
        self.notify.notify_one();
        left
    }
}

#[cfg(test)]
#[allow(clippy::panic)] // a failing test panics
mod tests {
    use super::*;

    /// A QoS 0 message (no packet id).
    fn m0() -> Msg {
        Msg { qos: 0, pkid_at: 0 }
    }

    fn take(q: &Outbox) -> Option<(Vec<u8>, u64)> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build();
        let Ok(rt) = rt else { panic!("runtime") };
        rt.block_on(async { tokio::time::timeout(std::time::Duration::from_millis(50), q.take(1 << 20)).await.ok()? })
            .map(|(b, n)| (b.to_vec(), n))
    }

    #[test]
    fn drop_oldest_keeps_control_frames_and_the_bound() {
        let q = Outbox::new(2, 1 << 20, Overflow::DropOldest, u16::MAX);
        assert_eq!(q.message(Bytes::from_static(b"m1"), m0()), Pushed::Queued);
        assert_eq!(q.message(Bytes::from_static(b"m2"), m0()), Pushed::Queued);
        assert_eq!(q.control(Bytes::from_static(b"ack")), Ok(()));
        assert_eq!(q.message(Bytes::from_static(b"m3"), m0()), Pushed::DroppedOldest(1));
        assert_eq!(take(&q), Some((b"ackm2m3".to_vec(), 2)), "control frames go first");
    }

    #[test]
    fn deliveries_are_renumbered_and_limited_by_receive_maximum() {
        let q = Outbox::new(10, 1 << 20, Overflow::DropOldest, 2);
        let qos1 = Msg { qos: 1, pkid_at: 1 };
        for _ in 0..3 {
            q.message(Bytes::from_static(b"P\0\0"), qos1);
        }
        assert_eq!(take(&q), Some((b"P\0\x01P\0\x02".to_vec(), 2)), "ids 1 and 2; the third waits");
        assert_eq!(take(&q), None, "two in flight: nothing more until an ack");
        assert_eq!(q.control(Bytes::from_static(b"R")), Ok(()));
        assert_eq!(take(&q), Some((b"R".to_vec(), 0)), "a full window never holds back control frames");
        q.acked(1);
        assert_eq!(take(&q), Some((b"P\0\x03".to_vec(), 1)));
    }

    #[test]
    fn byte_bound_and_disconnect_policy() {
        let q = Outbox::new(100, 5, Overflow::DropOldest, u16::MAX);
        assert_eq!(q.message(Bytes::from_static(b"abc"), m0()), Pushed::Queued);
        assert_eq!(q.message(Bytes::from_static(b"def"), m0()), Pushed::DroppedOldest(1));
        let d = Outbox::new(1, 1 << 20, Overflow::Disconnect, u16::MAX);
        assert_eq!(d.message(Bytes::from_static(b"a"), m0()), Pushed::Queued);
        assert_eq!(d.message(Bytes::from_static(b"b"), m0()), Pushed::Full);
        assert_eq!(d.close(), 1);
    }

    #[test]
    fn a_device_that_never_reads_is_cut_off() {
        let q = Outbox::new(10, 1 << 20, Overflow::DropOldest, u16::MAX);
        let ack = Bytes::from(vec![0u8; 4]);
        let sent = (0..100_000).take_while(|_| q.control(ack.clone()).is_ok()).count();
        assert_eq!(sent, MAX_CONTROL_BYTES / 4);
    }
}
