//! The client connection's write side: a response's head encoded in one
//! pass (status line, its fields, the framing this connection needs) and
//! its body streamed behind it, each piece written with its framing in
//! one vectored write (the head goes with the first piece of the body when
//! that is already there, as it is for a small response).

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header;
use http::{StatusCode, response};
use http_body::Body;

use super::super::upstream::Fields;
use super::inbound::{ClientStream, Inbound};

/// How a response's body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyOut {
    /// No body (an answer to `HEAD`, 1xx, 204, 304, a 101's raw stream).
    None,
    /// As it comes: its length is in the head.
    Plain,
    Chunked,
    /// Delimited by the connection's close (an HTTP/1.0 client, length
    /// unknown).
    UntilClose,
}

/// What the response's encoding depends on besides the response.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answering {
    /// The request was `HEAD`.
    pub head: bool,
    /// The client speaks HTTP/1.0.
    pub http10: bool,
    /// The connection closes after this response.
    pub closing: bool,
}

/// What a response head needs beyond the fields: the status line, `Date`,
/// the framing and `Connection`.
const HEAD_ROOM: usize = 192;

/// Writes the head of `parts` (its fields in its map, then those the
/// upstream side wrote, `fields`; a body described by `hint`) to `out`;
/// returns how the body follows and whether the connection closes after
/// it.
pub(super) fn head(
    parts: &response::Parts,
    fields: Option<&Fields>,
    hint: http_body::SizeHint,
    to: Answering,
    out: &mut Vec<u8>,
) -> (BodyOut, bool) {
    let status = parts.status;
    // Room for the whole head at once: the status line, the fields and
    // what this side adds (`Date`, the framing, `Connection`). Grown
    // field by field, a connection's first head reallocated four times
    // (~1,700 instructions per `Connection: close` request, `CG_CLOSE=1`).
    let theirs = fields.map_or(0, |f| f.bytes.len());
    out.reserve(HEAD_ROOM + theirs + parts.headers.len() * 64);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut length = false;
    let mut close = to.closing;
    let mut date = false;
    for (name, value) in &parts.headers {
        if name == header::CONNECTION {
            close |= value.as_bytes().eq_ignore_ascii_case(b"close");
            if status != StatusCode::SWITCHING_PROTOCOLS {
                // Written below, as this connection goes on.
                continue;
            }
        }
        length |= name == header::CONTENT_LENGTH;
        date |= name == header::DATE;
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(f) = fields {
        // The upstream's: `Date` is there when the webserver sent one.
        out.extend_from_slice(&f.bytes);
        length |= f.length;
        date |= f.date;
    }
    if !date {
        field(out, b"date", &date_now());
    }
    let bodiless = to.head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let body = if bodiless {
        BodyOut::None
    } else if length {
        BodyOut::Plain
    } else if let Some(n) = hint.exact() {
        let mut digits = itoa::Buffer::new();
        field(out, b"content-length", digits.format(n).as_bytes());
        BodyOut::Plain
    } else if to.http10 {
        close = true;
        BodyOut::UntilClose
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        BodyOut::Chunked
    };
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // `Connection: upgrade` came with the response.
    } else if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if to.http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (body, close)
}

#[inline]
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `Date` for a response that came without one (a page predictor answers
/// itself), formatted once a second per thread.
pub(crate) fn date_now() -> [u8; 29] {
    thread_local! {
        static CACHED: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((0, [0; 29])) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let (at, text) = c.get();
        if at == secs {
            return text;
        }
        let mut text = [0u8; 29];
        let formatted = httpdate::fmt_http_date(now);
        let n = formatted.len().min(29);
        text[..n].copy_from_slice(&formatted.as_bytes()[..n]);
        c.set((secs, text));
        text
    })
}

/// Why writing a response stopped before its end.
#[derive(Debug)]
pub(super) enum WriteError {
    /// The client's socket failed (or the client went away).
    Client(io::Error),
    /// The response body broke (the upstream's fault, or the client's own
    /// request body): the client's response is cut short.
    Body(super::super::upstream::BodyError),
}

/// A response body as the writer takes it
/// ([`ResponseBody`](super::super::body::ResponseBody); a test's
/// own in the tests).
pub(super) trait ResponseData:
    Body<Data = Bytes, Error = super::super::upstream::BodyError> + Unpin
{
}

impl<B: Body<Data = Bytes, Error = super::super::upstream::BodyError> + Unpin> ResponseData for B {}

/// Writes `out` (the head) and then `body`, framed as `framing`, to the
/// client; returns once the last byte is written. The body is dropped as
/// soon as it has ended, before its last bytes are written: the request's
/// count in flight on its server (which placement reads) and its
/// connection's activity end then, not after the client may already have
/// sent its next request.
pub(super) async fn write<S: ?Sized + ClientStream, B: ResponseData>(
    conn: &RefCell<Inbound<S>>,
    out: &mut Vec<u8>,
    body: B,
    framing: BodyOut,
) -> Result<(), WriteError> {
    let mut body = (framing != BodyOut::None).then_some(body);
    let mut w = Writer {
        at: 0,
        size_line: [0; 18],
        size: 0..0,
        data: Bytes::new(),
        tail: b"",
        ended: framing == BodyOut::None,
        framing,
    };
    std::future::poll_fn(|cx| w.poll(conn, out, &mut body, cx)).await
}

/// A response on its way out: the head (or a chunk's size line) in `out`
/// from `at`, then a piece of the body, then its framing's tail.
struct Writer {
    at: usize,
    size_line: [u8; 18],
    size: std::ops::Range<usize>,
    data: Bytes,
    tail: &'static [u8],
    ended: bool,
    framing: BodyOut,
}

const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// A response's unwritten bytes up to this size go in one plain write
/// ([`Writer::coalesce`]).
const COALESCE_UP_TO: usize = 4096;
const CHUNK_END_AND_LAST: &[u8] = b"\r\n0\r\n\r\n";

impl Writer {
    fn poll<S: ?Sized + ClientStream, B: ResponseData>(
        &mut self,
        conn: &RefCell<Inbound<S>>,
        out: &mut Vec<u8>,
        body: &mut Option<B>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), WriteError>> {
        loop {
            // The next piece of the body, when none is waiting: written
            // with what is still unwritten before it.
            if let (true, true, Some(b)) = (self.data.is_empty(), self.tail.is_empty(), &mut *body)
            {
                match Pin::new(&mut *b).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        let Ok(data) = frame.into_data() else {
                            // Trailers are not passed on.
                            continue;
                        };
                        let last = b.is_end_stream();
                        self.take(data, last);
                        if last {
                            *body = None;
                        }
                    }
                    Poll::Ready(None) => {
                        self.ended = true;
                        *body = None;
                        if self.framing == BodyOut::Chunked {
                            self.tail = LAST_CHUNK;
                        }
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(WriteError::Body(e))),
                    Poll::Pending if self.unwritten(out) == 0 => return Poll::Pending,
                    Poll::Pending => {}
                }
            }
            if self.unwritten(out) == 0 {
                if self.ended {
                    out.clear();
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let n = {
                self.coalesce(out);
                let slices = [
                    IoSlice::new(&out[self.at..]),
                    IoSlice::new(&self.size_line[self.size.clone()]),
                    IoSlice::new(&self.data),
                    IoSlice::new(self.tail),
                ];
                let mut c = conn.borrow_mut();
                let io = Pin::new(&mut c.io);
                let written =
                    if self.size.is_empty() && self.data.is_empty() && self.tail.is_empty() {
                        // One piece (the head, or a small response gathered
                        // into it): a plain write, which on a socket is
                        // `send`, not `writev` (below).
                        io.poll_write(cx, &out[self.at..])
                    } else {
                        io.poll_write_vectored(cx, &slices)
                    };
                match written {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(WriteError::Client(
                            io::ErrorKind::WriteZero.into(),
                        )));
                    }
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(WriteError::Client(e))),
                    Poll::Pending => return Poll::Pending,
                }
            };
            self.advance(out, n);
        }
    }

    /// A piece of the body to write next (`last`: nothing follows it).
    fn take(&mut self, data: Bytes, last: bool) {
        match self.framing {
            BodyOut::None => {}
            BodyOut::Plain | BodyOut::UntilClose => self.data = data,
            BodyOut::Chunked if data.is_empty() => {}
            BodyOut::Chunked => {
                let mut n = data.len();
                let mut i = self.size_line.len() - 2;
                self.size_line[i..].copy_from_slice(b"\r\n");
                loop {
                    i -= 1;
                    self.size_line[i] = b"0123456789abcdef"[n & 15];
                    n >>= 4;
                    if n == 0 {
                        break;
                    }
                }
                self.size = i..self.size_line.len();
                self.data = data;
                self.tail = if last { CHUNK_END_AND_LAST } else { b"\r\n" };
            }
        }
        if last {
            self.ended = true;
        }
    }

    /// Gathers what is left of a small response into `out`, so that it
    /// goes in one plain write. On a socket a plain write is `send`, a
    /// vectored one `writev`, which the kernel takes through the file
    /// layer: 2.9 against 2.4 µs for a 165-byte response in four pieces
    /// (one loopback socket, a million writes, this VM), more than copying
    /// a few KiB costs. Larger pieces go as they are.
    fn coalesce(&mut self, out: &mut Vec<u8>) {
        let rest = self.size.len() + self.data.len() + self.tail.len();
        if rest == 0 || out.len() - self.at + rest > COALESCE_UP_TO {
            return;
        }
        if self.at == out.len() {
            // A streamed body's next piece: the head is long gone.
            out.clear();
            self.at = 0;
        }
        out.extend_from_slice(&self.size_line[self.size.clone()]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(self.tail);
        self.size = 0..0;
        self.data = Bytes::new();
        self.tail = b"";
    }

    fn unwritten(&self, out: &[u8]) -> usize {
        out.len() - self.at + self.size.len() + self.data.len() + self.tail.len()
    }

    /// `n` bytes were written, from the head on.
    fn advance(&mut self, out: &[u8], mut n: usize) {
        let head = (out.len() - self.at).min(n);
        self.at += head;
        n -= head;
        let size = self.size.len().min(n);
        self.size.start += size;
        n -= size;
        let data = self.data.len().min(n);
        bytes::Buf::advance(&mut self.data, data);
        n -= data;
        self.tail = &self.tail[n.min(self.tail.len())..];
    }
}

#[cfg(test)]
mod tests;
