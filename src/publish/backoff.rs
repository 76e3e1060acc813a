//! Reconnect backoff: capped exponential with "full jitter"
//! (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>), on the
//! injected [`Clock`], reset once a connection has stayed up for a while.
//!
//! Attempt `n` (0-based) waits a uniformly random time in `[base/2, base]` where
//! `base = min(max, min * 2^n)`: never less than half the minimum (no tight loop, unlike
//! rumqttc's own reconnect), never more than the cap.

use std::sync::Arc;

use crate::clock::Clock;

/// A small deterministic PRNG (xorshift64*) for jitter; seedable in tests.
#[derive(Debug, Clone)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    pub fn new(seed: u64) -> Self {
        // Zero is the one fixed point of xorshift.
        XorShift64 {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Reconnect pacing for one broker connection.
pub struct Backoff {
    clock: Arc<dyn Clock>,
    min_ns: u64,
    max_ns: u64,
    /// A connection up at least this long resets the backoff.
    stable_ns: u64,
    attempt: u32,
    rng: XorShift64,
    /// Monotonic time before which no attempt may start.
    not_before_ns: u64,
    connected_at_ns: Option<u64>,
}

impl Backoff {
    /// `min_ms`/`max_ms` from `BrokerConfig::reconnect_min_ms/max_ms`; the connection counts
    /// as stable after `max(10 s, max_ms)`.
    pub fn new(clock: Arc<dyn Clock>, min_ms: u64, max_ms: u64, seed: u64) -> Backoff {
        let min_ns = min_ms.max(1) * 1_000_000;
        let max_ns = (max_ms * 1_000_000).max(min_ns);
        let now = clock.now_ns();
        Backoff {
            clock,
            min_ns,
            max_ns,
            stable_ns: max_ns.max(10_000_000_000),
            attempt: 0,
            rng: XorShift64::new(seed),
            not_before_ns: now,
            connected_at_ns: None,
        }
    }

    /// Nanoseconds until the next attempt may start (0: now).
    pub fn wait_ns(&self) -> u64 {
        self.not_before_ns.saturating_sub(self.clock.now_ns())
    }

    /// Records a failed attempt (or a lost connection) and schedules the next one; returns
    /// the delay chosen, in nanoseconds.
    pub fn failed(&mut self) -> u64 {
        let now = self.clock.now_ns();
        if let Some(t) = self.connected_at_ns.take() {
            if now.saturating_sub(t) >= self.stable_ns {
                self.attempt = 0;
            }
        }
        let base = self
            .min_ns
            .saturating_mul(1u64 << self.attempt.min(40))
            .min(self.max_ns);
        let delay = self.rng.range(base / 2, base);
        self.attempt = self.attempt.saturating_add(1);
        self.not_before_ns = now + delay;
        delay
    }

    /// Records a successful connection. The backoff resets when it fails after having been
    /// up for the stable period.
    pub fn connected(&mut self) {
        self.connected_at_ns = Some(self.clock.now_ns());
    }

    /// Attempts since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const MS: u64 = 1_000_000;

    #[test]
    fn grows_exponentially_with_jitter_and_caps() {
        let clock = ManualClock::new(0);
        let mut b = Backoff::new(Arc::new(clock.clone()), 200, 30_000, 42);
        assert_eq!(b.wait_ns(), 0, "first attempt is immediate");
        let mut last_base = 0;
        for n in 0..20u32 {
            let d = b.failed();
            let base = (200 * MS * (1u64 << n.min(40))).min(30_000 * MS);
            assert!(
                d >= base / 2 && d <= base,
                "attempt {n}: {d} not in [{}, {base}]",
                base / 2
            );
            assert!(base >= last_base);
            last_base = base;
            assert_eq!(b.wait_ns(), d);
            clock.advance_ns(d / 2);
            assert_eq!(b.wait_ns(), d - d / 2);
            clock.advance_ns(d - d / 2);
            assert_eq!(b.wait_ns(), 0);
        }
        assert_eq!(last_base, 30_000 * MS);
    }

    #[test]
    fn jitter_spreads_and_is_deterministic_per_seed() {
        let delays = |seed| {
            let clock = ManualClock::new(0);
            let mut b = Backoff::new(Arc::new(clock.clone()), 1000, 1000, seed);
            (0..50).map(|_| b.failed()).collect::<Vec<_>>()
        };
        assert_eq!(delays(7), delays(7));
        assert_ne!(delays(7), delays(8));
        let d = delays(7);
        let distinct: std::collections::HashSet<_> = d.iter().collect();
        assert!(distinct.len() > 40, "jitter should spread delays");
        assert!(d.iter().all(|&x| (500 * MS..=1000 * MS).contains(&x)));
    }

    #[test]
    fn resets_only_after_a_stable_connection() {
        let clock = ManualClock::new(5 * MS);
        let mut b = Backoff::new(Arc::new(clock.clone()), 100, 10_000, 1);
        for _ in 0..5 {
            b.failed();
        }
        assert_eq!(b.attempt(), 5);
        // A connection that flaps immediately does not reset.
        b.connected();
        clock.advance_ms(50);
        let d = b.failed();
        assert!(d >= 1600 * MS, "{d}");
        assert_eq!(b.attempt(), 6);
        // One that stays up for the stable period does.
        b.connected();
        clock.advance_ms(10_000);
        let d = b.failed();
        assert!((50 * MS..=100 * MS).contains(&d), "{d}");
        assert_eq!(b.attempt(), 1);
    }
}
