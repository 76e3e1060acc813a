//! Publishing: the frame path hands encoded messages to a bounded, pre-allocated outbox and
//! never waits; a publisher thread drains it into MQTT (rumqttc), reconnecting with a capped,
//! jittered exponential backoff on an injected clock.

/// Which topic a message goes to (relative to `jetwatch/<device_id>/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicId {
    /// `<camera>/detections`, camera index into the config.
    Detections(u16),
    /// `metrics`
    Metrics,
    /// `status` (retained)
    Status,
}

/// Counters of the outbox and the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    pub queued: u64,
    /// Messages the broker acknowledged (QoS 1) or that were written (QoS 0).
    pub sent: u64,
    /// Messages dropped because the outbox was full (oldest dropped first, see docs).
    pub dropped: u64,
    /// Messages larger than an outbox slot.
    pub oversized: u64,
    pub reconnects: u64,
    pub connected: bool,
}

/// The frame path's handle on the outbox.
pub trait Publisher: Send {
    /// Queues `payload` for `topic`. Never blocks and never allocates; returns false if the
    /// message could not be queued (counted in `PublishStats`).
    fn publish(&mut self, topic: TopicId, payload: &[u8]) -> bool;
    fn stats(&self) -> PublishStats;
}

pub mod backoff;
pub mod broker;
pub mod listen;
pub mod mqtt;
pub mod outbox;

pub use broker::{start_local_broker, LocalBroker};
pub use listen::{listen, ListenOptions, ListenSummary};
pub use mqtt::{start, PublishError, PublisherConfig, PublisherHandle};
pub use outbox::OutboxPublisher;
