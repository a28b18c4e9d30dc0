//! A response body as it comes from an upstream: read from the HTTP/1.1
//! connection by the task that sends it on ([`H1Body`]; framed by length,
//! chunks or the connection's end; the connection back to its pool the
//! moment the last byte is read; cut when the upstream sends nothing for
//! the response timeout while it is awaited, like HAProxy's `timeout
//! server`), or an HTTP/2 stream of hyper's.

use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::super::body::RequestBody;
use super::super::clock;
use super::super::h1::chunked::{ChunkError, ChunkedDecoder, Limits};
use super::super::h1::{ResponseFraming, take_length};
use super::Upstreams;
use super::conn::{Conn, Failure, Outgoing};

/// Why a response body broke: the client's response is cut short (its
/// connection closed), the upstream connection is not reused.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the upstream closed the connection before the end of the body")]
    Truncated,
    #[error("reading the upstream body failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed chunked body from the upstream: {0}")]
    Chunked(#[from] ChunkError),
    #[error("the upstream sent nothing of the body for {0:?}")]
    Stalled(Duration),
    #[error("the client's request body broke: {0}")]
    Request(super::super::body::ClientBodyError),
    #[error(transparent)]
    H2(#[from] hyper::Error),
}

/// A response body from an upstream.
pub enum Received {
    H1(H1Body),
    H2(Incoming),
}

impl Body for Received {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Received::H1(b) => b.poll_data(cx),
            Received::H2(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BodyError::H2))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Received::H1(b) => b.conn.is_none(),
            Received::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Received::H1(H1Body {
                reading: Reading::Length(n),
                ..
            }) => SizeHint::with_exact(*n),
            Received::H1(b) if b.conn.is_none() => SizeHint::with_exact(0),
            Received::H1(_) => SizeHint::default(),
            Received::H2(b) => b.size_hint(),
        }
    }
}

/// Where a connection goes once its response has been read to the end.
pub(super) struct Home {
    pub(super) pool: Rc<Upstreams>,
    pub(super) addr: SocketAddr,
    pub(super) max_idle: usize,
    pub(super) max_lifetime: Option<Duration>,
}

#[derive(Debug)]
enum Reading {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    /// A `101`: the connection is the upgraded stream.
    Upgrade,
    Done,
}

/// The body of an HTTP/1.1 response, read from its connection.
pub struct H1Body {
    /// `None` once the body has ended (the connection released).
    conn: Option<Box<Conn>>,
    reading: Reading,
    /// Where the connection goes after the body, when it may serve again.
    home: Option<Home>,
    /// The rest of the request, when the response came before all of it:
    /// written as the response is read.
    sending: Option<Box<(Outgoing, RequestBody)>>,
    /// How long the upstream may send nothing while the body is awaited.
    inactivity: Duration,
    /// Since the upstream was last waited for without bytes: when the wait
    /// fails (time the client itself does not read is not counted).
    stall_deadline: Option<Instant>,
}

impl H1Body {
    /// The body framed by `framing`, the rest of `conn`'s buffer first;
    /// `sending` is the rest of the request. A bodiless response releases
    /// the connection at once.
    pub(super) fn new(
        conn: Box<Conn>,
        framing: ResponseFraming,
        home: Option<Home>,
        sending: Option<Box<(Outgoing, RequestBody)>>,
        inactivity: Duration,
    ) -> Self {
        let reading = match framing {
            ResponseFraming::None => Reading::Done,
            ResponseFraming::Length(n) => Reading::Length(n),
            ResponseFraming::Chunked => Reading::Chunked(ChunkedDecoder::new(Limits::default())),
            ResponseFraming::UntilClose => Reading::UntilClose,
            ResponseFraming::Upgrade => Reading::Upgrade,
        };
        let mut body = H1Body {
            conn: Some(conn),
            reading,
            home,
            sending,
            inactivity,
            stall_deadline: None,
        };
        if matches!(body.reading, Reading::Done) {
            body.finish();
        }
        body
    }

    /// The upgraded stream of a `101`, and the bytes the server sent after
    /// its head (the first of the new protocol).
    pub fn into_upgraded(mut self) -> Option<(TcpStream, BytesMut)> {
        if !matches!(self.reading, Reading::Upgrade) {
            return None;
        }
        let conn = self.conn.take()?;
        let Conn { stream, buf, .. } = *conn;
        Some((stream, buf))
    }

    /// The body ended: the connection goes back to its pool when it may
    /// (the server keeps it open, sent nothing beyond the body, and the
    /// whole request was written).
    fn finish(&mut self) {
        self.reading = Reading::Done;
        let Some(conn) = self.conn.take() else {
            return;
        };
        if let Some(home) = self.home.take() {
            if conn.buf.is_empty() && self.sending.take().is_none() {
                let pool = home.pool.clone();
                pool.checkin(home, conn);
            }
        }
    }

    /// Fails the body: the connection is closed.
    fn broken(&mut self, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.conn = None;
        self.reading = Reading::Done;
        Poll::Ready(Some(Err(e)))
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let (Some(sending), Some(conn)) = (&mut self.sending, &mut self.conn) {
            let (out, body) = &mut **sending;
            match out.poll_write(conn, body, cx) {
                Err(Failure::ClientBody(e)) => return self.broken(BodyError::Request(e)),
                Err(_) => self.sending = None,
                Ok(()) if out.complete() => self.sending = None,
                Ok(()) if out.write_failed() => {
                    // The server stopped reading; what it says still comes.
                    self.home = None;
                    self.sending = None;
                }
                Ok(()) => {}
            }
        }
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if !conn.buf.is_empty() {
                match &mut self.reading {
                    Reading::Length(left) => {
                        let (data, done) = take_length(&mut conn.buf, left);
                        if done {
                            self.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Reading::Chunked(decoder) => {
                        let (data, done) = match decoder.take(&mut conn.buf) {
                            Ok(s) => s,
                            Err(e) => return self.broken(e.into()),
                        };
                        if done {
                            self.finish();
                        }
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        continue;
                    }
                    Reading::UntilClose => {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Reading::Upgrade | Reading::Done => return Poll::Ready(None),
                }
            }
            if matches!(self.reading, Reading::Upgrade | Reading::Done) {
                return Poll::Ready(None);
            }
            let filled = match conn.poll_fill(cx) {
                Poll::Pending => {
                    let deadline = *self
                        .stall_deadline
                        .get_or_insert_with(|| clock::now() + self.inactivity);
                    if conn.poll_expired(deadline, cx) {
                        return self.broken(BodyError::Stalled(self.inactivity));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(r) => r,
            };
            self.stall_deadline = None;
            match filled {
                Ok(0) if matches!(self.reading, Reading::UntilClose) => {
                    self.conn = None;
                    self.reading = Reading::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return self.broken(BodyError::Truncated),
                Ok(_) => {}
                Err(e) => return self.broken(e.into()),
            }
        }
    }
}
