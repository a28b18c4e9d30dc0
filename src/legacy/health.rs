//! Up/down state of the legacy balancer, shared by all workers.
//!
//! Pure state: callers pass the time in (milliseconds on the server's
//! clock), so the transitions are unit-tested without sleeping.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use metrics::Gauge;

/// What a request to the legacy balancer may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The balancer is up: send.
    Go,
    /// It is down, and this request is the one trial of this interval.
    Trial,
    /// It is down: answer 502 without trying.
    FailFast,
}

/// The up/down state of the legacy balancer.
#[derive(Debug)]
pub struct Tunnel {
    up: AtomicBool,
    /// Consecutive connect failures seen by real traffic.
    passive_failures: AtomicU32,
    /// Earliest time (ms) of the next trial request while down.
    next_trial_ms: AtomicU64,
    /// Consecutive probe results (successes, failures); written by the
    /// probe task only, a few times a second at most.
    probes: Mutex<(u32, u32)>,
    gauge: Gauge,
    epoch: Instant,
}

impl Tunnel {
    /// A tunnel starts up: the first requests try, and the probe or their
    /// failures take it down.
    pub fn new(gauge: Gauge) -> Tunnel {
        gauge.set(1.0);
        Tunnel {
            up: AtomicBool::new(true),
            passive_failures: AtomicU32::new(0),
            next_trial_ms: AtomicU64::new(0),
            probes: Mutex::new((0, 0)),
            gauge,
            epoch: Instant::now(),
        }
    }

    /// The time to pass to the other methods: milliseconds on this
    /// tunnel's clock.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether a request may be sent at `now_ms`; while down, one request
    /// per `retry_ms` is let through as a trial.
    pub fn admit(&self, now_ms: u64, retry_ms: u64) -> Admit {
        if self.is_up() {
            return Admit::Go;
        }
        let next = self.next_trial_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_trial_ms
                .compare_exchange(
                    next,
                    now_ms + retry_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            Admit::Trial
        } else {
            Admit::FailFast
        }
    }

    /// A request reached the balancer (a connection was made or reused).
    pub fn reached(&self) {
        if self.passive_failures.load(Ordering::Relaxed) != 0 {
            self.passive_failures.store(0, Ordering::Relaxed);
        }
        if !self.is_up() {
            self.set(true, "a request reached it");
        }
    }

    /// A connection to the balancer could not be opened; `fall` in a row
    /// take it down.
    pub fn connect_failed(&self, now_ms: u64, fall: u32, retry_ms: u64) {
        let n = self.passive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= fall && self.is_up() {
            self.next_trial_ms
                .store(now_ms + retry_ms, Ordering::Relaxed);
            self.set(false, "connections to it failed");
        }
    }

    /// The result of one active probe, with the rise/fall thresholds.
    pub fn probed(&self, ok: bool, now_ms: u64, rise: u32, fall: u32, retry_ms: u64) {
        let mut p = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            *p = (p.0.saturating_add(1), 0);
            if p.0 >= rise && !self.is_up() {
                self.passive_failures.store(0, Ordering::Relaxed);
                self.set(true, "the probe succeeded");
            }
        } else {
            *p = (0, p.1.saturating_add(1));
            if p.1 >= fall && self.is_up() {
                self.next_trial_ms
                    .store(now_ms + retry_ms, Ordering::Relaxed);
                self.set(false, "the probe failed");
            }
        }
    }

    fn set(&self, up: bool, why: &str) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            self.gauge.set(if up { 1.0 } else { 0.0 });
            if up {
                tracing::info!(reason = why, "legacy balancer is up");
            } else {
                tracing::warn!(
                    reason = why,
                    "legacy balancer is down; legacy requests fail fast"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel() -> Tunnel {
        Tunnel::new(Gauge::noop())
    }

    #[test]
    fn probe_failures_take_it_down_after_fall_and_successes_up_after_rise() {
        let t = tunnel();
        t.probed(false, 0, 2, 3, 1000);
        t.probed(false, 0, 2, 3, 1000);
        assert!(t.is_up(), "two failures of three");
        t.probed(false, 0, 2, 3, 1000);
        assert!(!t.is_up());
        t.probed(true, 0, 2, 3, 1000);
        assert!(!t.is_up(), "one success of two");
        t.probed(false, 0, 2, 3, 1000);
        t.probed(true, 0, 2, 3, 1000);
        assert!(!t.is_up(), "successes must be consecutive");
        t.probed(true, 0, 2, 3, 1000);
        assert!(t.is_up());
    }

    #[test]
    fn while_down_one_trial_per_interval_and_its_success_brings_it_up() {
        let t = tunnel();
        for _ in 0..3 {
            t.connect_failed(10_000, 3, 500);
        }
        assert!(!t.is_up());
        assert_eq!(t.admit(10_100, 500), Admit::FailFast);
        assert_eq!(t.admit(10_500, 500), Admit::Trial);
        assert_eq!(t.admit(10_501, 500), Admit::FailFast, "one trial at a time");
        assert_eq!(t.admit(11_000, 500), Admit::Trial);
        t.reached();
        assert!(t.is_up());
        assert_eq!(t.admit(11_001, 500), Admit::Go);
    }

    #[test]
    fn a_success_between_connect_failures_resets_the_count() {
        let t = tunnel();
        t.connect_failed(0, 3, 500);
        t.connect_failed(0, 3, 500);
        t.reached();
        t.connect_failed(0, 3, 500);
        t.connect_failed(0, 3, 500);
        assert!(t.is_up());
        t.connect_failed(0, 3, 500);
        assert!(!t.is_up());
    }
}
