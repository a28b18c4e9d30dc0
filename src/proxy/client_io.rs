//! [`ClientIo`]: an HTTP/2 client connection's socket, as the `h2` crate
//! reads it ([`super::h2`]),
//! with the client-side idle timeout. (HTTP/1 connections are predictor's
//! own and keep their timeouts in their loop: [`super::front`].)
//!
//! A connection with no request in progress is closed after `client_idle`
//! (a new connection must open its first stream within `request_header`);
//! while a stream runs, its own timeouts apply.
//!
//! The handler reports request starts and ends through [`ConnShared`]
//! (atomics, uncontended: same thread); the wrapper turns them into phases
//! lazily, when a read would block; the deadline lives in a [`LazyTimer`],
//! so a busy connection rarely touches the timer wheel.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::clock;
use super::timer::LazyTimer;

/// What the handler and the socket wrapper of one connection share.
#[derive(Debug, Default)]
pub struct ConnShared {
    started: AtomicU32,
    finished: AtomicU32,
}

impl ConnShared {
    /// Marks a request as started; it ends when the guard is dropped (with
    /// the response body).
    pub fn begin(self: &Arc<Self>) -> ActiveRequest {
        self.started.fetch_add(1, Relaxed);
        ActiveRequest(self.clone())
    }

    /// Whether a request has started on this connection.
    pub fn has_begun(&self) -> bool {
        self.started.load(Relaxed) > 0
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

/// The deadline is set when a read first blocks while idle (`None` until
/// then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in progress; close at the deadline.
    Idle(Option<Instant>),
    /// A request is in progress: its own timeouts apply.
    Busy,
}

/// The client socket wrapped with the idle timeout.
pub struct ClientIo<T> {
    inner: T,
    shared: Arc<ConnShared>,
    idle: Duration,
    phase: Phase,
    seen: (u32, u32),
    timer: LazyTimer,
}

impl<T> ClientIo<T> {
    /// `first`: how long a new connection may stay without a request;
    /// `idle`: how long between requests.
    pub fn new(inner: T, shared: Arc<ConnShared>, idle: Duration, first: Duration) -> Self {
        ClientIo {
            inner,
            shared,
            idle,
            phase: Phase::Idle(Some(clock::now() + first)),
            seen: (0, 0),
            timer: LazyTimer::default(),
        }
    }

    /// Moves the phase on from what the handler reported.
    fn refresh(&mut self) {
        let (started, finished) = self.shared.in_flight();
        if started != finished {
            self.phase = Phase::Busy;
        } else if (started, finished) != self.seen || self.phase == Phase::Busy {
            // A request ended since we last looked: idle from now on.
            self.phase = Phase::Idle(None);
        }
        self.seen = (started, finished);
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                this.refresh();
                let Phase::Idle(slot) = &mut this.phase else {
                    return Poll::Pending;
                };
                let deadline = *slot.get_or_insert_with(|| clock::now() + this.idle);
                if this.timer.poll_deadline(deadline, cx).is_pending() {
                    return Poll::Pending;
                }
                // Idle expiry reads as the client closing: the
                // connection closes quietly.
                Poll::Ready(Ok(()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const IDLE: Duration = Duration::from_secs(60);
    const FIRST: Duration = Duration::from_secs(10);

    fn pair() -> (ClientIo<DuplexStream>, DuplexStream, Arc<ConnShared>) {
        let (server, client) = tokio::io::duplex(4096);
        let shared = Arc::new(ConnShared::default());
        (
            ClientIo::new(server, shared.clone(), IDLE, FIRST),
            client,
            shared,
        )
    }

    /// Reads until EOF or an error; returns what ended it and when.
    async fn read_until_end(io: &mut ClientIo<DuplexStream>) -> (io::Result<usize>, Duration) {
        let start = Instant::now();
        let mut buf = [0u8; 1024];
        let mut total = 0;
        loop {
            match io.read(&mut buf).await {
                Ok(0) => return (Ok(total), start.elapsed()),
                Ok(n) => total += n,
                Err(e) => return (Err(e), start.elapsed()),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_closes_after_the_first_timeout() {
        let (mut io, _client, _) = pair();
        let (r, after) = read_until_end(&mut io).await;
        assert_eq!(r.unwrap(), 0);
        assert_eq!(after, FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn no_client_timeout_while_a_request_runs_then_idle() {
        let (mut io, mut client, shared) = pair();
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.unwrap() > 0);
        let active = shared.begin();
        // Far beyond both timeouts: the request's own timeouts apply.
        let blocked = tokio::time::timeout(Duration::from_secs(3600), io.read(&mut buf)).await;
        assert!(blocked.is_err());
        drop(active);
        let (r, after) = read_until_end(&mut io).await;
        assert_eq!(r.unwrap(), 0);
        assert_eq!(after, IDLE);
        drop(io);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "nothing written to the client: {rest:?}");
    }
}
