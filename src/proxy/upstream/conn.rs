//! One HTTP/1.1 connection to a webserver or the legacy balancer, driven
//! by the task of the request that uses it: no connection task, no
//! channel. A pooled connection is its socket, its (reused) read buffer
//! and response head, and its one timer.
//!
//! [`Outgoing`] is a request on its way out: its head serialised once
//! ([`super::wire`]), its body streamed behind it (chunked when its length
//! is not known), the response read at the same time, so that a server
//! answering before the whole body (a `413`, a `401`) is heard.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::super::clock;
use bytes::{Buf, BytesMut};
use http_body::Body;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::super::body::RequestBody;
use super::super::h1::Status;
use super::super::h1::response::{Answering, ResponseError, ResponseHead};
use super::super::timer::LazyTimer;

/// Bytes asked of the kernel per read when the buffer runs short.
const READ_CHUNK: usize = 16 * 1024;
/// Body bytes gathered behind the head before they are written.
const GATHER: usize = 64 * 1024;
/// A response head larger than this is refused (hyper's client allowed
/// about 400 KiB in its buffer; webservers send a few hundred bytes).
pub(super) const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// An open HTTP/1.1 connection.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    /// Bytes read and not yet passed on.
    pub(super) buf: BytesMut,
    /// The last response head parsed (its field list is reused).
    pub(super) head: ResponseHead,
    /// The response deadline (one timer per connection, moved only when
    /// it must be).
    timer: LazyTimer,
    pub(super) born: Instant,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            buf: BytesMut::new(),
            head: ResponseHead::default(),
            timer: LazyTimer::default(),
            born: clock::now(),
        }
    }

    /// Whether an idle connection can carry a request: the server has
    /// neither closed it nor sent anything unasked. Costs a system call
    /// only when the reactor has seen the socket readable.
    pub(super) fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Whether `deadline` has passed (else a wake-up is arranged for it).
    pub(super) fn poll_expired(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        self.timer.poll_deadline(deadline, cx).is_ready()
    }

    /// Reads more bytes into the buffer; `Ok(0)` is the end of the
    /// connection.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }
}

/// Why an exchange on one connection failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// Not one byte of the request left (the server had closed the
    /// connection): it may go on another connection, whatever its method.
    Unsent(io::Error),
    /// The connection ended or broke before a response head; `answered`
    /// when some of one (or an interim response) had come.
    Broken {
        error: Option<io::Error>,
        answered: bool,
    },
    /// No response head by the deadline.
    Timeout,
    /// The response head is refused.
    BadResponse(ResponseError),
    /// The client's request body broke while it was being passed on.
    ClientBody(super::super::body::ClientBodyError),
}

impl Failure {
    /// Nothing came back: an idempotent request may go once more.
    pub(super) fn unanswered(&self) -> bool {
        matches!(
            self,
            Failure::Unsent(_)
                | Failure::Broken {
                    answered: false,
                    ..
                }
        )
    }
}

/// How the request body goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyOut {
    /// No body, or all of it is in `bytes`.
    Done,
    /// As it comes (`Content-Length` is in the head).
    Plain,
    /// In chunks (its length was not known).
    Chunked,
}

/// A request going out: its bytes and how far they are written.
pub(super) struct Outgoing {
    /// The head, then body bytes as they come.
    pub(super) bytes: Vec<u8>,
    written: usize,
    /// Some byte of the request reached a connection.
    any_written: bool,
    /// `bytes` still holds the whole request (nothing was let go), so it
    /// can be written again on another connection.
    whole: bool,
    body: BodyOut,
    /// A write failed after the request had started: the rest is not
    /// sent, the response may still come.
    write_failed: bool,
}

impl Outgoing {
    pub(super) fn new(bytes: Vec<u8>, body: BodyOut) -> Self {
        Outgoing {
            bytes,
            written: 0,
            any_written: false,
            whole: true,
            body,
            write_failed: false,
        }
    }

    /// Starts over on another connection: possible when nothing was
    /// written yet, or when the request is whole in `bytes` (bodiless).
    pub(super) fn rewind(&mut self) -> bool {
        if self.any_written && !(self.whole && self.body == BodyOut::Done) {
            return false;
        }
        self.written = 0;
        self.any_written = false;
        self.write_failed = false;
        true
    }

    /// The buffer, for the next request.
    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The request was written to its end (the connection's framing is
    /// intact).
    pub(super) fn complete(&self) -> bool {
        !self.write_failed && self.body == BodyOut::Done && self.written == self.bytes.len()
    }

    /// A write failed: the rest of the request will not be sent.
    pub(super) fn write_failed(&self) -> bool {
        self.write_failed
    }

    /// Writes what it can of the request, gathering body frames from
    /// `body` behind the head so that a small body leaves in the same
    /// write. Also called by the response body while the request body is
    /// still coming (a server may answer, and stream, before it has read
    /// the whole request: an echo).
    pub(super) fn poll_write(
        &mut self,
        conn: &mut Conn,
        body: &mut RequestBody,
        cx: &mut Context<'_>,
    ) -> Result<(), Failure> {
        loop {
            let mut progressed = false;
            if self.body != BodyOut::Done && self.bytes.len() - self.written < GATHER {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            self.push(&data);
                        }
                        progressed = true;
                    }
                    Poll::Ready(Some(Err(e))) => return Err(Failure::ClientBody(e)),
                    Poll::Ready(None) => {
                        if self.body == BodyOut::Chunked {
                            self.make_room();
                            self.bytes.extend_from_slice(b"0\r\n\r\n");
                        }
                        self.body = BodyOut::Done;
                        progressed = true;
                    }
                    Poll::Pending => {}
                }
            }
            if self.written < self.bytes.len() && !self.write_failed {
                let stream = Pin::new(&mut conn.stream);
                match stream.poll_write(cx, &self.bytes[self.written..]) {
                    Poll::Ready(Ok(0)) if !self.any_written => {
                        return Err(Failure::Unsent(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) if n > 0 => {
                        self.written += n;
                        self.any_written = true;
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) if !self.any_written => {
                        return Err(Failure::Unsent(e));
                    }
                    // The server stopped reading (it may be answering
                    // already, e.g. with a 413): read what it says.
                    Poll::Ready(_) => self.write_failed = true,
                    Poll::Pending => {}
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Appends body data, chunk-framed when the length is not known.
    fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.make_room();
        self.whole = false;
        if self.body == BodyOut::Chunked {
            // Writing to a Vec cannot fail.
            let _ = write!(self.bytes, "{:x}\r\n", data.len());
            self.bytes.extend_from_slice(data);
            self.bytes.extend_from_slice(b"\r\n");
        } else {
            self.bytes.extend_from_slice(data);
        }
    }

    /// Drops what was written, when all of it was.
    fn make_room(&mut self) {
        if self.written > 0 && self.written == self.bytes.len() {
            self.bytes.clear();
            self.written = 0;
            self.whole = false;
        }
    }

    /// Drives the exchange on `conn`: writes the request (and `body`),
    /// reads the response head that answers `to`; ready with the head's
    /// length (parsed into `conn.head`, at the start of `conn.buf`), or
    /// the failure. 1xx interim responses are read past.
    pub(super) fn poll_exchange(
        &mut self,
        conn: &mut Conn,
        body: &mut RequestBody,
        to: Answering,
        deadline: Instant,
        cx: &mut Context<'_>,
    ) -> Poll<Result<usize, Failure>> {
        self.poll_write(conn, body, cx)?;
        let mut interim = false;
        loop {
            if !conn.buf.is_empty() {
                match conn.head.parse(&conn.buf, MAX_RESPONSE_HEAD, to) {
                    Ok(Status::Complete(len)) if conn.head.is_interim() => {
                        conn.buf.advance(len);
                        interim = true;
                        continue;
                    }
                    Ok(Status::Complete(len)) => return Poll::Ready(Ok(len)),
                    Ok(Status::Partial) => {}
                    Err(e) => return Poll::Ready(Err(Failure::BadResponse(e))),
                }
            }
            match conn.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Failure::Broken {
                        error: None,
                        answered: interim || !conn.buf.is_empty(),
                    }));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(Failure::Broken {
                        error: Some(e),
                        answered: interim || !conn.buf.is_empty(),
                    }));
                }
                Poll::Pending => break,
            }
        }
        if conn.timer.poll_deadline(deadline, cx).is_ready() {
            return Poll::Ready(Err(Failure::Timeout));
        }
        Poll::Pending
    }
}
