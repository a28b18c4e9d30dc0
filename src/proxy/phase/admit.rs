//! The admit phase: a tenant's limits (`[tiers.NAME.limits]`), checked
//! once a request is routed to a webserver pool or the legacy balancer
//! (the tunnel is shared too; answers predictor gives itself, like
//! maintenance pages, are not limited). Over its rate or its client's
//! rate, or at its concurrency: `429` with `Retry-After`, never
//! forwarded. Admitted: the request is counted in flight for its tenant
//! until its response ends.

use std::time::Instant;

use super::super::error::ProxyError;
use super::super::handler::ConnCtx;
use super::plan::Forward;
use crate::routing::{Action, Decision};
use crate::snapshot::Snapshot;

/// Admits the request `decision` routes (or refuses it with
/// [`ProxyError::Limited`]); its count goes to `forward`.
#[inline]
pub fn admit(
    ctx: &ConnCtx,
    snap: &Snapshot,
    decision: &Decision,
    forward: &mut Forward,
    now: Instant,
) -> Result<(), ProxyError> {
    let Some(m) = decision.tenant else {
        return Ok(());
    };
    match decision.action {
        Action::Local { .. } | Action::Legacy => {}
        Action::Reject(_) | Action::Maintenance => return Ok(()),
    }
    let tier = snap.tenants.record(m.tenant).tier;
    let Some(limits) = snap.config.isolation.tiers.get(usize::from(tier)) else {
        return Ok(());
    };
    // The clock only for a rate (a concurrency limit needs none).
    let now_ns = if limits.rate > 0 || limits.client_rate > 0 {
        crate::health::ns_at(now)
    } else {
        0
    };
    let hold = snap
        .tenants_live
        .admit(m.tenant, limits, ctx.peer.ip(), now_ns)
        .map_err(ProxyError::Limited)?;
    forward.tenant = Some(hold);
    Ok(())
}
