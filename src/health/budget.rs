//! A pool's retry budget: how many requests may be sent a second time
//! (to the next server, after their connection died unanswered), so that
//! a failing pool is not sent more work than it had. Like Envoy's and
//! linkerd's budgets: every request placed on the pool deposits one token,
//! a retry costs [`COST`] (at most 10 % more requests than the pool got),
//! and the bucket holds at most [`CAP`] (a burst of 20 retries, available
//! from the start: a quiet pool may still retry the requests in flight on
//! a server that dies). Atomics, shared by the workers, carried across
//! reloads with the pool's live state.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Tokens a retry costs: one retry per ten requests placed.
pub const COST: u32 = 10;
/// Tokens the bucket holds at most.
pub const CAP: u32 = 20 * COST;

#[derive(Debug)]
pub struct RetryBudget {
    tokens: AtomicU32,
    sent: AtomicU64,
    refused: AtomicU64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            tokens: AtomicU32::new(CAP),
            sent: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

impl RetryBudget {
    /// A request was placed on the pool. (The check and the add are not
    /// one step: concurrent deposits may pass `CAP` by a few tokens.)
    #[inline]
    pub fn deposit(&self) {
        if self.tokens.load(Relaxed) < CAP {
            self.tokens.fetch_add(1, Relaxed);
        }
    }

    /// Takes the tokens of one retry; `false` (counted) when the budget
    /// is spent.
    pub fn withdraw(&self) -> bool {
        let took = self
            .tokens
            .fetch_update(Relaxed, Relaxed, |t| t.checked_sub(COST))
            .is_ok();
        if took {
            self.sent.fetch_add(1, Relaxed);
        } else {
            self.refused.fetch_add(1, Relaxed);
        }
        took
    }

    /// Retries sent since the start.
    pub fn sent(&self) -> u64 {
        self.sent.load(Relaxed)
    }

    /// Retries refused for want of budget since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_retry_per_ten_requests() {
        let b = RetryBudget::default();
        for _ in 0..CAP / COST {
            assert!(b.withdraw());
        }
        assert!(!b.withdraw(), "the burst is spent");
        for _ in 0..COST - 1 {
            b.deposit();
        }
        assert!(!b.withdraw(), "nine requests do not pay for a retry");
        b.deposit();
        assert!(b.withdraw(), "ten do");
        assert_eq!((b.sent(), b.refused()), (u64::from(CAP / COST) + 1, 2));
        for _ in 0..10 * CAP {
            b.deposit();
        }
        for _ in 0..CAP / COST {
            assert!(b.withdraw());
        }
        assert!(
            !b.withdraw(),
            "a long quiet time saves no more than the cap"
        );
    }
}
