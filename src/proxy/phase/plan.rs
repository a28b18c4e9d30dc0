//! The plan phase: a routing decision made concrete. Each route is one
//! plan kind: an answer given here, the legacy balancer, or a pool's
//! servers placed by live load.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::super::body::ResponseBody;
use super::super::edits::Edits;
use super::super::error::{ProxyError, page};
use super::super::fields::Fields;
use super::super::handler::ConnCtx;
use super::super::placed::{self, Placed};
use super::super::upstream::{Retry, Settings};
use super::respond::local;
use crate::config::UpstreamProtocol;
use crate::health::InFlight;
use crate::isolation::TenantHold;
use crate::legacy::Admit;
use crate::model::MAX_ATTEMPTS;
use crate::routing::{Action, Decision};
use crate::snapshot::Snapshot;

/// A request to forward: where, how, and what it adds on the way. Filled
/// in place by [`plan`] (it is a few hundred bytes: built where it stays,
/// not moved through return values).
pub struct Forward {
    /// The addresses to try, in order (`n` of them).
    pub targets: [SocketAddr; MAX_ATTEMPTS],
    pub n: usize,
    /// Timeouts, limits and retries (a pool's retry budget is set when
    /// sending: it borrows the placement).
    pub settings: Settings<'static>,
    /// To the legacy balancer: its hop marker and tunnel settings.
    pub legacy: Option<LegacyHop>,
    /// To a pool: the servers placed, the request counted in flight.
    pub placement: Option<Placed>,
    /// The tenant's name, to a pool configured to send it.
    pub tenant_header: Option<(HeaderName, HeaderValue)>,
    /// What the rewrite changes in the request's fields (set by the
    /// rewrite, applied as the upstream head is written).
    pub edits: Option<Edits>,
    /// The request asks to upgrade its connection (set by the rewrite):
    /// a `101` hands the upstream connection to the client's.
    pub upgrade: bool,
    /// The client speaks HTTP/2 (set by the rewrite): the response's
    /// fields go into a map for hyper's server.
    pub client_h2: bool,
    /// The server that answered or failed last (set by the send).
    pub server: Option<SocketAddr>,
    /// The request's count in flight on the server that answered, held
    /// until the response body ends (set by the send).
    pub in_flight: Option<InFlight>,
    /// The request's count for its tenant (set by the admission), held
    /// until the response body ends.
    pub tenant: Option<TenantHold>,
    /// A copy for the new pool, sent once the live answer's head is in
    /// (a site in `shadow`).
    pub shadow: Option<Box<crate::proxy::shadow::Copy>>,
}

impl Default for Forward {
    fn default() -> Self {
        Forward {
            targets: [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_ATTEMPTS],
            n: 0,
            settings: Settings {
                connect: std::time::Duration::ZERO,
                response: std::time::Duration::ZERO,
                idle: std::time::Duration::ZERO,
                max_idle: 0,
                max_lifetime: None,
                max_pending: None,
                retry: Retry::Never,
            },
            legacy: None,
            placement: None,
            tenant_header: None,
            edits: None,
            upgrade: false,
            client_h2: false,
            server: None,
            in_flight: None,
            tenant: None,
            shadow: None,
        }
    }
}

/// A request on its way to the legacy balancer.
pub struct LegacyHop {
    pub marker: (HeaderName, HeaderValue),
    pub h2: bool,
    pub fall: u32,
    pub retry_ms: u64,
}

/// Makes `decision` concrete: an answer given here, or `out` filled in
/// with the forward. `fields` are the request's (a request that carries
/// predictor's own hop marker came back around: a loop).
#[inline]
pub fn plan(
    ctx: &ConnCtx,
    snap: &Snapshot,
    decision: &Decision,
    fields: Fields<'_>,
    out: &mut Forward,
    now: std::time::Instant,
) -> Result<Option<Response<ResponseBody>>, ProxyError> {
    let answer = match decision.action {
        Action::Reject(status) => Some(local(status, Bytes::from_static(page(status).as_bytes()))),
        Action::Maintenance => {
            let mut r = local(
                StatusCode::SERVICE_UNAVAILABLE,
                snap.maintenance_page.clone(),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, snap.retry_after.clone());
            Some(r)
        }
        Action::Legacy => legacy(ctx, snap, fields, out)?,
        Action::Local { tier, pool, point } => {
            let tenant = decision.tenant.map_or(u32::MAX, |m| m.tenant);
            let (n, p) = placed::place(snap, tenant, tier, pool, point, &mut out.targets, now)?;
            out.n = n;
            out.placement = Some(p);
            out.settings = local_settings(snap);
            if let (Some(name), Some(m)) = (&snap.config.forward.tenant_header, decision.tenant) {
                if let Ok(v) = HeaderValue::from_str(snap.tenants.name(m.tenant)) {
                    out.tenant_header = Some((name.clone(), v));
                }
            }
            None
        }
    };
    Ok(answer)
}

/// The settings of a pool's servers.
fn local_settings(snap: &Snapshot) -> Settings<'static> {
    let c = &snap.config;
    Settings {
        connect: c.timeouts.connect,
        response: c.timeouts.upstream_response,
        idle: c.timeouts.upstream_idle,
        max_idle: c.limits.upstream_idle_per_server,
        max_lifetime: None,
        max_pending: None,
        retry: Retry::Never,
    }
}

/// To the legacy balancer, unless the request came back around (508) or
/// the balancer is known down (502 at once, but for one trial request per
/// probe interval).
fn legacy(
    ctx: &ConnCtx,
    snap: &Snapshot,
    fields: Fields<'_>,
    out: &mut Forward,
) -> Result<Option<Response<ResponseBody>>, ProxyError> {
    let Some(l) = &snap.config.legacy else {
        return Err(ProxyError::NoServer {
            pool: "legacy".into(),
        });
    };
    if fields
        .get(&l.hop_header)
        .is_some_and(|v| v == snap.hop_value.as_bytes())
    {
        ctx.worker.metrics.legacy.loops_refused.increment(1);
        return Err(ProxyError::LoopDetected);
    }
    let tunnel = &ctx.worker.tunnel;
    let retry_ms = l.probe.interval.as_millis() as u64;
    if !tunnel.is_up() && tunnel.admit(tunnel.now_ms(), retry_ms) == Admit::FailFast {
        ctx.worker.metrics.legacy.fast_failures.increment(1);
        let e = ProxyError::LegacyDown { addr: l.address };
        tracing::debug!(client = %ctx.peer, error = %e, "failing fast");
        return Ok(Some(local(e.status(), snap.legacy_down_page.clone())));
    }
    out.targets[0] = l.address;
    out.n = 1;
    out.settings = Settings {
        connect: l.connect_timeout,
        response: l.response_timeout,
        idle: l.idle_timeout,
        max_idle: l.max_idle,
        max_lifetime: Some(l.max_lifetime),
        max_pending: Some(l.max_pending_connects),
        retry: Retry::SameTarget,
    };
    out.legacy = Some(LegacyHop {
        marker: (l.hop_header.clone(), snap.hop_value.clone()),
        h2: l.protocol == UpstreamProtocol::H2c,
        fall: l.probe.fall,
        retry_ms,
    });
    Ok(None)
}
