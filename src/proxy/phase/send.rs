//! The send phase: the request out on a pooled connection (or the legacy
//! balancer's multiplexed h2c one), retried as the plan allows, and what
//! the outcome teaches: the servers' passive health and latency, the
//! tunnel's state and connection counts, the request's upstream timing.

use tokio::time::Instant;

use super::super::account::Account;
use super::super::body::RequestBody;
use super::super::error::ProxyError;
use super::super::handler::{ConnCtx, WorkerShared};
use super::super::upstream::{Exchange, Retry};
use super::plan::{Forward, LegacyHop};

/// Sends `request` as `forward` says: the exchange, or why there was
/// none. The server that answered (or failed last) and the request's
/// count in flight on it go to `forward`.
pub async fn send(
    ctx: &ConnCtx,
    forward: &mut Forward,
    request: http::Request<RequestBody>,
    account: &mut Account,
) -> Result<Exchange, ProxyError> {
    let upgrade = forward.client_upgrade.is_some();
    let (targets, n, legacy) = (&forward.targets, forward.n, &forward.legacy);
    let placement = forward.placement.take();
    let mut settings = forward.settings;
    if let Some(p) = &placement {
        // A webserver dying under its requests in flight costs none of
        // the idempotent ones: the next server of their list takes them.
        settings.retry = Retry::NextTarget(p.retry_budget());
    }
    let worker = &ctx.worker;
    let sent = Instant::now();
    let result = match legacy {
        // Boxed, like the connect paths: rare, and large futures would
        // grow (and slow the moves of) every request's future.
        Some(l) if l.h2 && !upgrade => {
            Box::pin(worker.legacy_h2.send(targets[0], request, &settings)).await
        }
        _ => {
            worker
                .upstreams
                .send(&targets[..n], request, &settings, upgrade)
                .await
        }
    };
    let server = match &result {
        Ok(ex) => Some(targets[usize::from(ex.attempt).min(n - 1)]),
        Err(e) => e.failed_server(),
    };
    account.sent(sent.elapsed(), server);
    if let Some(l) = legacy {
        legacy_outcome(worker, l, &result);
    }
    forward.in_flight = placement.map(|p| p.outcome(&targets[..n], &result));
    forward.server = server;
    result
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
