//! The path of one request: check it, route it on one snapshot, rewrite it
//! for the upstream, forward it, stream the answer back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::account::Account;
use super::body::ResponseBody;
use super::client_io::ConnShared;
use super::error::{ProxyError, Side, page};
use super::forwarding::{Client, Forwarding};
use super::headers::{self, Scan};
use super::request_id::RequestIds;
use super::target::{origin_form, request_authority};
use super::upstream::{Exchange, H2Upstream, Retry, Settings, Upstreams};
use super::{misdirected, placed};
use crate::access_log;
use crate::config::UpstreamProtocol;
use crate::legacy::{Admit, Tunnel};
use crate::metrics::Metrics;
use crate::placement::MAX_ATTEMPTS;
use crate::routing::host;
use crate::routing::{self, Action, RouteKind};
use crate::snapshot::{SharedSnapshot, Snapshot};

/// What the requests of one worker share.
pub struct WorkerShared {
    pub snapshot: Arc<SharedSnapshot>,
    pub upstreams: Rc<Upstreams>,
    /// The HTTP/2 connection to the legacy balancer (`protocol = "h2c"`).
    pub legacy_h2: H2Upstream,
    pub tunnel: Arc<Tunnel>,
    pub metrics: Arc<Metrics>,
    /// The access log's queue (lines are sent while `[access_log]` is on).
    pub log: Option<Rc<access_log::Sender>>,
    pub ids: RequestIds,
    /// Upgraded streams (WebSocket) hold a receiver each: a drain waits
    /// until none is left or its deadline.
    pub upgraded: tokio::sync::watch::Sender<()>,
}

/// What the requests of one client connection share.
pub struct ConnCtx {
    pub worker: Rc<WorkerShared>,
    pub conn: Arc<ConnShared>,
    /// The client's address, formatted for the forwarding headers.
    pub client: Client,
    pub peer: SocketAddr,
    pub proto: &'static str,
    /// The TLS server name the client asked for (normalised), on a
    /// connection terminated here.
    pub sni: Option<host::Host>,
}

impl ConnCtx {
    /// `proto` is the scheme the client used (`http` or `https`), for
    /// the forwarding headers.
    pub fn new(
        worker: Rc<WorkerShared>,
        conn: Arc<ConnShared>,
        peer: SocketAddr,
        proto: &'static str,
    ) -> Self {
        ConnCtx {
            worker,
            conn,
            client: Client::new(peer.ip()),
            peer,
            proto,
            sni: None,
        }
    }
}

/// hyper's service: every request gets an answer, never an error.
pub async fn handle(
    ctx: Rc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let active = ctx.conn.begin();
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let mut account = Account::default();
    let response = match forward(&ctx, req, &mut account, started).await {
        Ok(r) => r,
        Err(e) => {
            match e.side() {
                Side::Upstream => {
                    tracing::warn!(client = %ctx.peer, %method, status = e.status().as_u16(), error = %e, "upstream failed")
                }
                Side::Client => {
                    tracing::debug!(client = %ctx.peer, %method, status = e.status().as_u16(), error = %e, "request refused")
                }
            }
            error_response(&e)
        }
    };
    let log = account.answered(response.status(), started, &ctx.worker);
    Ok(response.map(|b| b.with_active(active).with_log(log)))
}

/// A request on its way to the legacy balancer.
struct LegacyHop {
    marker: (HeaderName, HeaderValue),
    h2: bool,
    fall: u32,
    retry_ms: u64,
}

/// Checks the request as a strict intermediary must and finds its host:
/// the request's authority (as sent) and its normalised host.
fn check(
    ctx: &ConnCtx,
    req: &Request<Incoming>,
    scan: &Scan,
    snap: &Snapshot,
) -> Result<(Option<HeaderValue>, Option<host::Host>), ProxyError> {
    // Always consume the flag, so it never leaks into the next request.
    let content_length_seen = ctx.conn.take_content_length_seen();
    if req.method() == Method::CONNECT {
        return Err(ProxyError::Connect);
    }
    if content_length_seen && scan.transfer_encoding() {
        return Err(ProxyError::ConflictingFraming);
    }
    let authority = request_authority(req, scan)?;
    let host = authority
        .as_ref()
        .map(|a| host::normalize(a.as_bytes()))
        .transpose()?;
    if let (Some(sni), Some(h)) = (&ctx.sni, &host) {
        misdirected::check(snap, sni, h)?;
    }
    Ok((authority, host))
}

/// Routes and forwards one request; `account` gets its route's series and
/// its log record.
async fn forward(
    ctx: &ConnCtx,
    mut req: Request<Incoming>,
    account: &mut Account,
    started: std::time::Instant,
) -> Result<Response<ResponseBody>, ProxyError> {
    let version = req.version();
    let scan = Scan::of(req.headers());
    // Route on one snapshot; copy out what forwarding needs, then let go.
    let snap = ctx.worker.snapshot.load();
    let routes = snap.route_metrics(&ctx.worker.metrics);
    if snap.config.access_log.is_some() && ctx.worker.log.is_some() {
        account.log_from(ctx.peer, &req, started, routes);
    }
    let (authority, host) = match check(ctx, &req, &scan, &snap) {
        Ok(found) => found,
        Err(e) => {
            account.routed(routes.slot(RouteKind::Rejected, None), None);
            return Err(e);
        }
    };
    let decision = match &host {
        Some(h) => snap.route(h),
        None => routing::route_unknown(&snap.config),
    };
    let tier = decision.tenant.map(|m| snap.tenants.record(m.tenant).tier);
    let tenant = decision.tenant.map(|m| snap.tenants.name(m.tenant));
    account.routed(routes.slot(decision.kind(), tier), tenant);
    let mut targets = [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_ATTEMPTS];
    let mut tenant_header = None;
    let mut legacy = None;
    let mut placement = None;
    let mut settings = Settings {
        connect: snap.config.timeouts.connect,
        response: snap.config.timeouts.upstream_response,
        idle: snap.config.timeouts.upstream_idle,
        max_idle: snap.config.limits.upstream_idle_per_server,
        max_lifetime: None,
        max_pending: None,
        retry: Retry::Never,
    };
    let n = match decision.action {
        Action::Reject(status) => {
            return Ok(local(status, Bytes::from_static(page(status).as_bytes())));
        }
        Action::Maintenance => {
            let mut r = local(
                StatusCode::SERVICE_UNAVAILABLE,
                snap.maintenance_page.clone(),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, snap.retry_after.clone());
            return Ok(r);
        }
        Action::Legacy => {
            let Some(l) = &snap.config.legacy else {
                return Err(ProxyError::NoServer {
                    pool: "legacy".into(),
                });
            };
            if req
                .headers()
                .get(&l.hop_header)
                .is_some_and(|v| v == snap.hop_value)
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
                return Ok(local(e.status(), snap.legacy_down_page.clone()));
            }
            settings = Settings {
                connect: l.connect_timeout,
                response: l.response_timeout,
                idle: l.idle_timeout,
                max_idle: l.max_idle,
                max_lifetime: Some(l.max_lifetime),
                max_pending: Some(l.max_pending_connects),
                retry: Retry::SameTarget,
            };
            legacy = Some(LegacyHop {
                marker: (l.hop_header.clone(), snap.hop_value.clone()),
                h2: l.protocol == UpstreamProtocol::H2c,
                fall: l.probe.fall,
                retry_ms,
            });
            targets[0] = l.address;
            1
        }
        Action::Local { tier, pool, point } => {
            let tenant = decision.tenant.map_or(u32::MAX, |m| m.tenant);
            let (n, p) = placed::place(&snap, tenant, tier, pool, point, &mut targets)?;
            placement = Some(p);
            if let (Some(name), Some(m)) = (&snap.config.forward.tenant_header, decision.tenant) {
                if let Ok(v) = HeaderValue::from_str(snap.tenants.name(m.tenant)) {
                    tenant_header = Some((name.clone(), v));
                }
            }
            n
        }
    };
    let trusted = snap.config.forward.trusts(ctx.peer.ip());
    let id_header = snap.config.forward.request_id_header.clone();
    let send_forwarded = snap.config.forward.forwarded;
    let via = snap.via.for_version(version).clone();
    let via_back = snap.via.for_version(Version::HTTP_11).clone();
    drop(snap);

    // Rewrite for the upstream: HTTP/1.1, origin-form, the routed Host.
    let upgrade = if version == Version::HTTP_11 {
        headers::upgrade_protocol(req.headers(), &scan).cloned()
    } else {
        None
    };
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let is_upgrade = upgrade.is_some();
    headers::strip_hop_by_hop(&mut parts.headers, &scan, upgrade);
    if version == Version::HTTP_2 {
        headers::merge_cookies(&mut parts.headers, &scan);
    }
    // HTTP/1.1 needs a Host, empty when the target has none.
    let host_value = authority.unwrap_or_else(|| HeaderValue::from_static(""));
    Forwarding {
        client: &ctx.client,
        trusted,
        proto: ctx.proto,
        host: (!host_value.is_empty()).then_some(&host_value),
        via: &via,
        forwarded: send_forwarded,
    }
    .apply(&mut parts.headers, &scan);
    parts.headers.insert(header::HOST, host_value);
    if let Some((name, value)) = tenant_header {
        parts.headers.insert(name, value);
    }
    if let Some(l) = &legacy {
        parts.headers.insert(l.marker.0.clone(), l.marker.1.clone());
    }
    // A trusted proxy's request id goes on; anyone else's is replaced.
    let id = match parts.headers.get(&id_header) {
        Some(v) if trusted && !v.is_empty() => v.clone(),
        _ => ctx.worker.ids.next(),
    };
    parts.headers.insert(id_header, id.clone());
    parts.uri = origin_form(parts.uri);
    parts.version = Version::HTTP_11;

    let body = account.request_body(body, id);
    let req = Request::from_parts(parts, body);
    if let Some(p) = &placement {
        // A webserver dying under its requests in flight costs none of
        // the idempotent ones: the next server of their list takes them.
        settings.retry = Retry::NextTarget(p.retry_budget());
    }
    let worker = &ctx.worker;
    let sent = Instant::now();
    let result = match &legacy {
        // Boxed, like the connect paths below: rare, and large futures
        // would grow (and slow the moves of) every request's future.
        Some(l) if l.h2 && !is_upgrade => {
            Box::pin(worker.legacy_h2.send(targets[0], req, &settings)).await
        }
        _ => {
            worker
                .upstreams
                .send(&targets[..n], req, &settings, is_upgrade)
                .await
        }
    };
    let server = match &result {
        Ok(ex) => Some(targets[usize::from(ex.attempt).min(n - 1)]),
        Err(e) => e.failed_server(),
    };
    account.sent(sent.elapsed(), server);
    if let Some(l) = &legacy {
        legacy_outcome(worker, l, &result);
    }
    let in_flight = placement.map(|p| p.outcome(&targets[..n], &result));
    let mut exchange = result?;

    if exchange.response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ProxyError::UnexpectedUpgrade {
                addr: exchange.conn.as_ref().map_or(targets[0], |c| c.addr()),
            });
        };
        let upstream_upgrade = hyper::upgrade::on(&mut exchange.response);
        ctx.conn.set_upgraded();
        // The drain waits for the stream (up to its deadline) while this
        // receiver lives.
        let draining = ctx.worker.upgraded.subscribe();
        tokio::task::spawn_local(splice_upgraded(
            client_upgrade,
            upstream_upgrade,
            ctx.peer,
            draining,
        ));
        let (mut parts, _) = exchange.response.into_parts();
        let up = parts.headers.get(header::UPGRADE).cloned();
        let scan = Scan::of(&parts.headers);
        headers::strip_hop_by_hop(&mut parts.headers, &scan, up);
        parts.headers.append(header::VIA, via_back);
        return Ok(Response::from_parts(
            parts,
            ResponseBody::empty().with_in_flight(in_flight),
        ));
    }

    let (mut parts, body) = exchange.response.into_parts();
    let scan = Scan::of(&parts.headers);
    headers::strip_hop_by_hop(&mut parts.headers, &scan, None);
    parts.headers.append(header::VIA, via_back);
    // An upgrade that was declined leaves a connection in an unclear state:
    // it is not reused.
    let conn = if is_upgrade { None } else { exchange.conn };
    Ok(Response::from_parts(
        parts,
        ResponseBody::upstream(body, conn).with_in_flight(in_flight),
    ))
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

fn local(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::local(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error_response(e: &ProxyError) -> Response<ResponseBody> {
    let status = e.status();
    let mut r = local(status, Bytes::from_static(page(status).as_bytes()));
    if e.closes_connection() {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Copies bytes both ways between an upgraded client and upstream.
async fn splice_upgraded(
    client: OnUpgrade,
    upstream: OnUpgrade,
    peer: SocketAddr,
    _draining: tokio::sync::watch::Receiver<()>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(client = %peer, error = %e, "upgrade failed");
            return;
        }
    };
    let (mut c, mut u) = (TokioIo::new(client), TokioIo::new(upstream));
    match tokio::io::copy_bidirectional(&mut c, &mut u).await {
        Ok((up, down)) => tracing::debug!(client = %peer, up, down, "upgraded stream closed"),
        Err(e) => tracing::debug!(client = %peer, error = %e, "upgraded stream failed"),
    }
}
