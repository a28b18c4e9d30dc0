//! Counters and histograms kept per worker, for the series every request
//! adds to ([`super::routes`]).
//!
//! A `metrics` handle is one atomic read-modify-write on a line shared by
//! every worker (two, with the exporter's generation count), and a
//! histogram sample is pushed on a lock-free list: ~14 bus-locked
//! instructions and ~300 others per request for a request's three series
//! (`benches/callgrind.sh` with `CG_SIM=1`), and the lines bounce between
//! the cores of a busy machine. Here each worker has its own shard of a
//! series, on its own cache lines, and is its only writer: an add is a
//! plain load and store (no locked instruction; a relaxed atomic so that a
//! scrape may read it from another thread). A scrape sums the shards and
//! renders the text itself ([`super::Metrics::render`]).
//!
//! Invariant: shard `i` is written only by worker `i` (the workers are
//! numbered when the server starts them, and the series get one shard per
//! worker: [`super::Metrics::with_workers`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::LATENCY_BUCKETS;

/// One value per worker, each on cache lines of its own.
pub struct Sharded<T> {
    shards: Box<[Padded<T>]>,
}

/// Two lines: adjacent-line prefetch pairs lines on x86.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

impl<T: Default> Sharded<T> {
    /// `workers` shards (at least one).
    pub fn new(workers: usize) -> Self {
        Sharded {
            shards: (0..workers.max(1)).map(|_| Padded::default()).collect(),
        }
    }
}

impl<T> Sharded<T> {
    /// Worker `worker`'s shard (the first one for a number out of range,
    /// which the server never hands out).
    pub fn shard(&self, worker: usize) -> &T {
        match self.shards.get(worker) {
            Some(s) => &s.0,
            None => &self.shards[0].0,
        }
    }

    /// Every shard, for a scrape.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|s| &s.0)
    }
}

/// Adds `n` to a count that only this thread writes.
fn bump(count: &AtomicU64, n: u64) {
    count.store(count.load(Relaxed).wrapping_add(n), Relaxed);
}

/// A count written by one worker.
#[derive(Default)]
pub struct Count(AtomicU64);

impl Count {
    pub fn add(&self, n: u64) {
        bump(&self.0, n);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A latency histogram (seconds) written by one worker: a count per
/// bucket of [`LATENCY_BUCKETS`] (not cumulative: a sample adds to one),
/// the number of samples and their sum.
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }
}

impl Histogram {
    pub fn record(&self, seconds: f64) {
        // The first bucket whose bound is at least the sample (`le`); past
        // the last one, only `+Inf` (the count) has it.
        let i = LATENCY_BUCKETS.partition_point(|&le| le < seconds);
        if let Some(b) = self.buckets.get(i) {
            bump(b, 1);
        }
        bump(&self.count, 1);
        let sum = f64::from_bits(self.sum.load(Relaxed)) + seconds;
        self.sum.store(sum.to_bits(), Relaxed);
    }
}

/// A histogram's shards summed, as a scrape renders it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    /// Cumulative: samples at or below each bound of [`LATENCY_BUCKETS`].
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

impl Sharded<Histogram> {
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for h in self.iter() {
            for (sum, b) in t.buckets.iter_mut().zip(&h.buckets) {
                *sum += b.load(Relaxed);
            }
            t.count += h.count.load(Relaxed);
            t.sum += f64::from_bits(h.sum.load(Relaxed));
        }
        let mut below = 0;
        for b in &mut t.buckets {
            below += *b;
            *b = below;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_and_each_worker_has_its_own() {
        let c: Sharded<Count> = Sharded::new(3);
        c.shard(0).add(2);
        c.shard(2).add(5);
        assert_eq!(c.shard(1).get(), 0);
        assert_eq!(c.iter().map(Count::get).sum::<u64>(), 7);
        // Out of range: the first shard (never handed out by the server).
        c.shard(7).add(1);
        assert_eq!(c.shard(0).get(), 3);
        // No shard shares a cache line pair with another.
        let a = c.shard(0) as *const Count as usize;
        let b = c.shard(1) as *const Count as usize;
        assert!(b - a >= 128, "{a:#x} {b:#x}");
    }

    #[test]
    fn samples_land_in_the_first_bucket_that_holds_them() {
        let h: Sharded<Histogram> = Sharded::new(2);
        h.shard(0).record(0.0005); // on a bound: that bucket (`le`)
        h.shard(1).record(0.0004);
        h.shard(1).record(0.012);
        h.shard(0).record(100.0); // past the last bound: +Inf only
        let t = h.totals();
        let at = |le: f64| t.buckets[LATENCY_BUCKETS.iter().position(|&b| b == le).unwrap()];
        assert_eq!(at(0.0005), 2);
        assert_eq!(at(0.01), 2);
        assert_eq!(at(0.015), 3);
        assert_eq!(at(60.0), 3);
        assert_eq!(t.count, 4);
        assert!((t.sum - 100.0129).abs() < 1e-9, "{}", t.sum);
        // Cumulative, never decreasing, the last bucket at most the count.
        assert!(t.buckets.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_worker_writes_while_another_thread_reads() {
        let h = std::sync::Arc::new(Sharded::<Histogram>::new(2));
        let writer = {
            let h = h.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    h.shard(1).record(0.001);
                }
            })
        };
        for _ in 0..100 {
            let t = h.totals();
            assert!(t.count <= 10_000);
        }
        writer.join().unwrap();
        let t = h.totals();
        assert_eq!((t.count, t.buckets[1]), (10_000, 10_000));
    }
}
