//! Connections to webservers and the legacy balancer: one keep-alive pool
//! per worker thread.
//!
//! HTTP/1.1 upstreams are spoken by predictor itself ([`conn`], [`wire`],
//! [`received`], on the codec of [`super::h1`]): the task of the client
//! connection writes the request on a pooled socket, reads the response
//! head and then the body as the client takes it, and puts the socket back
//! in the pool when the last byte is read. No task per upstream connection
//! and no channel between two tasks, as with hyper's client (measured in
//! `docs/performance.md`). predictor runs one single-threaded runtime per
//! core (like HAProxy and nginx workers), so each worker keeps its own
//! idle connections in a `RefCell`: checkout and checkin touch no lock and
//! no other core. HTTP/2 to the legacy balancer stays hyper's ([`h2`]).
//!
//! Idle connections are kept most-recent-first (the warmest socket goes
//! out next), at most `max_idle` per server, closed after `idle`, and not
//! reused past `max_lifetime`. Connects in progress to one address can be
//! bounded (`max_pending`): further requests wait for a slot (or for a
//! connection coming back) up to the connect timeout. A request not one
//! byte of which left (the server had closed the pooled connection) goes
//! again on another connection; a bodiless idempotent request whose
//! pooled connection died before any answer goes once more on a new
//! connection to the same server (a keep-alive race), and one whose new
//! connection died so is sent once more as [`Retry`] says (the legacy
//! balancer: on a new connection; a pool: to the next server, within the
//! pool's retry budget); a request that fails to connect goes to the next
//! server of its preference list.

mod conn;
mod h2;
mod pool;
mod received;
mod wire;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Buf;
use http::{Method, Request, Response};
use http_body::Body;

use super::body::RequestBody;
use super::clock;
use super::error::ProxyError;
use super::h1::response::Answering;
use conn::{Failure, Outgoing};
use received::Home;

pub use h2::H2Upstream;
pub use pool::Upstreams;
use pool::open;
pub use received::{BodyError, H1Body, Received};
pub use wire::{ClientFields, Fields};

/// What to do with a bodiless idempotent request whose connection died
/// before any answer (RFC 9110 §9.2.2: it may be sent again).
#[derive(Debug, Clone, Copy)]
pub enum Retry<'a> {
    /// Answer the failure.
    Never,
    /// Once more, on a new connection to the same address (the legacy
    /// balancer: one address, which spreads the request itself).
    SameTarget,
    /// Once more, to the next server of the preference list, within the
    /// pool's budget (HAProxy's `retry-on` + `option redispatch`).
    NextTarget(&'a crate::health::budget::RetryBudget),
}

/// Timeouts and limits of one forwarding, taken from the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub connect: Duration,
    pub response: Duration,
    pub idle: Duration,
    pub max_idle: usize,
    /// Connections older than this are not reused.
    pub max_lifetime: Option<Duration>,
    /// Connects in progress per address and worker.
    pub max_pending: Option<usize>,
    /// A bodiless idempotent request whose connection died unanswered.
    pub retry: Retry<'a>,
}

/// A response, and what it took.
pub struct Exchange {
    /// The response; from an HTTP/1.1 upstream its fields are in
    /// `fields`, not in its header map.
    pub response: Response<Received>,
    /// The response's fields as the client gets them (HTTP/1.1 upstreams).
    pub fields: Option<Fields>,
    /// Connections opened for this request.
    pub opened: u32,
    /// It was sent on an already open connection.
    pub reused: bool,
    /// It was sent again after a connection died unanswered.
    pub retried: bool,
    /// Index in the targets of the server that answered.
    pub attempt: u8,
}

/// Whether a request may go again after its connection died unanswered
/// (RFC 9110 §9.2.2): idempotent and bodiless.
fn repeatable(method: &Method, body: &RequestBody) -> bool {
    method.is_idempotent() && body.is_end_stream()
}

impl Upstreams {
    /// Sends `req`, its fields changed by `edits` as its head is written,
    /// to the first of `targets` that takes it. With `upgrade`, always on a
    /// new connection (an upgrade takes the connection over). `to_h2`: the
    /// response goes to an HTTP/2 client (its fields in a map, not as
    /// [`Fields`]).
    pub async fn send(
        self: &Rc<Self>,
        targets: &[SocketAddr],
        req: &mut Request<RequestBody>,
        fields: wire::ClientFields<'_>,
        settings: &Settings<'_>,
        upgrade: bool,
        to_h2: bool,
    ) -> Result<Exchange, ProxyError> {
        let mut body = std::mem::replace(req.body_mut(), RequestBody::empty());
        let to = Answering {
            head: req.method() == Method::HEAD,
            upgrade,
        };
        let repeatable = !matches!(settings.retry, Retry::Never) && repeatable(req.method(), &body);
        let mut bytes = self.buffer();
        let framing = wire::request_head(req, fields, body.is_end_stream(), &mut bytes);
        let mut out = Outgoing::new(bytes, framing);
        let mut last = None;
        let mut opened = 0;
        let mut retried = false;
        'targets: for (attempt, &addr) in targets.iter().enumerate() {
            let mut fresh = upgrade;
            loop {
                // Boxed: only on a new connection, and it would otherwise
                // grow every request's future.
                let now = clock::now();
                let (mut conn, reused) = if fresh {
                    match Box::pin(self.connection(addr, settings, true)).await {
                        Ok(c) => c,
                        Err(e) => {
                            note_connect_failure(&e);
                            last = Some(e);
                            continue 'targets;
                        }
                    }
                } else if let Some(c) = self.checkout(addr, settings, now) {
                    (c, true)
                } else {
                    match Box::pin(self.connection(addr, settings, false)).await {
                        Ok(c) => c,
                        Err(e) => {
                            note_connect_failure(&e);
                            last = Some(e);
                            continue 'targets;
                        }
                    }
                };
                opened += u32::from(!reused);
                // A pooled connection went out at once: the clock read
                // for its checkout still holds.
                let deadline = if reused { now } else { clock::now() } + settings.response;
                let result = std::future::poll_fn(|cx| {
                    out.poll_exchange(&mut conn, &mut body, to, deadline, cx)
                })
                .await;
                let failure = match result {
                    Ok(len) => {
                        let mut response = Response::new(());
                        let fields = if to_h2 {
                            // hyper's HTTP/2 server writes a map.
                            let head = conn.buf.split_to(len).freeze();
                            let (status, map) = wire::response_map(&head, &conn.head)
                                .map_err(|source| ProxyError::BadResponse { addr, source })?;
                            *response.status_mut() = status;
                            *response.headers_mut() = map;
                            None
                        } else {
                            let mut fields = Fields {
                                bytes: self.buffer(),
                                ..Fields::default()
                            };
                            match wire::response_fields(&conn.buf[..len], &conn.head, &mut fields) {
                                Ok(status) => *response.status_mut() = status,
                                Err(source) => {
                                    self.give_back(fields.bytes);
                                    return Err(ProxyError::BadResponse { addr, source });
                                }
                            }
                            conn.buf.advance(len);
                            Some(fields)
                        };
                        let keep = conn.head.keeps_alive() && !upgrade && !out.write_failed();
                        let home = keep.then(|| Home {
                            pool: self.clone(),
                            addr,
                            max_idle: settings.max_idle,
                            max_lifetime: settings.max_lifetime,
                        });
                        let framing = conn.head.framing;
                        // The rest of the request goes as the response is
                        // read (a server may answer before it has all).
                        let sending = if out.complete() {
                            self.give_back(out.into_bytes());
                            None
                        } else if out.write_failed() || upgrade {
                            None
                        } else {
                            Some(Box::new((out, body)))
                        };
                        let body = H1Body::new(conn, framing, home, sending, settings.response);
                        return Ok(Exchange {
                            response: response.map(|()| Received::H1(body)),
                            fields,
                            opened,
                            reused,
                            retried,
                            attempt: attempt as u8,
                        });
                    }
                    Err(f) => f,
                };
                drop(conn);
                let error = match failure {
                    Failure::Timeout => {
                        return Err(ProxyError::ResponseTimeout {
                            addr,
                            after: settings.response,
                        });
                    }
                    Failure::BadResponse(source) => {
                        return Err(ProxyError::BadResponse { addr, source });
                    }
                    Failure::ClientBody(source) => return Err(ProxyError::ClientBody { source }),
                    Failure::Unsent(source) => {
                        let error = ProxyError::UpstreamIo {
                            addr,
                            sent: false,
                            source,
                        };
                        tracing::debug!(%error, reused, "request not sent");
                        last = Some(error);
                        out.rewind();
                        if reused {
                            // A pooled connection the server had closed:
                            // same server, next (or a new) connection.
                            continue;
                        }
                        continue 'targets;
                    }
                    Failure::Broken { .. } => {
                        let unanswered = failure.unanswered();
                        let error = broken(addr, failure);
                        if !(repeatable && unanswered && out.rewind()) {
                            return Err(error);
                        }
                        error
                    }
                };
                // A bodiless idempotent request, its connection dead
                // without a byte of answer.
                if reused && !retried {
                    // Most likely the server closed the idle connection as
                    // the request went: once more on a new one.
                    tracing::debug!(%error, "pooled connection died unanswered; sending the idempotent request again on a new one");
                    retried = true;
                    fresh = true;
                    continue;
                }
                let next = attempt + 1 < targets.len();
                match settings.retry {
                    Retry::SameTarget if !retried => {
                        tracing::debug!(%error, "connection died unanswered; sending the idempotent request again");
                        retried = true;
                        fresh = true;
                        continue;
                    }
                    Retry::NextTarget(budget) if next => {
                        if !budget.withdraw() {
                            return Err(error);
                        }
                        tracing::debug!(%error, "connection died unanswered; sending the idempotent request to the next server");
                        retried = true;
                        last = Some(error);
                        continue 'targets;
                    }
                    _ => return Err(error),
                }
            }
        }
        Err(last.unwrap_or_else(|| ProxyError::NoServer {
            pool: String::new(),
        }))
    }
}

/// The error of a connection that ended or broke before a response head.
fn broken(addr: SocketAddr, failure: Failure) -> ProxyError {
    match failure {
        Failure::Broken {
            error: Some(source),
            ..
        } => ProxyError::UpstreamIo {
            addr,
            sent: true,
            source,
        },
        _ => ProxyError::UpstreamClosed { addr },
    }
}

fn note_connect_failure(e: &ProxyError) {
    if e.is_connect_failure() {
        tracing::warn!(error = %e, "upstream connect failed");
    }
}
