//! The queue phase: a request placed on servers that were all at their
//! in-flight ceilings waits in the pool's fair queue
//! ([`crate::isolation::queue`]) for a slot, at most the pool's
//! `queue.timeout`; then it goes on to the server it was granted, or is
//! shed (`503` with `Retry-After`). Most requests never wait: this phase
//! is then one check.

use std::time::Instant;

use super::super::account::Account;
use super::super::error::{ProxyError, ShedReason};
use super::super::placed::retry_after;
use super::plan::Forward;
use crate::health::Waited;
use crate::metrics::Metrics;

/// Whether the request waits for a slot.
#[inline]
pub fn waits(forward: &mut Forward) -> bool {
    forward
        .placement
        .as_mut()
        .is_some_and(|p| p.ticket().is_some())
}

/// Waits for the slot of a request that [`waits`] (boxed by the caller:
/// rare, and its timer would grow every request's future); returns when
/// the wait ended (the request is sent from then).
pub async fn wait(
    forward: &mut Forward,
    account: &mut Account,
    metrics: &Metrics,
) -> Result<Instant, ProxyError> {
    let since = crate::proxy::clock::now_std();
    let Some(placed) = forward.placement.as_mut() else {
        return Ok(since);
    };
    let Some(ticket) = placed.ticket() else {
        return Ok(since);
    };
    let pool = ticket.pool().clone();
    metrics.queued(&pool.name).increment(1);
    let waited = tokio::time::timeout(pool.queue_timeout, ticket.wait()).await;
    let now = crate::proxy::clock::now_std();
    let took = now.saturating_duration_since(since);
    metrics.queue_wait(&pool.name).record(took.as_secs_f64());
    account.queued(took);
    let reason = match waited {
        Ok(Waited::Granted(f)) => {
            placed.granted(f, &mut forward.targets, now);
            return Ok(now);
        }
        Ok(Waited::Shed) => ShedReason::Evicted,
        Err(_) => ShedReason::QueueTimeout,
    };
    Err(ProxyError::Shed {
        pool: pool.name.clone(),
        reason,
        retry_after: retry_after(&pool),
    })
}
