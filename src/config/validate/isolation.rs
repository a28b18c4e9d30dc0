//! `[tiers.NAME.limits]`, a pool's `max_in_flight` and `[pools.NAME.queue]`,
//! a server's `max_in_flight`: isolation between tenants.

use super::super::Collector;
use super::super::isolation::{PoolIsolation, TierLimits, defaults};
use super::super::raw::{RawQueue, RawTierLimits, Spanned};
use super::values::{duration, int};

/// Highest in-flight ceiling of a server (and concurrency of a tenant).
const MAX_CONCURRENT: i64 = 1_000_000;
/// Highest rate (requests per second) and burst.
const MAX_RATE: i64 = 10_000_000;

/// A pool's queue (its servers' ceilings are pushed by the caller as it
/// reads them), and the pool's default ceiling for its servers.
pub(super) fn pool_isolation(
    c: &mut Collector<'_>,
    key: &str,
    max_in_flight: Option<Spanned<i64>>,
    queue: RawQueue,
) -> (PoolIsolation, u32) {
    let ceiling = int(
        c,
        &format!("{key}.max_in_flight"),
        max_in_flight,
        defaults::MAX_IN_FLIGHT,
        0,
        MAX_CONCURRENT,
    );
    let iso = PoolIsolation {
        max_in_flight: Vec::new(),
        queue_timeout: duration(
            c,
            &format!("{key}.queue.timeout"),
            queue.timeout,
            defaults::QUEUE_TIMEOUT_SECS,
        ),
        queue_max: int(
            c,
            &format!("{key}.queue.max"),
            queue.max,
            defaults::QUEUE_MAX,
            1,
            1 << 20,
        ) as usize,
    };
    (iso, ceiling as u32)
}

/// A server's ceiling: its own, or its pool's (`pool`).
pub(super) fn server_ceiling(
    c: &mut Collector<'_>,
    key: &str,
    own: Option<Spanned<i64>>,
    pool: u32,
) -> u32 {
    int(
        c,
        &format!("{key}.max_in_flight"),
        own,
        i64::from(pool),
        0,
        MAX_CONCURRENT,
    ) as u32
}

/// `[tiers.NAME.limits]` of a tier costing `cost`.
pub(super) fn tier_limits(
    c: &mut Collector<'_>,
    key: &str,
    l: RawTierLimits,
    cost: u32,
) -> TierLimits {
    let key = format!("{key}.limits");
    let k = |name: &str| format!("{key}.{name}");
    let concurrent = int(
        c,
        &k("concurrent"),
        l.concurrent,
        defaults::CONCURRENT,
        0,
        MAX_CONCURRENT,
    ) as u32;
    let (rate, burst) = rate_and_burst(c, &k("rate"), l.rate, &k("burst"), l.burst);
    let (client_rate, client_burst) = rate_and_burst(
        c,
        &k("client_rate"),
        l.client_rate,
        &k("client_burst"),
        l.client_burst,
    );
    TierLimits {
        concurrent,
        rate,
        burst,
        client_rate,
        client_burst,
        share: int(c, &k("share"), l.share, i64::from(cost), 1, 1000) as u32,
        priority: int(c, &k("priority"), l.priority, 0, 0, 255) as u8,
    }
}

/// A rate (0: off) and its burst (default: one second's worth); a burst
/// without a rate is refused (it would limit nothing).
fn rate_and_burst(
    c: &mut Collector<'_>,
    rate_key: &str,
    rate: Option<Spanned<i64>>,
    burst_key: &str,
    burst: Option<Spanned<i64>>,
) -> (u32, u32) {
    let r = int(c, rate_key, rate, 0, 0, MAX_RATE) as u32;
    let burst_span = burst.as_ref().map(|b| b.span());
    let b = int(c, burst_key, burst, i64::from(r.max(1)), 1, MAX_RATE) as u32;
    if r == 0 {
        if let Some(span) = burst_span {
            c.at(
                span,
                burst_key,
                format!("a burst needs a rate: set {rate_key} too"),
            );
        }
    }
    (r, b)
}
