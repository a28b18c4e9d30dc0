//! The send phase: the request out on a pooled connection (or the legacy
//! balancer's multiplexed h2c one), retried as the plan allows
//! ([`settings`]; the exchange itself is awaited in `handler::forward`),
//! and what the outcome teaches ([`outcome`]): the servers' passive health
//! and latency, the tunnel's state and connection counts, the request's
//! upstream timing.

use std::time::Instant;

use super::super::account::Account;
use super::super::error::ProxyError;
use super::super::handler::{ConnCtx, WorkerShared};
use super::super::upstream::{Exchange, Retry, Settings};
use super::plan::{Forward, LegacyHop};

/// The settings to send with: the plan's, and for a pool its retry
/// budget (a webserver dying under its requests in flight costs none of
/// the idempotent ones: the next server of their list takes them).
#[inline]
pub fn settings(forward: &Forward) -> Settings<'_> {
    let mut settings = forward.settings;
    if let Some(p) = &forward.placement {
        settings.retry = Retry::NextTarget(p.retry_budget());
    }
    settings
}

/// The exchange's future: on the legacy balancer's multiplexed h2c
/// connection, or on a pooled HTTP/1.1 connection to the first target
/// that takes it. (Awaited by the caller itself: a wrapping async fn
/// would move this large future once more per request.)
#[inline]
pub fn h2c(forward: &Forward) -> bool {
    forward
        .legacy
        .as_ref()
        .is_some_and(|l| l.h2 && !forward.upgrade)
}

/// What the outcome teaches, once the exchange is over (or failed):
/// the request's upstream timing, the tunnel's or the servers' passive
/// health, and the request's count in flight, which moves to the server
/// that answered (held in `forward` until the response body ends).
#[inline]
pub fn outcome(
    ctx: &ConnCtx,
    forward: &mut Forward,
    result: &Result<Exchange, ProxyError>,
    sent: Instant,
    account: &mut Account,
) {
    let (targets, n) = (&forward.targets, forward.n);
    let server = match result {
        Ok(ex) => Some(targets[usize::from(ex.attempt).min(n - 1)]),
        Err(e) => e.failed_server(),
    };
    let at = crate::proxy::clock::now_std();
    account.sent(at.saturating_duration_since(sent), server);
    if let Some(l) = &forward.legacy {
        legacy_outcome(&ctx.worker, l, result);
    }
    forward.in_flight = forward
        .placement
        .take()
        .and_then(|p| p.outcome(&targets[..n], result, at));
    forward.server = server;
}

/// Feeds the tunnel's passive health and the legacy connection metrics.
fn legacy_outcome(worker: &WorkerShared, l: &LegacyHop, result: &Result<Exchange, ProxyError>) {
    let m = &worker.metrics.legacy;
    match result {
        Ok(ex) => {
            worker.tunnel.reached();
            m.connections_opened.increment(u64::from(ex.opened));
            if ex.reused {
                m.connections_reused.increment(1);
            }
            if ex.retried {
                m.retries.increment(1);
            }
        }
        Err(e) if e.is_connect_failure() => {
            let t = &worker.tunnel;
            t.connect_failed(t.now_ms(), l.fall, l.retry_ms);
        }
        Err(_) => {}
    }
}
