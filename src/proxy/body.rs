//! [`ResponseBody`]: what goes back to the client, streamed.
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

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::client_io::ActiveRequest;
use super::upstream::{BodyError, Received};
use crate::access_log::{Record, Sender};
use crate::health::InFlight;

/// What goes upstream: the client's body, streamed, or nothing (a bodiless
/// request sent again after its connection died unanswered).
pub enum RequestBody {
    Client(Incoming),
    /// The client's body, its bytes counted for the access log.
    Counted(Incoming, Arc<AtomicU64>),
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
            RequestBody::Counted(b, n) => {
                let frame = ready!(Pin::new(b).poll_frame(cx));
                if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
                    n.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(frame)
            }
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client(b) | RequestBody::Counted(b, _) => b.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client(b) | RequestBody::Counted(b, _) => b.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

pub struct ResponseBody {
    kind: Kind,
    _active: Option<ActiveRequest>,
    /// The request's count on its server, until the body ends.
    _in_flight: Option<InFlight>,
    /// The access log record, sent when the body is dropped.
    log: Option<Box<(Record, Rc<Sender>)>>,
    /// The last frame has been passed on.
    ended: bool,
}

enum Kind {
    Local(Option<Bytes>),
    Upstream(Received),
}

impl ResponseBody {
    /// A body predictor generated.
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ResponseBody {
            kind: Kind::Local((!bytes.is_empty()).then_some(bytes)),
            _active: None,
            _in_flight: None,
            log: None,
            ended: false,
        }
    }

    pub fn empty() -> Self {
        ResponseBody {
            kind: Kind::Local(None),
            _active: None,
            _in_flight: None,
            log: None,
            ended: false,
        }
    }

    /// An upstream body.
    pub fn upstream(body: Received) -> Self {
        ResponseBody {
            kind: Kind::Upstream(body),
            _active: None,
            _in_flight: None,
            log: None,
            ended: false,
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

    /// Sends `record` to the access log when the body is dropped.
    pub fn with_log(mut self, log: Option<Box<(Record, Rc<Sender>)>>) -> Self {
        self.log = log;
        self
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            let (record, sender) = *log;
            let completed =
                self.ended || self.is_end_stream() || record.request.method == http::Method::HEAD;
            sender.send(record.line(completed));
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
        };
        match &frame {
            None => this.ended = true,
            Some(Ok(f)) => {
                if let (Some(log), Some(data)) = (&mut this.log, f.data_ref()) {
                    log.0.bytes_out += data.len() as u64;
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
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Local(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Local(None) => SizeHint::with_exact(0),
            Kind::Upstream(body) => body.size_hint(),
        }
    }
}
