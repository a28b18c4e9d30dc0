//! The account phase of a request: what its metrics and access log line
//! are made of, gathered as it goes: its route's series (once routed), and, while the access log is
//! on, its [`Record`] (head, tenant, server, timings, bytes).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, StatusCode, header};
use http_body::Body as _;

use super::body::RequestBody;
use super::error::ProxyError;
use super::fields::Fields;
use super::handler::WorkerShared;
use crate::access_log::{Lines, Record, RequestLine};
use crate::metrics::Metrics;
use crate::metrics::routes::{NONE, RouteSlot, RouteTable};
use crate::routing::RouteKind;

pub struct Account {
    slot: Option<Arc<RouteSlot>>,
    /// Set when the access log is on.
    log: Option<Box<Record>>,
    /// The worker's number: its shard of the series
    /// ([`crate::metrics::shards`]).
    worker: usize,
}

impl Account {
    /// The account of a request served by worker `worker`.
    pub fn new(worker: usize) -> Self {
        Account {
            slot: None,
            log: None,
            worker,
        }
    }

    /// Starts the log record from the request's head (the access log is
    /// on); until routed, it counts as rejected.
    pub fn log_from(
        &mut self,
        client: HeaderValue,
        req: &Request<RequestBody>,
        fields: Fields<'_>,
        started: Instant,
        routes: &RouteTable,
    ) {
        self.log = Some(Box::new(Record {
            request: RequestLine {
                time: std::time::SystemTime::now(),
                client,
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                // Set by [`Account::checked`].
                host: None,
                user_agent: fields.bytes(&header::USER_AGENT),
            },
            started,
            request_id: None,
            request_id_generated: false,
            tenant: None,
            slot: routes.slot(RouteKind::Rejected, None).clone(),
            server: None,
            status: 0,
            upstream: None,
            bytes_in: None,
            bytes_out: 0,
            queued: None,
            bounded: None,
            preview: false,
        }));
    }

    /// The check found the request's `authority` (the one it is routed
    /// by, as sent), or refused it (`None`: the log then keeps what it
    /// came with).
    pub fn checked(
        &mut self,
        req: &Request<RequestBody>,
        fields: Fields<'_>,
        authority: Option<&HeaderValue>,
    ) {
        if let Some(log) = &mut self.log {
            log.request.host = match authority {
                Some(a) => Some(a.clone()),
                None => req
                    .uri()
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                    .or_else(|| fields.value(&header::HOST)),
            };
        }
    }

    /// The request is routed: its series, and its tenant's name (looked
    /// up only for the log: the names are apart from the records, and
    /// reading one per request was a cache miss on a large table).
    pub fn routed<'t>(&mut self, slot: &Arc<RouteSlot>, tenant: impl FnOnce() -> Option<&'t str>) {
        if let Some(log) = &mut self.log {
            log.slot = slot.clone();
            log.tenant = tenant().map(crate::access_log::Name::new);
        }
        self.slot = Some(slot.clone());
    }

    /// The body sent upstream: counted for the log, which also keeps the
    /// request id.
    /// (`generated`: predictor made the id.)
    pub fn request_body(
        &mut self,
        body: RequestBody,
        id: HeaderValue,
        generated: bool,
    ) -> RequestBody {
        match &mut self.log {
            Some(log) => {
                log.request_id = Some(id);
                log.request_id_generated = generated;
                if body.is_end_stream() {
                    // Nothing to count (logged as 0): no counter to share.
                    return body;
                }
                let n = Arc::new(AtomicU64::new(0));
                log.bytes_in = Some(n.clone());
                body.counted(n)
            }
            None => body,
        }
    }

    /// The upstream answered (or failed) after `waited`; `server` is the
    /// one that answered or failed last.
    pub fn sent(&mut self, waited: Duration, server: Option<SocketAddr>) {
        if let Some(slot) = &self.slot {
            slot.waited(self.worker, waited.as_secs_f64());
        }
        if let Some(log) = &mut self.log {
            log.upstream = Some(waited);
            log.server = server;
        }
    }

    /// The request previews a site in maintenance (`[preview]`).
    pub fn preview(&mut self) {
        if let Some(log) = &mut self.log {
            log.preview = true;
        }
    }

    /// The request waited `d` in a pool's queue before it was sent.
    pub fn queued(&mut self, d: Duration) {
        if let Some(log) = &mut self.log {
            log.queued = Some(d);
        }
    }

    /// A tenant's limit or a pool's queue refused the request: counted by
    /// its tier and the reason, marked in its log line.
    pub fn bounded(&mut self, e: &ProxyError, metrics: &Metrics) {
        let tier = self.slot.as_ref().map_or(NONE, |s| &*s.tier);
        let reason = match e {
            ProxyError::Limited(l) => {
                metrics.limited(tier, l.as_str()).increment(1);
                l.as_str()
            }
            ProxyError::Shed { reason, .. } => {
                metrics.shed(tier, reason.as_str()).increment(1);
                reason.as_str()
            }
            _ => return,
        };
        if let Some(log) = &mut self.log {
            log.bounded = Some(reason);
        }
    }

    /// Counts the answer; returns the log record to send when the
    /// response ends.
    pub fn answered(
        self,
        status: StatusCode,
        started: Instant,
        worker: &WorkerShared,
    ) -> Option<(Box<Record>, Rc<Lines>)> {
        if let Some(slot) = &self.slot {
            slot.answered(self.worker, status);
            let took = crate::proxy::clock::now_std().saturating_duration_since(started);
            slot.took(self.worker, took.as_secs_f64());
        }
        match (self.log, &worker.log) {
            (Some(mut record), Some(lines)) => {
                record.status = status.as_u16();
                Some((record, lines.clone()))
            }
            _ => None,
        }
    }
}
