//! Rate limits as GCRA (the generic cell rate algorithm, a token bucket
//! kept as one number): a limit's state is its *theoretical arrival
//! time*, the time at which the bucket would be full again, in
//! nanoseconds on the caller's clock. One 64-bit word per limited key,
//! updated with one compare-and-swap; no refill task.
//!
//! Pure: the caller passes the time in (`now_ns` > 0, monotonic).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A rate of `rate` requests per second with bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Nanoseconds one request costs.
    interval_ns: u64,
    /// How far ahead of now the arrival time may run: `burst` requests.
    tolerance_ns: u64,
}

impl Rate {
    /// `None` for a rate of 0 (no limit).
    pub fn new(rate: u32, burst: u32) -> Option<Rate> {
        if rate == 0 {
            return None;
        }
        let interval_ns = 1_000_000_000 / u64::from(rate);
        Some(Rate {
            interval_ns: interval_ns.max(1),
            tolerance_ns: interval_ns.max(1) * u64::from(burst.max(1)),
        })
    }

    /// Takes one request's worth from the bucket `cell`: `Err` with the
    /// nanoseconds until one would be allowed when the bucket is empty
    /// (the bucket is left as it was).
    #[inline]
    pub fn take(&self, cell: &AtomicU64, now_ns: u64) -> Result<(), u64> {
        let mut tat = cell.load(Relaxed);
        loop {
            let next = tat.max(now_ns) + self.interval_ns;
            let ahead = next - now_ns;
            if ahead > self.tolerance_ns {
                return Err(ahead - self.tolerance_ns);
            }
            match cell.compare_exchange_weak(tat, next, Relaxed, Relaxed) {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }
}

/// Whole seconds for a `Retry-After` of `wait_ns` (at least 1).
pub fn retry_after_secs(wait_ns: u64) -> u32 {
    wait_ns.div_ceil(1_000_000_000).clamp(1, 3600) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_the_rate() {
        let r = Rate::new(10, 5).unwrap();
        let cell = AtomicU64::new(0);
        let t0 = 100 * S;
        for i in 0..5 {
            assert!(r.take(&cell, t0).is_ok(), "burst request {i}");
        }
        let wait = r.take(&cell, t0).unwrap_err();
        assert_eq!(wait, S / 10, "one interval until the next");
        assert_eq!(retry_after_secs(wait), 1);
        // A tenth of a second later, one more; not two.
        assert!(r.take(&cell, t0 + S / 10).is_ok());
        assert!(r.take(&cell, t0 + S / 10).is_err());
        // A quiet second refills the whole burst, no more.
        let t1 = t0 + 2 * S;
        for _ in 0..5 {
            assert!(r.take(&cell, t1).is_ok());
        }
        assert!(r.take(&cell, t1).is_err());
    }

    #[test]
    fn sustained_load_gets_the_rate() {
        let r = Rate::new(100, 1).unwrap();
        let cell = AtomicU64::new(0);
        // 1,000 attempts per second for 3 s: ~100 per second pass.
        let passed = (0..3_000u64)
            .filter(|i| r.take(&cell, S + i * S / 1_000).is_ok())
            .count();
        assert!((299..=301).contains(&passed), "{passed}");
    }

    #[test]
    fn zero_is_no_limit() {
        assert_eq!(Rate::new(0, 10), None);
    }
}
