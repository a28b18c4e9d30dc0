//! The client side of HTTP/1.x, predictor's own (issue 16): one task per
//! client connection reads each request head, runs the request's phases
//! ([`super::handler`]), which drive the upstream exchange from this same
//! task, and writes the response back, request after request.
//!
//! Owns: the connection's buffer and the heads parsed from it (with the
//! strict codec of [`super::h1`]: what it refuses gets its 4xx here and
//! nothing goes upstream), the request body read from the connection as
//! the upstream side asks for it ([`ClientBody`], `100 Continue` sent when
//! it is first read), the response's head and framing for this client
//! (length, chunked, or the close for HTTP/1.0) written with the body in
//! vectored writes ([`outbound`]), keep-alive and pipelining, the client
//! timeouts (`client_idle` between requests, `request_header` for a head:
//! `408`), the drain (an idle connection closes at once, a request in
//! progress finishes with `Connection: close`, a connection that has not
//! sent its first request yet gets [`FIRST_REQUEST_GRACE`]), an upgrade's
//! splice ([`upgrade`]), and, on `auto` listeners, handing a connection
//! that opens with the HTTP/2 preface back to be served as HTTP/2
//! ([`super::h2`]).
//!
//! Why not hyper's server here: measured in `docs/performance.md` (its
//! dispatcher, buffered I/O, response head encoding from a `HeaderMap`
//! and the channel behind each request body were ~6,000 of a keep-alive
//! request's instructions). hyper still serves the admin
//! listener.

mod drain;
mod inbound;
mod outbound;
mod upgrade;

pub use drain::DrainSignal;
pub use inbound::{ClientBody, ClientStream, ReadBuffers};
pub(crate) use outbound::date_now;

use std::cell::RefCell;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use http_body::Body;
use tokio::time::Instant;

use super::body::RequestBody;
use super::clock;
use super::error::ProxyError;
use super::fields::Fields;
use super::h1::Status;
use super::h1::request::{RequestError, RequestHead};
use super::handler::{self, ConnCtx};
use super::timer::LazyTimer;
use inbound::{Inbound, Shared};
use outbound::{Answering, WriteError};

/// How long a connection that has not started a request yet may take to
/// start one once the drain has begun.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

const TIMEOUT_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
/// What a connection closed with a request body unread may still read and
/// drop, so that its client hears the answer rather than a reset.
const LINGER_BYTES: usize = 1 << 20;
const LINGER_TIME: Duration = Duration::from_secs(1);

/// A connection's settings, read from the snapshot when it was accepted.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub idle: Duration,
    pub header: Duration,
    pub max_head: usize,
    /// An `auto` listener: a connection that opens with the HTTP/2
    /// preface is given back to be served as HTTP/2.
    pub sniff_h2: bool,
    /// TLS: the connection is shut down (`close_notify`) before it is
    /// dropped.
    pub tls: bool,
}

/// Where the connection stands between reads.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// No request in progress: closed quietly at the deadline (fixed when
    /// a read first blocks).
    Idle(Option<Instant>),
    /// A head has started: `408` at the deadline.
    Head(Option<Instant>),
}

enum Event {
    Read(std::io::Result<usize>),
    Expired,
    Drained,
}

/// Serves HTTP/1.x on `io` until the connection closes. With
/// `settings.sniff_h2`, a connection that opens with the HTTP/2 preface is
/// returned, with the bytes read from it, to be served as HTTP/2.
pub async fn serve<S: ClientStream + 'static>(
    ctx: &ConnCtx,
    io: S,
    settings: Settings,
    drain: &Rc<DrainSignal>,
) -> Option<(S, BytesMut)> {
    // No buffer until the first bytes are there.
    let conn = Rc::new(RefCell::new(Inbound::new(io, BytesMut::new())));
    let buffers = &ctx.worker.read_buffers;
    let mut head = RequestHead::default();
    let mut out = Vec::new();
    let mut timer = LazyTimer::default();
    let mut registered = None;
    let mut drain_at: Option<Instant> = None;
    let mut served = 0u32;
    let mut wait = Wait::Idle(Some(clock::now() + settings.header));
    loop {
        // A head: from what is buffered (a pipelined request), else read.
        let len = loop {
            let found = buffered(&conn.borrow(), &mut head, settings, served == 0);
            match found {
                Buffered::Head(n) => break n,
                Buffered::Partial => {
                    if let Wait::Idle(_) = wait {
                        wait = Wait::Head(None);
                    }
                }
                Buffered::Nothing => {}
                Buffered::H2 => {
                    let inbound = Rc::try_unwrap(conn).ok()?.into_inner();
                    return Some(inbound.into_parts());
                }
                Buffered::Refused(e) => {
                    refuse_head(ctx, &conn, &mut out, e, settings).await;
                    return None;
                }
            }
            let event = std::future::poll_fn(|cx| {
                if registered.is_none() {
                    registered = Some(drain.register(cx.waker()));
                }
                if drain_at.is_none() && drain.is_on() {
                    drain_at = Some(clock::now());
                }
                let idle = matches!(wait, Wait::Idle(_));
                if drain_at.is_some() && idle && served > 0 {
                    return Poll::Ready(Event::Drained);
                }
                {
                    let mut c = conn.borrow_mut();
                    // Idle without a buffer: one is lent once bytes are
                    // there.
                    let ready = if c.buf.capacity() == 0 {
                        match c.io.poll_read_ready(cx) {
                            Poll::Ready(Ok(())) => {
                                c.buf = buffers.take();
                                true
                            }
                            Poll::Ready(Err(e)) => return Poll::Ready(Event::Read(Err(e))),
                            Poll::Pending => false,
                        }
                    } else {
                        true
                    };
                    if ready {
                        if let Poll::Ready(r) = c.poll_fill(cx) {
                            return Poll::Ready(Event::Read(r));
                        }
                    }
                }
                let (slot, after) = match &mut wait {
                    Wait::Idle(d) => (d, settings.idle),
                    Wait::Head(d) => (d, settings.header),
                };
                let mut deadline = *slot.get_or_insert_with(|| clock::now() + after);
                if let (Some(at), true) = (drain_at, idle) {
                    deadline = deadline.min(at + FIRST_REQUEST_GRACE);
                }
                timer.poll_deadline(deadline, cx).map(|()| Event::Expired)
            })
            .await;
            match event {
                Event::Read(Ok(0)) | Event::Drained => return None,
                Event::Read(Ok(_)) => {}
                Event::Read(Err(e)) => {
                    tracing::debug!(client = %ctx.peer, error = %e, "client connection failed");
                    return None;
                }
                Event::Expired => {
                    if let Wait::Head(_) = wait {
                        // Best effort: no response has started.
                        let _ = std::future::poll_fn(|cx| {
                            Poll::Ready(
                                std::pin::Pin::new(&mut conn.borrow_mut().io)
                                    .poll_write(cx, TIMEOUT_408),
                            )
                        })
                        .await;
                        tracing::debug!(client = %ctx.peer, "request head not received in time");
                    }
                    return None;
                }
            }
        };

        // The request, its body read from the connection as it is sent on.
        let bytes = conn.borrow_mut().buf.split_to(len).freeze();
        let framing = head.framing;
        let http10 = head.version == super::h1::Version::Http10;
        conn.borrow_mut()
            .start_body(framing, head.expect_continue && !http10);
        let body = match framing {
            super::h1::Framing::None => RequestBody::empty(),
            _ => {
                let shared: Shared = conn.clone();
                RequestBody::h1(ClientBody::new(shared, framing))
            }
        };
        let mut to = Answering {
            head: head.method == super::h1::request::Method::Head,
            http10,
            closing: !head.keeps_alive(),
        };
        let response = match inbound::request(&head, &bytes, body) {
            Ok(req) => {
                // The phases read the fields from the head (no header map
                // is built), and they go upstream as the client wrote them,
                // in runs of the head's bytes.
                let fields = Fields::head(&bytes, &head.fields);
                handler::answer(ctx, req, fields).await
            }
            Err(e) => handler::refuse(ctx, e),
        };
        drop(bytes);

        // The response, framed for this client.
        let unread = !conn.borrow().body_done();
        to.closing |= drain.is_on() || unread;
        let (parts, mut body) = response.into_parts();
        let upgraded = if parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
            body.take_upgraded()
        } else {
            None
        };
        let fields = body.take_fields();
        let (framing, close) =
            outbound::head(&parts, fields.as_ref(), body.size_hint(), to, &mut out);
        drop(parts);
        if let Some(f) = fields {
            ctx.worker.upstreams.give_back(f.bytes);
        }
        // The body ends the request (its log line, its count in flight)
        // when it is dropped, as it ends.
        match outbound::write(&conn, &mut out, body, framing).await {
            Ok(()) => {}
            Err(WriteError::Client(e)) => {
                tracing::debug!(client = %ctx.peer, error = %e, "client connection failed while answered");
                return None;
            }
            Err(WriteError::Body(e)) => {
                tracing::debug!(client = %ctx.peer, error = %e, "response cut short");
                return None;
            }
        }
        if let Some(up) = upgraded {
            upgrade::splice(ctx, conn, up).await;
            return None;
        }
        served = served.wrapping_add(1);
        out.clear();
        let unread = !conn.borrow().body_done();
        if close || unread {
            close_after(conn, unread, settings).await;
            return None;
        }
        wait = Wait::Idle(None);
        // Nothing pipelined behind: the buffer goes back to the worker
        // while the connection waits.
        let mut c = conn.borrow_mut();
        if c.buf.is_empty() {
            buffers.give_back(std::mem::take(&mut c.buf));
        }
    }
}

/// What the buffered bytes hold.
enum Buffered {
    Nothing,
    /// A head of this many bytes.
    Head(usize),
    /// Part of a head.
    Partial,
    /// The HTTP/2 preface, on an `auto` listener.
    H2,
    Refused(RequestError),
}

/// Parses what `conn` has buffered into `head`. On an `auto` listener's
/// `first` request, the HTTP/2 preface (or the start of it: more is read)
/// goes back to be served as HTTP/2.
fn buffered<S: ?Sized>(
    conn: &Inbound<S>,
    head: &mut RequestHead,
    settings: Settings,
    first: bool,
) -> Buffered {
    let buf = &conn.buf[..];
    if buf.is_empty() {
        return Buffered::Nothing;
    }
    if settings.sniff_h2 && first {
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] == H2_PREFACE[..n] {
            if n == H2_PREFACE.len() {
                return Buffered::H2;
            }
            return Buffered::Partial;
        }
    }
    match head.parse(buf, settings.max_head) {
        Ok(Status::Complete(n)) => Buffered::Head(n),
        Ok(Status::Partial) => Buffered::Partial,
        Err(e) => Buffered::Refused(e),
    }
}

/// Answers a head the codec refused (its status from
/// [`ProxyError::status`]) and closes.
async fn refuse_head<S: ClientStream>(
    ctx: &ConnCtx,
    conn: &Rc<RefCell<Inbound<S>>>,
    out: &mut Vec<u8>,
    e: RequestError,
    settings: Settings,
) {
    let response = handler::refuse(ctx, ProxyError::BadHead(e));
    let (parts, body) = response.into_parts();
    let to = Answering {
        head: false,
        http10: false,
        closing: true,
    };
    let (framing, _) = outbound::head(&parts, None, body.size_hint(), to, out);
    if outbound::write(conn, out, body, framing).await.is_ok() {
        close_after(conn.clone(), true, settings).await;
    }
}

/// Closes the connection after an answer. When the client may still be
/// sending (a request body not read, a pipelined request behind a close),
/// what it sends is read and dropped for a while, so that it hears the
/// answer rather than a reset.
async fn close_after<S: ClientStream>(
    conn: Rc<RefCell<Inbound<S>>>,
    unread: bool,
    settings: Settings,
) {
    let pending = unread || !conn.borrow().buf.is_empty();
    if !(pending || settings.tls) {
        return;
    }
    let shutdown =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut conn.borrow_mut().io).poll_shutdown(cx));
    if shutdown.await.is_err() || !pending {
        return;
    }
    let drain = async {
        let mut dropped = 0usize;
        while dropped < LINGER_BYTES {
            let read = std::future::poll_fn(|cx| {
                let mut c = conn.borrow_mut();
                c.buf.clear();
                c.poll_fill(cx)
            });
            match read.await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
