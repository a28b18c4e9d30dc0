//! [`ClientIo`]: the client connection's socket, as hyper reads it, with the
//! client-side timeouts and one framing fact hyper does not expose.
//!
//! * **Idle**: a connection with no request in progress is closed after
//!   `client_idle` (a new connection must start its first request within
//!   `request_header`).
//! * **Request head** (HTTP/1): from the first byte of a request to the end
//!   of its head at most `request_header` (slowloris); on expiry the client
//!   gets `408 Request Timeout` and the connection is closed.
//! * **Framing**: hyper accepts a request with both `Content-Length` and
//!   `Transfer-Encoding` (RFC 9112 allows it), drops the `Content-Length` and
//!   hides that it was there; it also accepts two equal `Content-Length`
//!   lines, two `Transfer-Encoding: chunked` lines and lines ending in a
//!   bare LF. predictor refuses all of these with 400, so while an HTTP/1
//!   request head streams in, its lines are read for them ([`HeadFacts`]);
//!   the check phase asks [`ConnShared::take_head_facts`].
//!   (Heads already read ahead with a pipelined predecessor are not
//!   scanned; hyper still frames those safely.)
//!
//! The handler reports request starts and ends through [`ConnShared`]
//! (atomics, uncontended: same thread); the wrapper turns them into phases
//! lazily, when a read would block; the deadline lives in a [`LazyTimer`],
//! so a busy keep-alive connection rarely touches the timer wheel.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::timer::LazyTimer;

/// What the handler and the socket wrapper of one connection share.
#[derive(Debug, Default)]
pub struct ConnShared {
    started: AtomicU32,
    finished: AtomicU32,
    upgraded: AtomicBool,
    head_facts: AtomicU8,
}

impl ConnShared {
    /// Marks a request as started; it ends when the guard is dropped (with
    /// the response body).
    pub fn begin(self: &Arc<Self>) -> ActiveRequest {
        self.started.fetch_add(1, Relaxed);
        ActiveRequest(self.clone())
    }

    /// What the scan of the head of the request being handled found;
    /// resets it.
    pub fn take_head_facts(&self) -> HeadFacts {
        HeadFacts(self.head_facts.swap(0, Relaxed))
    }

    /// Whether a request has started on this connection.
    pub fn has_begun(&self) -> bool {
        self.started.load(Relaxed) > 0
    }

    /// The connection now carries an upgraded protocol: no HTTP timeouts.
    pub fn set_upgraded(&self) {
        self.upgraded.store(true, Relaxed);
    }

    fn in_flight(&self) -> (u32, u32) {
        (self.started.load(Relaxed), self.finished.load(Relaxed))
    }
}

/// A request in progress on a connection; dropped when its response ends.
#[derive(Debug)]
pub struct ActiveRequest(Arc<ConnShared>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Relaxed);
    }
}

/// Which protocol the connection speaks, as far as known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not known yet (`auto` listeners, before the first bytes).
    Unknown,
    Http1,
    Http2,
}

/// Deadlines are set when a read first blocks in a phase (`None` until
/// then), so a request whose head arrives in one read reads no clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in progress; close at the deadline.
    Idle(Option<Instant>),
    /// An HTTP/1 head is arriving; 408 at the deadline.
    Head(Option<Instant>),
    /// A request is in progress: its own timeouts apply.
    Busy,
    /// Upgraded (WebSocket): a raw stream now.
    Off,
}

const H2_PREFACE_START: &[u8] = b"PRI ";
const TIMEOUT_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// The client socket wrapped with timeouts and head scanning.
pub struct ClientIo<T> {
    inner: T,
    shared: Arc<ConnShared>,
    mode: Mode,
    idle: Duration,
    header: Duration,
    phase: Phase,
    seen: (u32, u32),
    timer: LazyTimer,
    scan: HeadScan,
    sniff: [u8; 4],
    sniffed: usize,
}

impl<T> ClientIo<T> {
    pub fn new(
        inner: T,
        shared: Arc<ConnShared>,
        mode: Mode,
        idle: Duration,
        header: Duration,
    ) -> Self {
        let now = Instant::now();
        ClientIo {
            inner,
            shared,
            mode,
            idle,
            header,
            phase: Phase::Idle(Some(now + header)),
            seen: (0, 0),
            timer: LazyTimer::default(),
            scan: HeadScan::default(),
            sniff: [0; 4],
            sniffed: 0,
        }
    }

    /// Moves the phase on from what the handler reported.
    fn refresh(&mut self) {
        if self.phase == Phase::Off {
            return;
        }
        if self.shared.upgraded.load(Relaxed) {
            self.phase = Phase::Off;
            return;
        }
        let (started, finished) = self.shared.in_flight();
        if started != finished {
            self.phase = Phase::Busy;
            self.scan.stop();
        } else if (started, finished) != self.seen || self.phase == Phase::Busy {
            // A request ended since we last looked: idle from now on.
            self.phase = Phase::Idle(None);
            self.scan.stop();
        }
        self.seen = (started, finished);
    }

    /// Bytes arrived: maybe a new request head starts.
    fn on_bytes(&mut self, bytes: &[u8]) {
        if self.mode == Mode::Unknown {
            self.detect(bytes);
        }
        self.refresh();
        match (self.phase, self.mode) {
            (Phase::Idle(_), Mode::Http1 | Mode::Unknown) => {
                self.phase = Phase::Head(None);
                self.scan.begin();
                self.feed(bytes);
            }
            (Phase::Head(_), _) => self.feed(bytes),
            _ => {}
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.mode != Mode::Http2 {
            let facts = self.scan.feed(bytes);
            if facts != HeadFacts::default() {
                self.shared.head_facts.store(facts.0, Relaxed);
            }
        }
    }

    fn detect(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(4 - self.sniffed);
        self.sniff[self.sniffed..self.sniffed + take].copy_from_slice(&bytes[..take]);
        self.sniffed += take;
        if self.sniff[..self.sniffed] != H2_PREFACE_START[..self.sniffed] {
            self.mode = Mode::Http1;
        } else if self.sniffed == 4 {
            self.mode = Mode::Http2;
            // The preface is not a request: the connection is open and idle.
            if let Phase::Head(_) | Phase::Idle(_) = self.phase {
                self.phase = Phase::Idle(None);
            }
            self.scan.stop();
        }
    }

    /// The deadline of the current phase, fixed now if not yet.
    fn deadline(&mut self) -> Option<Instant> {
        let (slot, after) = match &mut self.phase {
            Phase::Idle(d) => (d, self.idle),
            Phase::Head(d) => (d, self.header),
            Phase::Busy | Phase::Off => return None,
        };
        Some(*slot.get_or_insert_with(|| Instant::now() + after))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.phase != Phase::Off {
                    // Split borrow: the bytes live in `buf`, not in `this`.
                    let bytes = &buf.filled()[before..];
                    this.on_bytes(bytes);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                this.refresh();
                let Some(deadline) = this.deadline() else {
                    return Poll::Pending;
                };
                if this.timer.poll_deadline(deadline, cx).is_pending() {
                    return Poll::Pending;
                }
                match this.phase {
                    Phase::Head(_) if this.mode != Mode::Http2 => {
                        // Best effort: the head is incomplete, so no response
                        // has started on this connection.
                        let _ = Pin::new(&mut this.inner).poll_write(cx, TIMEOUT_408);
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not received in time",
                        )))
                    }
                    // Idle expiry reads as the client closing: hyper closes
                    // quietly.
                    _ => Poll::Ready(Ok(())),
                }
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ClientIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What the scan of a request head found that hyper does not tell.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeadFacts(u8);

impl HeadFacts {
    const LENGTH: u8 = 1;
    const TWO_LENGTHS: u8 = 2;
    const TWO_ENCODINGS: u8 = 4;
    const BARE_LF: u8 = 8;
    const ENCODING: u8 = 16;

    /// A `Content-Length` line.
    pub fn length(self) -> bool {
        self.0 & Self::LENGTH != 0
    }

    /// Why the head is refused whatever hyper made of it: two
    /// `Content-Length` or two `Transfer-Encoding` lines (hyper accepts
    /// equal ones), or a line ending in a bare LF (hyper accepts it).
    pub fn refused(self) -> Option<&'static str> {
        if self.0 & Self::BARE_LF != 0 {
            Some("a line ending in a bare LF")
        } else if self.0 & Self::TWO_LENGTHS != 0 {
            Some("two Content-Length lines")
        } else if self.0 & Self::TWO_ENCODINGS != 0 {
            Some("two Transfer-Encoding lines")
        } else {
            None
        }
    }
}

/// Reads an HTTP/1 head fed in pieces, up to the blank line that ends it,
/// for what hyper hides: `Content-Length` and `Transfer-Encoding` lines
/// (counted), and lines ending in a bare LF.
#[derive(Debug, Default)]
struct HeadScan {
    active: bool,
    /// Bytes of the current line seen so far.
    line_len: usize,
    /// The current line's first bytes.
    prefix: [u8; 18],
    /// The last byte of the current line so far.
    last: u8,
    facts: u8,
}

const CONTENT_LENGTH: &[u8; 15] = b"content-length:";
const TRANSFER_ENCODING: &[u8; 18] = b"transfer-encoding:";

impl HeadScan {
    fn begin(&mut self) {
        self.active = true;
        self.line_len = 0;
        self.facts = 0;
    }

    fn stop(&mut self) {
        self.active = false;
    }

    /// Feeds bytes; returns what the head has shown so far.
    fn feed(&mut self, mut bytes: &[u8]) -> HeadFacts {
        while self.active && !bytes.is_empty() {
            match memchr::memchr(b'\n', bytes) {
                Some(i) => {
                    self.take(&bytes[..i]);
                    self.end_line();
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.take(bytes);
                    break;
                }
            }
        }
        HeadFacts(self.facts)
    }

    /// Adds part of the current line.
    fn take(&mut self, part: &[u8]) {
        let was = self.line_len;
        if was < self.prefix.len() {
            let n = (self.prefix.len() - was).min(part.len());
            self.prefix[was..was + n].copy_from_slice(&part[..n]);
        }
        if let Some(&b) = part.last() {
            self.last = b;
        }
        self.line_len = self.line_len.saturating_add(part.len());
    }

    /// The current line ended (its LF was read).
    fn end_line(&mut self) {
        let len = self.line_len;
        if len == 0 || self.last != b'\r' {
            self.facts |= HeadFacts::BARE_LF;
        }
        let blank = len <= 1;
        if blank {
            self.active = false;
        } else if len >= CONTENT_LENGTH.len()
            && self.prefix[..CONTENT_LENGTH.len()].eq_ignore_ascii_case(CONTENT_LENGTH)
        {
            if self.facts & HeadFacts::LENGTH != 0 {
                self.facts |= HeadFacts::TWO_LENGTHS;
            }
            self.facts |= HeadFacts::LENGTH;
        } else if len >= TRANSFER_ENCODING.len()
            && self.prefix.eq_ignore_ascii_case(TRANSFER_ENCODING)
        {
            if self.facts & HeadFacts::ENCODING != 0 {
                self.facts |= HeadFacts::TWO_ENCODINGS;
            }
            self.facts |= HeadFacts::ENCODING;
        }
        self.line_len = 0;
        self.last = 0;
    }
}

#[cfg(test)]
mod tests;
