//! One request's answer: what a worker's and a connection's requests
//! share, and the sequence of the request's phases ([`super::phase`]);
//! every failure becomes its status here, logged by the side it is blamed
//! on. Called by the HTTP/1 connection driver ([`super::front`]) and by
//! each HTTP/2 stream ([`super::h2`]).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use http::{HeaderValue, Request, Response};

use super::account::Account;
use super::body::{RequestBody, ResponseBody};
use super::client_io::ConnShared;
use super::error::{ProxyError, Side};
use super::fields::Fields;
use super::forwarding::Client;
use super::headers::Scan;
use super::phase::plan;
use super::phase::{admit, check, preview, queue, respond, rewrite, send};
use super::request_id::RequestIds;
use super::upstream::{ClientFields, H2Upstream, Upstreams};
use crate::access_log;
use crate::legacy::Tunnel;
use crate::metrics::Metrics;
use crate::model::host;
use crate::routing::migration::MigrationState;
use crate::routing::{self, RouteKind};
use crate::snapshot::SharedSnapshot;

/// What the requests of one worker share.
pub struct WorkerShared {
    /// The worker's number (from 0): its shard of the request series
    /// ([`crate::metrics::shards`]), which no other thread writes.
    pub index: usize,
    pub snapshot: Arc<SharedSnapshot>,
    pub upstreams: Rc<Upstreams>,
    /// The HTTP/2 connection to the legacy balancer (`protocol = "h2c"`).
    pub legacy_h2: H2Upstream,
    pub tunnel: Arc<Tunnel>,
    pub metrics: Arc<Metrics>,
    /// The worker's access log lines (written while `[access_log]` is on).
    pub log: Option<Rc<access_log::Lines>>,
    pub ids: RequestIds,
    /// HTTP/1 connections' read buffers, lent while they read.
    pub read_buffers: super::front::ReadBuffers,
    /// Upgraded streams (WebSocket) hold a receiver each: a drain waits
    /// until none is left or its deadline.
    pub upgraded: tokio::sync::watch::Sender<()>,
    /// Shadow copies: in flight now, and the eligible requests seen (for
    /// the sample).
    pub shadow: super::shadow::Counters,
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
    /// The client's address as the access log writes it (made by the
    /// connection's first logged request).
    log_client: std::cell::OnceCell<HeaderValue>,
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
            log_client: std::cell::OnceCell::new(),
        }
    }

    /// The client's address for the access log.
    pub fn log_client(&self) -> HeaderValue {
        self.log_client
            .get_or_init(|| access_log::address_value(self.peer))
            .clone()
    }
}

/// The answer to one request, whatever happens on its way: every failure
/// becomes its status here, logged by the side it is blamed on. The
/// request's header fields are `fields` (its own map is empty: an
/// HTTP/1.x request's are read from its head, never put in a map).
#[allow(clippy::manual_async_fn)]
pub fn answer<'a>(
    ctx: &'a ConnCtx,
    req: Request<RequestBody>,
    fields: Fields<'a>,
) -> impl std::future::Future<Output = Response<ResponseBody>> + 'a {
    async move {
        let active = ctx.conn.begin();
        let started = crate::proxy::clock::now_std();
        let method = req.method().clone();
        let mut account = Account::new(ctx.worker.index);
        let mut response = match forward(ctx, req, fields, &mut account, started).await {
            Ok(r) => r,
            Err(e) => {
                match e.side() {
                    Side::Upstream => {
                        tracing::warn!(client = %ctx.peer, %method, status = e.status().as_u16(), error = %e, "upstream failed")
                    }
                    Side::Client => {
                        tracing::debug!(client = %ctx.peer, %method, status = e.status().as_u16(), error = %e, "request refused")
                    }
                    Side::Bound => {
                        account.bounded(&e, &ctx.worker.metrics);
                        tracing::debug!(client = %ctx.peer, %method, status = e.status().as_u16(), error = %e, "request bounded")
                    }
                }
                respond::error_response(&e)
            }
        };
        let log = account.answered(response.status(), started, &ctx.worker);
        response.body_mut().set_request(active, log);
        response
    }
}

/// The answer to a request refused before it could be read whole (a head
/// the codec refuses): counted on the rejected series.
pub fn refuse(ctx: &ConnCtx, e: ProxyError) -> Response<ResponseBody> {
    tracing::debug!(client = %ctx.peer, status = e.status().as_u16(), error = %e, "request refused");
    let response = respond::error_response(&e);
    let snap = ctx.worker.snapshot.load();
    let slot = snap
        .route_metrics(&ctx.worker.metrics)
        .slot(RouteKind::Rejected, None);
    slot.answered(ctx.worker.index, response.status());
    response
}

/// Runs the phases of one request (see [`super::phase`]): check, route,
/// admit, plan, rewrite, queue, send, respond. `account` gets its route's series and its
/// log record.
///
/// Not an `async fn`: that would copy `req` into a local of its own beside
/// the argument, 264 bytes more in the future (rust-lang/rust#62958).
#[allow(clippy::manual_async_fn)]
fn forward<'a>(
    ctx: &'a ConnCtx,
    mut req: Request<RequestBody>,
    fields: Fields<'a>,
    account: &'a mut Account,
    started: std::time::Instant,
) -> impl std::future::Future<Output = Result<Response<ResponseBody>, ProxyError>> + 'a {
    async move {
        let mut forward = plan::Forward::default();
        // Check, route, plan and rewrite on one snapshot, in a block: what
        // they use alone (the checked host, the decision, the snapshot) ends
        // before the exchange's `.await`, so it takes no room in this future
        // (hyper keeps the future for a connection's life, and spawns a task
        // holding it per HTTP/2 stream).
        let via_back = {
            let scan = Scan::of(fields);
            let snap = ctx.worker.snapshot.load();
            let routes = snap.route_metrics(&ctx.worker.metrics);
            if snap.config.access_log.is_some() && ctx.worker.log.is_some() {
                account.log_from(ctx.log_client(), &req, fields, started, routes);
            }
            let checked = match check::check(ctx, &req, fields, &scan, &snap) {
                Ok(found) => found,
                Err(e) => {
                    account.checked(&req, fields, None);
                    account.routed(routes.slot(RouteKind::Rejected, None), || None);
                    return Err(e);
                }
            };
            account.checked(&req, fields, checked.authority.as_ref());
            let mut decision = match &checked.host {
                Some(h) => snap.route(h),
                None => routing::route_unknown(&snap.config),
            };
            if preview::preview(ctx, &snap, &mut decision, fields) {
                account.preview();
            }
            let tier = decision.tenant.map(|m| snap.tenants.record(m.tenant).tier);
            let tenant = || decision.tenant.map(|m| snap.tenants.name(m.tenant));
            account.routed(routes.slot(decision.kind(), tier), tenant);
            admit::admit(ctx, &snap, &decision, &mut forward, started)?;
            if let Some(answer) = plan::plan(ctx, &snap, &decision, fields, &mut forward, started)?
            {
                return Ok(answer);
            }
            if decision
                .state
                .is_some_and(|(s, _)| s == MigrationState::Shadow)
            {
                forward.shadow = super::shadow::prepare(ctx, &snap, &decision, &req, fields);
            }
            let (fixed, via_back) = rewrite::Fixed::of(&snap, ctx.peer.ip(), req.version());
            drop(snap);
            let sent = rewrite::AsSent {
                fields,
                scan: &scan,
                authority: checked.authority,
            };
            rewrite::request(ctx, &mut req, sent, fixed, &mut forward, account);
            via_back
        };
        // Sent from here: after a wait in the queue, its end (the
        // upstream's timing and the server's latency leave the wait out).
        let mut sent = started;
        if queue::waits(&mut forward) {
            sent = Box::pin(queue::wait(&mut forward, account, &ctx.worker.metrics)).await?;
        }
        let h2c = send::h2c(&forward);
        if h2c {
            // hyper's HTTP/2 client sends a map: the fields with the edits.
            let mut map = fields.to_map()?;
            if let Some(edits) = forward.edits.take() {
                edits.apply(&mut map);
            }
            *req.headers_mut() = map;
        }
        let result = {
            let settings = send::settings(&forward);
            let worker = &ctx.worker;
            if h2c {
                // Boxed, like the connect paths: rare, and large futures
                // would grow (and slow the moves of) every request's future.
                Box::pin(
                    worker
                        .legacy_h2
                        .send(forward.targets[0], take(&mut req), &settings),
                )
                .await
            } else {
                let upgrade = forward.upgrade;
                let targets = &forward.targets[..forward.n];
                worker
                    .upstreams
                    .send(
                        targets,
                        &mut req,
                        ClientFields {
                            fields,
                            edits: forward.edits.as_ref(),
                        },
                        &settings,
                        upgrade,
                        forward.client_h2,
                    )
                    .await
            }
        };
        // Timed from the request's start (one clock read less; routing
        // takes a few microseconds).
        send::outcome(ctx, &mut forward, &result, sent, account);
        // A shadow copy goes once the live body has ended (its length and
        // digest observed on the way): the body carries it.
        let tap = match (forward.shadow.take(), &result) {
            (Some(copy), Ok(ex)) => Some(super::shadow::Tap::new(ctx, copy, ex)),
            _ => None,
        };
        let mut response = respond::respond(result?, &mut forward, via_back)?;
        if let Some(tap) = tap {
            response.body_mut().set_shadow(tap);
        }
        Ok(response)
    }
}

/// The request, leaving an empty one in its place (for the HTTP/2 legacy
/// client, which takes it by value).
fn take(req: &mut Request<RequestBody>) -> Request<RequestBody> {
    std::mem::replace(req, Request::new(RequestBody::empty()))
}
