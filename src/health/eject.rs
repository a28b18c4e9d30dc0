//! Passive ejection's backoff: how long the `k`-th ejection in a row lasts.

use std::time::Duration;

use crate::config::Eject;

/// `base * 2^(k-1)`, at most `max` (`k` counts from 1).
pub fn backoff(e: &Eject, k: u32) -> Duration {
    let doublings = k.saturating_sub(1).min(20);
    e.base.saturating_mul(1 << doublings).min(e.max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EjectOn;

    #[test]
    fn doubles_up_to_the_max() {
        let e = Eject {
            failures: 5,
            on: EjectOn::Gateway,
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
        };
        let secs: Vec<u64> = (1..=7).map(|k| backoff(&e, k).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(&e, u32::MAX).as_secs(), 300);
    }
}
