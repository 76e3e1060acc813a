//! Fixed-size latency histogram (no allocation): log2 buckets of nanoseconds with 8 linear
//! sub-buckets each, so a percentile is known to within 12.5 %.

const SUB: usize = 8;
const OCTAVES: usize = 40; // 1 ns .. ~1100 s
const BUCKETS: usize = SUB * OCTAVES;

#[derive(Clone)]
pub struct Histogram {
    counts: [u64; BUCKETS],
    total: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
            total: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("p50_ns", &self.percentile(0.5))
            .field("p99_ns", &self.percentile(0.99))
            .finish()
    }
}

fn bucket(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let octave = 63 - ns.leading_zeros() as usize; // >= 3
    let sub = ((ns >> (octave - 3)) & (SUB as u64 - 1)) as usize;
    ((octave - 2) * SUB + sub).min(BUCKETS - 1)
}

/// Upper bound (exclusive) of bucket `b`, in ns.
fn bucket_upper(b: usize) -> u64 {
    if b < SUB {
        return b as u64 + 1;
    }
    let octave = b / SUB + 2;
    let sub = (b % SUB) as u64;
    (SUB as u64 + sub + 1) << (octave - 3)
}

impl Histogram {
    pub fn record(&mut self, ns: u64) {
        self.counts[bucket(ns)] += 1;
        self.total += 1;
        self.sum_ns += ns as u128;
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn mean_ns(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            (self.sum_ns / self.total as u128) as u64
        }
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// The value below which a fraction `q` of the samples lie (bucket upper bound, capped
    /// at the maximum seen). 0 when empty.
    pub fn percentile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_upper(b).min(self.max_ns);
            }
        }
        self.max_ns
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    pub fn clear(&mut self) {
        *self = Histogram::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for ns in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1_000,
            123_456,
            10_000_000_000,
        ] {
            let b = bucket(ns);
            assert!(b >= last, "bucket({ns}) = {b} < {last}");
            last = b;
            assert!(
                bucket_upper(b) > ns,
                "upper({b}) = {} <= {ns}",
                bucket_upper(b)
            );
            if b > 0 {
                assert!(
                    bucket_upper(b - 1) <= ns.max(1),
                    "value {ns} below bucket {b}"
                );
            }
        }
    }

    #[test]
    fn percentiles_are_within_an_eighth() {
        let mut h = Histogram::default();
        for i in 1..=1000u64 {
            h.record(i * 1000);
        }
        let p50 = h.percentile(0.5) as f64;
        let p99 = h.percentile(0.99) as f64;
        assert!((500_000.0..=500_000.0 * 1.125).contains(&p50), "p50 {p50}");
        assert!((990_000.0..=990_000.0 * 1.125).contains(&p99), "p99 {p99}");
        assert_eq!(h.percentile(1.0), 1_000_000);
        assert_eq!(h.mean_ns(), 500_500);
        let mut g = Histogram::default();
        g.merge(&h);
        assert_eq!(g.count(), 1000);
    }
}
