//! The bounded queue of frames toward one device. Messages (PUBLISH) count
//! against `queue_messages`/`queue_bytes`; control frames (acks, SUBACK,
//! PINGRESP) are few by protocol and always queued. When a message does not
//! fit, the overflow policy decides: drop the oldest messages (the caller
//! acknowledges them to the broker and counts them) or refuse, and the
//! caller disconnects the device.

use std::{collections::VecDeque, sync::Mutex};

use bytes::{Bytes, BytesMut};
use moat_policy::mqtt::Overflow;
use tokio::sync::Notify;

/// A queued message's QoS and packet id (what the broker must be told if
/// it is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    pub qos: u8,
    pub pkid: u16,
}

#[derive(Debug)]
struct Frame {
    bytes: Bytes,
    msg: Option<Msg>,
}

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Frame>,
    msgs: usize,
    msg_bytes: usize,
    closed: bool,
}

/// What happened to a pushed message.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued after dropping these older messages.
    DroppedOldest(Vec<Msg>),
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
}

impl Outbox {
    pub fn new(max_msgs: u32, max_bytes: u32, overflow: Overflow) -> Self {
        Outbox {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            max_msgs: max_msgs.max(1) as usize,
            max_bytes: max_bytes.max(1) as usize,
            overflow,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a control frame.
    pub fn control(&self, bytes: Bytes) {
        self.lock().frames.push_back(Frame { bytes, msg: None });
        self.notify.notify_one();
    }

    /// Queues a message, applying the overflow policy.
    pub fn message(&self, bytes: Bytes, msg: Msg) -> Pushed {
        let mut q = self.lock();
        let mut dropped = Vec::new();
        while q.msgs > 0 && (q.msgs + 1 > self.max_msgs || q.msg_bytes + bytes.len() > self.max_bytes) {
            if self.overflow == Overflow::Disconnect {
                return Pushed::Full;
            }
            let Some(at) = q.frames.iter().position(|f| f.msg.is_some()) else { break };
            if let Some(old) = q.frames.remove(at) {
                q.msgs -= 1;
                q.msg_bytes -= old.bytes.len();
                dropped.extend(old.msg);
            }
        }
        q.msgs += 1;
        q.msg_bytes += bytes.len();
        q.frames.push_back(Frame { bytes, msg: Some(msg) });
        drop(q);
        self.notify.notify_one();
        if dropped.is_empty() {
            Pushed::Queued
        } else {
            Pushed::DroppedOldest(dropped)
        }
    }

    /// Waits for frames and takes up to `max_bytes` of them as one buffer
    /// (one TLS write). `None` once closed and empty. Also returns how many
    /// messages the batch holds.
    pub async fn take(&self, max_bytes: usize) -> Option<(BytesMut, u64)> {
        loop {
            let notified = self.notify.notified();
            {
                let mut q = self.lock();
                if !q.frames.is_empty() {
                    let mut out = BytesMut::new();
                    let mut msgs = 0u64;
                    while let Some(f) = q.frames.front() {
                        if !out.is_empty() && out.len() + f.bytes.len() > max_bytes {
                            break;
                        }
                        let Some(f) = q.frames.pop_front() else { break };
                        if f.msg.is_some() {
                            q.msgs -= 1;
                            q.msg_bytes -= f.bytes.len();
                            msgs += 1;
                        }
                        out.extend_from_slice(&f.bytes);
                    }
                    return Some((out, msgs));
                }
                if q.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// No more frames: `take` hands out what is queued, then `None`.
    pub fn finish(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Stops the queue; returns the messages still in it (never delivered).
    pub fn close(&self) -> u64 {
        let mut q = self.lock();
        q.closed = true;
        let left = q.msgs as u64;
        q.frames.clear();
        q.msgs = 0;
        q.msg_bytes = 0;
        drop(q);
        self.notify.notify_one();
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pkid: u16) -> Msg {
        Msg { qos: 1, pkid }
    }

    #[test]
    fn drop_oldest_keeps_control_frames_and_the_bound() {
        let q = Outbox::new(2, 1 << 20, Overflow::DropOldest);
        q.control(Bytes::from_static(b"ack"));
        assert_eq!(q.message(Bytes::from_static(b"m1"), m(1)), Pushed::Queued);
        assert_eq!(q.message(Bytes::from_static(b"m2"), m(2)), Pushed::Queued);
        assert_eq!(q.message(Bytes::from_static(b"m3"), m(3)), Pushed::DroppedOldest(vec![m(1)]));
        let rt = tokio::runtime::Builder::new_current_thread().build();
        let Ok(rt) = rt else { panic!("runtime") };
        let got = rt.block_on(q.take(1 << 20));
        assert_eq!(got.map(|(b, n)| (b.to_vec(), n)), Some((b"ackm2m3".to_vec(), 2)));
    }

    #[test]
    fn byte_bound_and_disconnect_policy() {
        let q = Outbox::new(100, 5, Overflow::DropOldest);
        assert_eq!(q.message(Bytes::from_static(b"abc"), m(1)), Pushed::Queued);
        assert_eq!(q.message(Bytes::from_static(b"def"), m(2)), Pushed::DroppedOldest(vec![m(1)]));
        let d = Outbox::new(1, 1 << 20, Overflow::Disconnect);
        assert_eq!(d.message(Bytes::from_static(b"a"), m(1)), Pushed::Queued);
        assert_eq!(d.message(Bytes::from_static(b"b"), m(2)), Pushed::Full);
        assert_eq!(d.close(), 1);
    }
}
