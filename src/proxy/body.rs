//! [`RequestBody`]: what goes upstream, streamed; [`ResponseBody`]: what
//! goes back to the client, streamed.
//!
//! Either an upstream response body passed through frame by frame (an
//! HTTP/1.1 connection returns to its pool when the last byte has been
//! read: [`super::upstream::H1Body`]), or a
//! small page predictor answers itself. The body also carries the
//! connection's [`ActiveRequest`]: when hyper drops the body, the response is
//! over and the client connection counts as idle again; and the request's
//! access log record, sent when the body is dropped, with the bytes passed.

use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;

use super::client_io::ActiveRequest;
use super::front::ClientBody;
use super::h1::chunked::ChunkError;
use super::h2::H2Body;
use super::upstream::{BodyError, Fields, Received};
use crate::access_log::{Lines, Record};
use crate::health::InFlight;

/// Why the client's request body broke while it was sent on: the
/// client's fault, whatever the upstream did (a `400` when no response
/// has started, else the connection is closed).
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("the client closed the connection before the end of the body")]
    Truncated,
    #[error("reading the request body failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed chunked request body: {0}")]
    Chunked(#[from] ChunkError),
    #[error(transparent)]
    H2(#[from] hyper::Error),
    #[error("reading the request body from its HTTP/2 stream failed: {0}")]
    Stream(h2::Error),
}

/// What goes upstream: the client's body, streamed (from predictor's own
/// HTTP/1.1 connection or an HTTP/2 stream), or nothing (a bodiless
/// request sent again after its connection died unanswered); its bytes
/// counted for the access log when it is on.
pub struct RequestBody {
    from: Source,
    count: Option<Arc<AtomicU64>>,
}

enum Source {
    H1(ClientBody),
    H2(H2Body),
    Empty,
}

impl RequestBody {
    pub fn empty() -> Self {
        RequestBody {
            from: Source::Empty,
            count: None,
        }
    }

    /// The body of a request on predictor's own HTTP/1.1 connection.
    pub fn h1(body: ClientBody) -> Self {
        RequestBody {
            from: Source::H1(body),
            count: None,
        }
    }

    /// The body of a request on an HTTP/2 stream.
    pub fn h2(body: H2Body) -> Self {
        RequestBody {
            from: Source::H2(body),
            count: None,
        }
    }

    /// Counts the body's bytes into `n` as they pass.
    pub fn counted(mut self, n: Arc<AtomicU64>) -> Self {
        self.count = Some(n);
        self
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.get_mut();
        let frame = match &mut this.from {
            Source::H1(b) => ready!(b.poll_data(cx)).map(|r| r.map(Frame::data)),
            Source::H2(b) => ready!(b.poll_frame(cx)),
            Source::Empty => None,
        };
        if let (Some(n), Some(data)) = (
            &this.count,
            frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()),
        ) {
            n.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.from {
            Source::H1(b) => b.is_end_stream(),
            Source::H2(b) => b.is_end_stream(),
            Source::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.from {
            Source::H1(b) => b.size_hint(),
            Source::H2(b) => b.size_hint(),
            Source::Empty => SizeHint::with_exact(0),
        }
    }
}

/// What a request holds until its response body ends: its slot on a
/// server, its count for its tenant.
#[derive(Debug, Default)]
pub struct Held {
    pub server: Option<InFlight>,
    pub tenant: Option<crate::isolation::TenantHold>,
}

pub struct ResponseBody {
    kind: Kind,
    _active: Option<ActiveRequest>,
    /// The request's counts on its server and its tenant, until the body
    /// ends.
    _held: Held,
    /// The access log record, sent when the body is dropped.
    log: Option<(Box<Record>, Rc<Lines>)>,
    /// The last frame has been passed on.
    ended: bool,
    /// The response's fields, written by the HTTP/1.1 upstream side (not
    /// in the response's header map).
    fields: Option<Fields>,
    /// A shadow copy waiting for this (live) body to end.
    shadow: Option<Box<crate::proxy::shadow::Tap>>,
}

enum Kind {
    Local(Option<Bytes>),
    Upstream(Received),
    /// A `101`: the upstream connection, taken over by the client
    /// connection once the head is written, and the bytes the upstream
    /// sent behind its head.
    Upgraded(Option<(TcpStream, BytesMut)>),
}

impl ResponseBody {
    /// A body predictor generated.
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ResponseBody {
            kind: Kind::Local((!bytes.is_empty()).then_some(bytes)),
            _active: None,
            _held: Held::default(),
            log: None,
            ended: false,
            fields: None,
            shadow: None,
        }
    }

    pub fn empty() -> Self {
        ResponseBody {
            kind: Kind::Local(None),
            _active: None,
            _held: Held::default(),
            log: None,
            ended: false,
            fields: None,
            shadow: None,
        }
    }

    /// The answer to an upgrade: no body, the upstream connection to
    /// splice once the head is written ([`ResponseBody::take_upgraded`]).
    pub fn upgraded(upstream: (TcpStream, BytesMut)) -> Self {
        ResponseBody {
            kind: Kind::Upgraded(Some(upstream)),
            _active: None,
            _held: Held::default(),
            log: None,
            ended: false,
            fields: None,
            shadow: None,
        }
    }

    /// The upstream connection of an accepted upgrade.
    pub fn take_upgraded(&mut self) -> Option<(TcpStream, BytesMut)> {
        match &mut self.kind {
            Kind::Upgraded(u) => u.take(),
            _ => None,
        }
    }

    /// An upstream body.
    pub fn upstream(body: Received) -> Self {
        ResponseBody {
            kind: Kind::Upstream(body),
            _active: None,
            _held: Held::default(),
            log: None,
            ended: false,
            fields: None,
            shadow: None,
        }
    }

    /// Observes this body for a shadow copy, sent once it ends.
    pub fn set_shadow(&mut self, tap: Box<crate::proxy::shadow::Tap>) {
        self.shadow = Some(tap);
    }

    /// The response's fields as the upstream side wrote them.
    pub fn set_fields(&mut self, fields: Fields) {
        self.fields = Some(fields);
    }

    /// Takes the response's fields written by the upstream side, if any.
    pub fn take_fields(&mut self) -> Option<Fields> {
        self.fields.take()
    }

    /// Keeps the request counted in flight on its server and for its
    /// tenant until the body ends.
    pub fn set_held(&mut self, held: Held) {
        self._held = held;
    }

    /// Ties the request's lifetime to this body, and sends `log` to the
    /// access log when the body is dropped. (Setters, not builders: the
    /// body is a few hundred bytes, and each by-value step was a copy.)
    pub fn set_request(&mut self, active: ActiveRequest, log: Option<(Box<Record>, Rc<Lines>)>) {
        self._active = Some(active);
        self.log = log;
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(tap) = self.shadow.take() {
            tap.finish(self.ended || self.is_end_stream());
        }
        if let Some(log) = self.log.take() {
            let (record, lines) = &log;
            let completed =
                self.ended || self.is_end_stream() || record.request.method == http::Method::HEAD;
            lines.push(record, completed);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let frame = match &mut this.kind {
            Kind::Local(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
            Kind::Upstream(body) => ready!(Pin::new(body).poll_frame(cx)),
            Kind::Upgraded(_) => None,
        };
        match &frame {
            None => this.ended = true,
            Some(Ok(f)) => {
                if let (Some(log), Some(data)) = (&mut this.log, f.data_ref()) {
                    log.0.bytes_out += data.len() as u64;
                }
                if let (Some(tap), Some(data)) = (&mut this.shadow, f.data_ref()) {
                    tap.observe(data);
                }
            }
            Some(Err(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Local(bytes) => bytes.is_none(),
            Kind::Upstream(body) => body.is_end_stream(),
            Kind::Upgraded(_) => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Local(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Local(None) | Kind::Upgraded(_) => SizeHint::with_exact(0),
            Kind::Upstream(body) => body.size_hint(),
        }
    }
}
