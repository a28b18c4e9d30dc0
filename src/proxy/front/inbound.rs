//! The client connection's read side: its buffer, the request built from
//! a parsed head, and the request body read from the connection as the
//! upstream side asks for it ([`ClientBody`]).
//!
//! The connection is shared by its task's two users, one at a time: the
//! driver (heads, responses) and the body of the request in progress
//! (which the upstream exchange polls while it writes the request and
//! reads the response). Both live on the connection's one task, so a
//! `RefCell` borrowed for the length of one poll is all the sharing takes.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Uri, Version};
use http_body::SizeHint;
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::body::{ClientBodyError, RequestBody};
use super::super::error::ProxyError;
use super::super::h1::chunked::{ChunkedDecoder, Limits};
use super::super::h1::request::{self, RequestHead};
use super::super::h1::{self, Framing};

/// A client connection's byte stream (plain TCP or TLS).
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin {
    /// Ready once a read would find bytes (or the end): an idle
    /// connection waits so, without a buffer. Streams that cannot tell
    /// (TLS: its own buffers may hold bytes) are always ready.
    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl ClientStream for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

impl ClientStream
    for tokio_rustls::server::TlsStream<crate::tls::hello::Rewind<tokio::net::TcpStream>>
{
}

#[cfg(test)]
impl ClientStream for tokio::io::DuplexStream {}

#[cfg(test)]
impl ClientStream for std::io::Cursor<Vec<u8>> {}

/// Read buffers a worker lends its connections while they read: an idle
/// keep-alive connection holds none (it waits for readiness first, as
/// nginx does), so 10,000 idle clients do not hold 80 MiB of buffers.
#[derive(Debug, Default)]
pub struct ReadBuffers(RefCell<Vec<BytesMut>>);

/// Buffers a worker keeps for its connections' next reads.
const SPARE_READ_BUFFERS: usize = 256;

impl ReadBuffers {
    pub(super) fn take(&self) -> BytesMut {
        self.0
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(READ_BUFFER))
    }

    /// Takes back an empty buffer whose bytes nothing else holds (a head
    /// still referenced, e.g. by a log record, keeps its allocation until
    /// it is dropped: that buffer is not kept).
    pub(super) fn give_back(&self, mut buf: BytesMut) {
        let mut spare = self.0.borrow_mut();
        if buf.is_empty()
            && spare.len() < SPARE_READ_BUFFERS
            && buf.try_reclaim(READ_BUFFER)
            && buf.capacity() <= 4 * READ_BUFFER
        {
            spare.push(buf);
        }
    }
}

/// The first read buffer of a connection (grown up to the head limit for
/// a large head; a head is a few hundred bytes).
pub(super) const READ_BUFFER: usize = 8 * 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A client connection: its socket and what was read from it and not yet
/// used.
pub struct Inbound<S: ?Sized> {
    pub(super) buf: BytesMut,
    body: Reading,
    /// `Expect: 100-continue` to answer before the body is read: the
    /// bytes of the interim response written so far.
    continue_at: Option<usize>,
    pub(super) io: S,
}

/// The connection as the request body sees it.
pub type Shared = Rc<RefCell<Inbound<dyn ClientStream>>>;

/// Where the body of the request in progress stands.
#[derive(Debug)]
enum Reading {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
    /// It broke: the connection cannot carry another request.
    Failed,
}

impl<S: ClientStream> Inbound<S> {
    pub(super) fn new(io: S, buf: BytesMut) -> Self {
        Inbound {
            buf,
            body: Reading::Done,
            continue_at: None,
            io,
        }
    }

    /// The socket and the bytes read from it and not used.
    pub(super) fn into_parts(self) -> (S, BytesMut) {
        (self.io, self.buf)
    }
}

impl<S: ?Sized + ClientStream> Inbound<S> {
    /// Reads more bytes into the buffer (`Ok(0)`: the client closed).
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_BUFFER);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// The head just parsed is followed by a body framed so; `expect`: the
    /// client waits for `100 Continue` before it sends it.
    pub(super) fn start_body(&mut self, framing: Framing, expect: bool) {
        self.body = match framing {
            Framing::None => Reading::Done,
            Framing::Length(n) => Reading::Length(n),
            Framing::Chunked => Reading::Chunked(ChunkedDecoder::new(Limits::default())),
        };
        self.continue_at = (expect && !matches!(self.body, Reading::Done)).then_some(0);
    }

    /// The request body has been read to its end.
    pub(super) fn body_done(&self) -> bool {
        matches!(self.body, Reading::Done)
    }

    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(at) = self.continue_at {
            if at == CONTINUE.len() {
                self.continue_at = None;
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.continue_at = Some(at + n);
        }
        Poll::Ready(Ok(()))
    }

    fn fail(&mut self, e: ClientBodyError) -> Poll<Option<Result<Bytes, ClientBodyError>>> {
        self.body = Reading::Failed;
        Poll::Ready(Some(Err(e)))
    }

    /// The next piece of the request body, read from the buffer first.
    pub(super) fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, ClientBodyError>>> {
        if self.continue_at.is_some() {
            if let Err(e) = std::task::ready!(self.poll_continue(cx)) {
                return self.fail(e.into());
            }
        }
        loop {
            if !self.buf.is_empty() {
                match &mut self.body {
                    Reading::Done | Reading::Failed => return Poll::Ready(None),
                    Reading::Length(left) => {
                        let (data, done) = h1::take_length(&mut self.buf, left);
                        if done {
                            self.body = Reading::Done;
                        }
                        return Poll::Ready(Some(Ok(data)));
                    }
                    Reading::Chunked(decoder) => {
                        let (data, done) = match decoder.take(&mut self.buf) {
                            Ok(s) => s,
                            Err(e) => return self.fail(e.into()),
                        };
                        if done {
                            self.body = Reading::Done;
                        }
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(data)));
                        }
                        continue;
                    }
                }
            }
            if matches!(self.body, Reading::Done | Reading::Failed) {
                return Poll::Ready(None);
            }
            match std::task::ready!(self.poll_fill(cx)) {
                Ok(0) => return self.fail(ClientBodyError::Truncated),
                Ok(_) => {}
                Err(e) => return self.fail(e.into()),
            }
        }
    }
}

/// The body of the request in progress on a client connection, read from
/// it as it is polled.
pub struct ClientBody {
    conn: Shared,
    /// The body's length, when framed by one.
    length: Option<u64>,
}

impl ClientBody {
    pub(super) fn new(conn: Shared, framing: Framing) -> Self {
        let length = match framing {
            Framing::None => Some(0),
            Framing::Length(n) => Some(n),
            Framing::Chunked => None,
        };
        ClientBody { conn, length }
    }

    pub(crate) fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, ClientBodyError>>> {
        self.conn.borrow_mut().poll_body(cx)
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.conn.try_borrow().is_ok_and(|c| c.body_done())
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// The request `head` describes (its target a slice of `bytes`, the
/// head's bytes, shared), with `body`. Its header map stays empty: the
/// phases read its fields from the head ([`super::super::fields`]).
pub(super) fn request(
    head: &RequestHead,
    bytes: &Bytes,
    body: RequestBody,
) -> Result<Request<RequestBody>, ProxyError> {
    let method = match head.method {
        request::Method::Get => Method::GET,
        request::Method::Head => Method::HEAD,
        request::Method::Post => Method::POST,
        request::Method::Put => Method::PUT,
        request::Method::Delete => Method::DELETE,
        request::Method::Options => Method::OPTIONS,
        request::Method::Patch => Method::PATCH,
        request::Method::Trace => Method::TRACE,
        request::Method::Connect => Method::CONNECT,
        request::Method::Other => Method::from_bytes(&bytes[head.method_token.clone()])
            .map_err(|_| ProxyError::MalformedHead("method"))?,
    };
    let uri = Uri::from_maybe_shared(bytes.slice(head.target.clone()))
        .map_err(|_| ProxyError::MalformedHead("request target"))?;
    let mut r = Request::new(body);
    *r.method_mut() = method;
    *r.uri_mut() = uri;
    *r.version_mut() = match head.version {
        h1::Version::Http10 => Version::HTTP_10,
        h1::Version::Http11 => Version::HTTP_11,
    };
    Ok(r)
}

#[cfg(test)]
mod tests;
