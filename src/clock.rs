//! Injected time. Reconnect backoff, batching timeouts, metrics intervals and latency stamps
//! take a [`Clock`], so tests run in simulated time and never sleep.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Monotonic nanoseconds since an arbitrary origin.
    fn now_ns(&self) -> u64;
    /// Wall-clock nanoseconds since the Unix epoch.
    fn unix_ns(&self) -> u64;
}

/// The real clocks.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
    fn unix_ns(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    ns: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn new(start_ns: u64) -> Self {
        ManualClock {
            ns: Arc::new(AtomicU64::new(start_ns)),
        }
    }
    pub fn advance_ns(&self, d: u64) {
        self.ns.fetch_add(d, Ordering::SeqCst);
    }
    pub fn advance_ms(&self, d: u64) {
        self.advance_ns(d * 1_000_000);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.ns.load(Ordering::SeqCst)
    }
    fn unix_ns(&self) -> u64 {
        1_700_000_000_000_000_000 + self.now_ns()
    }
}
