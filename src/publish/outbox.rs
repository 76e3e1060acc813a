//! The outbox: a bounded, pre-allocated store-and-forward queue between the frame path
//! (producer) and the publisher thread (consumer).
//!
//! [`Outbox`] is the pure logic (no locks, no I/O, no clock), tested exhaustively below.
//! [`OutboxPublisher`] wraps it in a mutex for the frame side; the lock is only ever held for
//! one bounded copy of a slot (no I/O, no allocation under it), so `publish` never waits for
//! the network.
//!
//! Lifecycle of a message: `push` → `next_to_send` (copied out to the network; still kept)
//! → `ack` (the broker's PUBACK for QoS 1, or the write for QoS 0) → its slot is freed once
//! every older message is acked too. After a reconnect `rewind` makes every unacked message
//! go out again (at-least-once). When the outbox is full the **oldest** message is dropped
//! and counted, so the newest `capacity` messages are kept while the broker is away.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{PublishStats, Publisher, TopicId};

#[derive(Debug, Clone, Copy)]
struct Meta {
    topic: TopicId,
    len: usize,
    acked: bool,
}

/// What [`Outbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Queued,
    /// Queued; the oldest message was dropped to make room.
    QueuedDroppedOldest,
    /// Not queued: larger than a slot.
    Oversized,
}

/// A message handed to the network: its sequence number (for [`Outbox::ack`]), topic and
/// length (the bytes were copied into the caller's buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub seq: u64,
    pub topic: TopicId,
    pub len: usize,
}

/// Counters of an outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounters {
    /// Messages accepted by `push`.
    pub queued: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages dropped because the outbox was full (oldest first).
    pub dropped: u64,
    /// Messages refused because they were larger than a slot.
    pub oversized: u64,
}

/// Fixed-capacity ring of fixed-size slots. Sequence numbers increase by one per pushed
/// message; the ring holds the contiguous range `oldest_seq()..next_seq()`.
#[derive(Debug)]
pub struct Outbox {
    data: Box<[u8]>,
    slot_bytes: usize,
    meta: Box<[Meta]>,
    /// Index of the oldest message.
    head: usize,
    len: usize,
    next_seq: u64,
    /// Sequence number of the next message to hand to the network.
    cursor: u64,
    counters: OutboxCounters,
}

impl Outbox {
    /// Allocates `capacity` slots of `slot_bytes` each (all memory the outbox will use).
    pub fn new(capacity: usize, slot_bytes: usize) -> Outbox {
        let capacity = capacity.max(1);
        Outbox {
            data: vec![0u8; capacity * slot_bytes].into_boxed_slice(),
            slot_bytes,
            meta: vec![
                Meta {
                    topic: TopicId::Metrics,
                    len: 0,
                    acked: false,
                };
                capacity
            ]
            .into_boxed_slice(),
            head: 0,
            len: 0,
            next_seq: 0,
            cursor: 0,
            counters: OutboxCounters::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.meta.len()
    }
    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }
    /// Messages held (sent or not, not yet acknowledged or waiting behind an older one).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn counters(&self) -> OutboxCounters {
        self.counters
    }
    /// Sequence number of the oldest message held.
    pub fn oldest_seq(&self) -> u64 {
        self.next_seq - self.len as u64
    }
    /// Sequence number the next pushed message will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
    /// Messages not handed to the network yet (since the last rewind).
    pub fn unsent(&self) -> usize {
        (self.next_seq - self.cursor.max(self.oldest_seq())) as usize
    }

    fn index(&self, seq: u64) -> usize {
        let off = (seq - self.oldest_seq()) as usize;
        (self.head + off) % self.capacity()
    }

    /// Copies `payload` into the next slot. Never allocates.
    pub fn push(&mut self, topic: TopicId, payload: &[u8]) -> PushOutcome {
        if payload.len() > self.slot_bytes {
            self.counters.oversized += 1;
            return PushOutcome::Oversized;
        }
        let mut outcome = PushOutcome::Queued;
        if self.len == self.capacity() {
            self.pop_front();
            self.counters.dropped += 1;
            outcome = PushOutcome::QueuedDroppedOldest;
        }
        let i = (self.head + self.len) % self.capacity();
        let start = i * self.slot_bytes;
        self.data[start..start + payload.len()].copy_from_slice(payload);
        self.meta[i] = Meta {
            topic,
            len: payload.len(),
            acked: false,
        };
        self.len += 1;
        self.next_seq += 1;
        self.counters.queued += 1;
        outcome
    }

    fn pop_front(&mut self) {
        debug_assert!(self.len > 0);
        self.head = (self.head + 1) % self.capacity();
        self.len -= 1;
    }

    /// Copies the next unsent, unacknowledged message into `out` (at least `slot_bytes`
    /// long) and advances the send cursor. The message stays held until [`Outbox::ack`].
    pub fn next_to_send(&mut self, out: &mut [u8]) -> Option<Outgoing> {
        self.cursor = self.cursor.max(self.oldest_seq());
        while self.cursor < self.next_seq {
            let seq = self.cursor;
            self.cursor += 1;
            let i = self.index(seq);
            let m = self.meta[i];
            if m.acked {
                continue;
            }
            let start = i * self.slot_bytes;
            out[..m.len].copy_from_slice(&self.data[start..start + m.len]);
            return Some(Outgoing {
                seq,
                topic: m.topic,
                len: m.len,
            });
        }
        None
    }

    /// Marks message `seq` delivered and frees every delivered message at the front. Returns
    /// false if it is no longer held (dropped by overflow, or acknowledged before).
    pub fn ack(&mut self, seq: u64) -> bool {
        if seq < self.oldest_seq() || seq >= self.next_seq {
            return false;
        }
        let i = self.index(seq);
        if self.meta[i].acked {
            return false;
        }
        self.meta[i].acked = true;
        self.counters.acked += 1;
        while self.len > 0 && self.meta[self.head].acked {
            self.pop_front();
        }
        true
    }

    /// Makes every unacknowledged message eligible to be sent again (after a reconnect).
    pub fn rewind(&mut self) {
        self.cursor = self.oldest_seq();
    }
}

/// The outbox shared by the frame side and the publisher thread.
#[derive(Debug)]
pub struct SharedOutbox {
    inner: Mutex<Outbox>,
    pub(crate) link: Mutex<LinkStats>,
}

/// Connection counters kept by the publisher thread.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LinkStats {
    pub reconnects: u64,
    pub connected: bool,
}

impl SharedOutbox {
    pub fn new(capacity: usize, slot_bytes: usize) -> Arc<SharedOutbox> {
        Arc::new(SharedOutbox {
            inner: Mutex::new(Outbox::new(capacity, slot_bytes)),
            link: Mutex::new(LinkStats::default()),
        })
    }

    /// Locks the outbox; a poisoned lock (a panic elsewhere while holding it) is recovered,
    /// since the ring is consistent after every method.
    pub fn lock(&self) -> MutexGuard<'_, Outbox> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> PublishStats {
        let c = self.lock().counters();
        let l = *self.link.lock().unwrap_or_else(|e| e.into_inner());
        PublishStats {
            queued: c.queued,
            sent: c.acked,
            dropped: c.dropped,
            oversized: c.oversized,
            reconnects: l.reconnects,
            connected: l.connected,
        }
    }
}

/// The frame path's [`Publisher`]: copies each message into the outbox and returns.
#[derive(Debug, Clone)]
pub struct OutboxPublisher {
    shared: Arc<SharedOutbox>,
}

impl OutboxPublisher {
    pub fn new(shared: Arc<SharedOutbox>) -> Self {
        OutboxPublisher { shared }
    }
    /// Largest payload one message may have.
    pub fn slot_bytes(&self) -> usize {
        self.shared.lock().slot_bytes()
    }
}

impl Publisher for OutboxPublisher {
    /// Never blocks on I/O and never allocates. Returns false only for a message larger than
    /// a slot; a full outbox drops its oldest message instead (counted in `dropped`).
    fn publish(&mut self, topic: TopicId, payload: &[u8]) -> bool {
        self.shared.lock().push(topic, payload) != PushOutcome::Oversized
    }
    fn stats(&self) -> PublishStats {
        self.shared.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: u64) -> [u8; 8] {
        i.to_le_bytes()
    }

    fn drain(ob: &mut Outbox) -> Vec<(u64, u64)> {
        let mut out = [0u8; 16];
        let mut v = Vec::new();
        while let Some(o) = ob.next_to_send(&mut out) {
            assert_eq!(o.len, 8);
            v.push((o.seq, u64::from_le_bytes(out[..8].try_into().unwrap())));
        }
        v
    }

    #[test]
    fn fifo_send_then_ack_frees_slots() {
        let mut ob = Outbox::new(4, 8);
        for i in 0..3 {
            assert_eq!(
                ob.push(TopicId::Detections(0), &msg(i)),
                PushOutcome::Queued
            );
        }
        assert_eq!(drain(&mut ob), vec![(0, 0), (1, 1), (2, 2)]);
        assert_eq!(ob.len(), 3, "sent messages stay until acked");
        assert!(ob.ack(0));
        assert!(!ob.ack(0), "double ack");
        assert_eq!(ob.len(), 2);
        assert!(ob.ack(2));
        assert_eq!(ob.len(), 2, "out-of-order ack waits for the older one");
        assert!(ob.ack(1));
        assert!(ob.is_empty());
        assert_eq!(ob.counters().acked, 3);
    }

    #[test]
    fn full_drops_oldest_and_keeps_newest() {
        let mut ob = Outbox::new(3, 8);
        for i in 0..10 {
            let r = ob.push(TopicId::Metrics, &msg(i));
            assert_eq!(
                r,
                if i < 3 {
                    PushOutcome::Queued
                } else {
                    PushOutcome::QueuedDroppedOldest
                }
            );
        }
        assert_eq!(ob.counters().dropped, 7);
        assert_eq!(ob.counters().queued, 10);
        assert_eq!(drain(&mut ob), vec![(7, 7), (8, 8), (9, 9)]);
    }

    #[test]
    fn dropping_in_flight_messages_ignores_their_late_acks() {
        let mut ob = Outbox::new(2, 8);
        ob.push(TopicId::Status, &msg(0));
        ob.push(TopicId::Status, &msg(1));
        assert_eq!(drain(&mut ob).len(), 2);
        ob.push(TopicId::Status, &msg(2)); // drops 0 (in flight)
        assert!(!ob.ack(0), "seq 0 is gone");
        assert!(ob.ack(1));
        assert_eq!(drain(&mut ob), vec![(2, 2)]);
        assert!(!ob.ack(99));
        assert_eq!(ob.counters().dropped, 1);
    }

    #[test]
    fn rewind_resends_unacked_only() {
        let mut ob = Outbox::new(5, 8);
        for i in 0..5 {
            ob.push(TopicId::Detections(1), &msg(i));
        }
        assert_eq!(drain(&mut ob).len(), 5);
        ob.ack(0);
        ob.ack(2);
        ob.rewind();
        assert_eq!(drain(&mut ob), vec![(1, 1), (3, 3), (4, 4)]);
    }

    #[test]
    fn oversize_is_refused_and_counted() {
        let mut ob = Outbox::new(2, 4);
        assert_eq!(ob.push(TopicId::Metrics, &[0; 5]), PushOutcome::Oversized);
        assert_eq!(ob.push(TopicId::Metrics, &[7; 4]), PushOutcome::Queued);
        assert_eq!(ob.push(TopicId::Metrics, &[]), PushOutcome::Queued);
        let mut out = [0u8; 4];
        assert_eq!(ob.next_to_send(&mut out).unwrap().len, 4);
        assert_eq!(out, [7; 4]);
        assert_eq!(ob.next_to_send(&mut out).unwrap().len, 0);
        assert_eq!(ob.counters().oversized, 1);
        assert_eq!(ob.counters().queued, 2);
    }

    /// Random operations against a simple model (a VecDeque) through many wraparounds.
    #[test]
    fn matches_a_model_through_wraparound() {
        use std::collections::VecDeque;
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for cap in 1..6usize {
            let mut ob = Outbox::new(cap, 8);
            // model: (seq, sent, acked)
            let mut model: VecDeque<(u64, bool, bool)> = VecDeque::new();
            let mut seq = 0u64;
            let mut dropped = 0u64;
            let mut out = [0u8; 8];
            for _ in 0..5000 {
                match next() % 4 {
                    0 | 1 => {
                        if model.len() == cap {
                            model.pop_front();
                            dropped += 1;
                        }
                        model.push_back((seq, false, false));
                        ob.push(TopicId::Detections(0), &msg(seq));
                        seq += 1;
                    }
                    2 => {
                        let got = ob.next_to_send(&mut out);
                        let want = model.iter_mut().find(|m| !m.1 && !m.2);
                        match (got, want) {
                            (Some(g), Some(w)) => {
                                assert_eq!(g.seq, w.0);
                                assert_eq!(u64::from_le_bytes(out), w.0);
                                w.1 = true;
                            }
                            (None, None) => {}
                            (g, w) => panic!("cap {cap}: got {g:?}, model {w:?}"),
                        }
                    }
                    _ => {
                        if next() % 8 == 0 {
                            ob.rewind();
                            for m in model.iter_mut() {
                                m.1 = false;
                            }
                        } else if !model.is_empty() {
                            let k = (next() % model.len() as u64) as usize;
                            if model[k].1 && !model[k].2 {
                                assert!(ob.ack(model[k].0));
                                model[k].2 = true;
                                while model.front().is_some_and(|m| m.2) {
                                    model.pop_front();
                                }
                            }
                        }
                    }
                }
                assert_eq!(ob.len(), model.len());
                assert_eq!(ob.counters().dropped, dropped);
                assert_eq!(ob.oldest_seq(), model.front().map_or(seq, |m| m.0));
            }
        }
    }
}
