//! [`ResponseBody`]: what goes back to the client, streamed.
//!
//! Either an upstream response body passed through frame by frame (its
//! connection returns to the pool when the last frame has been read), or a
//! small page predictor answers itself. The body also carries the
//! connection's [`ActiveRequest`]: when hyper drops the body, the response is
//! over and the client connection counts as idle again.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::client_io::ActiveRequest;
use super::upstream::Pooled;
use crate::health::InFlight;

/// What goes upstream: the client's body, streamed, or nothing (a bodiless
/// request sent again after its connection died unanswered).
pub enum RequestBody {
    Client(Incoming),
    Empty,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Client(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client(b) => b.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client(b) => b.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

pub struct ResponseBody {
    kind: Kind,
    _active: Option<ActiveRequest>,
    /// The request's count on its server, until the body ends.
    _in_flight: Option<InFlight>,
}

enum Kind {
    Local(Option<Bytes>),
    Upstream {
        body: Incoming,
        conn: Option<Pooled>,
    },
}

impl ResponseBody {
    /// A body predictor generated.
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ResponseBody {
            kind: Kind::Local((!bytes.is_empty()).then_some(bytes)),
            _active: None,
            _in_flight: None,
        }
    }

    pub fn empty() -> Self {
        ResponseBody {
            kind: Kind::Local(None),
            _active: None,
            _in_flight: None,
        }
    }

    /// An upstream body; `conn` is released when the body has ended. An
    /// upgraded exchange passes no connection.
    pub fn upstream(body: Incoming, conn: Option<Pooled>) -> Self {
        let conn = match conn {
            // Nothing left to read (204, 304, HEAD, Content-Length: 0).
            Some(c) if body.is_end_stream() => {
                c.release();
                None
            }
            other => other,
        };
        ResponseBody {
            kind: Kind::Upstream { body, conn },
            _active: None,
            _in_flight: None,
        }
    }

    /// Keeps the request counted in flight on its server until the body
    /// ends.
    pub fn with_in_flight(mut self, in_flight: Option<InFlight>) -> Self {
        self._in_flight = in_flight;
        self
    }

    /// Ties the request's lifetime to this body.
    pub fn with_active(mut self, active: ActiveRequest) -> Self {
        self._active = Some(active);
        self
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { body, conn } => {
                let frame = ready!(Pin::new(&mut *body).poll_frame(cx));
                match &frame {
                    Some(Ok(_)) if !body.is_end_stream() => {}
                    // The end, read cleanly: the connection may serve again.
                    Some(Ok(_)) | None => {
                        if let Some(c) = conn.take() {
                            c.release();
                        }
                    }
                    // A broken upstream body: the connection is not reused.
                    Some(Err(_)) => drop(conn.take()),
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Local(bytes) => bytes.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Local(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Local(None) => SizeHint::with_exact(0),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}
