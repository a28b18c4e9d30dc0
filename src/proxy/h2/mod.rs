//! The client side of HTTP/2 (h2c with prior knowledge, `h2` by ALPN, the
//! preface on an `auto` listener), on the `h2` crate that hyper's own
//! HTTP/2 is made of, with the connection's streams driven from the
//! connection's task ([`stream`]).
//!
//! Owns: the connection's settings (window sizes, concurrent streams,
//! header list size), its accept loop, its streams in flight, and the
//! drain (`GOAWAY` once the drain begins, the streams in progress finish;
//! a connection that has not started a stream yet gets
//! [`FIRST_REQUEST_GRACE`] to start one).
//!
//! Why not hyper's server here: hyper spawns a task per stream around the
//! service future (tokio allocates it, copies the future in, schedules it
//! on every wake) and makes more passes over each response's fields
//! (`strip_connection_headers`, the `Date` and length checks); served from
//! the connection's task with one pass over the fields, an h2c request
//! takes ~2,800 fewer instructions (39,039 → 36,260, `CG_H2=1
//! benches/callgrind.sh`). The frames, HPACK, flow control and stream
//! states stay the `h2` crate's, hyper's own HTTP/2.

mod body;
mod stream;

pub use body::H2Body;

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use futures_util::stream::{FuturesUnordered, Stream};
use tokio::io::{AsyncRead, AsyncWrite};

use super::front::{DrainSignal, FIRST_REQUEST_GRACE};
use super::handler::ConnCtx;

/// What an HTTP/2 connection is allowed (from the config's `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_concurrent_streams: u32,
    pub max_header_list_size: u32,
}

/// Per-stream and per-connection receive windows: hyper's server
/// defaults, kept (the RFC's 64 KiB throttles a large upload).
const WINDOW: u32 = 1 << 20;
/// What a connection may buffer of its streams' data before a stream
/// waits for capacity (hyper's default).
const MAX_SEND_BUFFER: usize = 400 << 10;

/// What woke the connection's loop. (A stream's request is most of it,
/// moved once into the stream's future: boxing it would allocate per
/// stream.)
#[allow(clippy::large_enum_variant)]
enum Event {
    Stream(
        http::Request<h2::RecvStream>,
        h2::server::SendResponse<bytes::Bytes>,
    ),
    Drain,
    GraceOver,
    Closed,
    Failed(h2::Error),
}

/// Serves HTTP/2 on `io` until the connection closes (or fails), the
/// drain followed as `drain` says.
pub async fn serve<T>(ctx: Rc<ConnCtx>, io: T, limits: Limits, drain: &Rc<DrainSignal>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size);
    let mut conn = match builder.handshake::<_, bytes::Bytes>(io).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(client = %ctx.peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
    };
    let mut streams = FuturesUnordered::new();
    let mut registered = None;
    let mut accepted = 0u64;
    // Once the drain has begun: `GOAWAY` sent, or (no stream yet) the
    // grace's end.
    let mut shut = false;
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let event = poll_fn(|cx| {
            // The streams in flight first: what they send goes out with
            // the connection's next write.
            while let Poll::Ready(Some(())) = Pin::new(&mut streams).poll_next(cx) {}
            if !shut && grace.is_none() {
                if registered.is_none() {
                    registered = Some(drain.register(cx.waker()));
                }
                if drain.is_on() {
                    return Poll::Ready(Event::Drain);
                }
            }
            if let Some(g) = &mut grace {
                if g.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::GraceOver);
                }
            }
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => Poll::Ready(Event::Stream(req, respond)),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Event::Failed(e)),
                Poll::Ready(None) => Poll::Ready(Event::Closed),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match event {
            Event::Stream(req, respond) => {
                accepted += 1;
                if grace.take().is_some() {
                    // The drain's grace was for this first stream.
                    shut = true;
                    conn.graceful_shutdown();
                }
                // Boxed: `FuturesUnordered` moves a future into its task
                // (built on the stack, then into an `Arc`), ~3 KiB each
                // time; boxed, the state is written once and the task
                // holds a pointer (perf: those copies were ~1.5 % of the
                // CPU of an h2c load).
                streams.push(Box::pin(stream::serve(ctx.clone(), req, respond)));
            }
            Event::Drain if accepted == 0 => {
                // A connection opened just before the drain: its first
                // request may be on its way.
                grace = Some(Box::pin(tokio::time::sleep(FIRST_REQUEST_GRACE)));
            }
            Event::Drain | Event::GraceOver => {
                grace = None;
                shut = true;
                conn.graceful_shutdown();
            }
            Event::Closed => break,
            Event::Failed(e) => {
                tracing::debug!(client = %ctx.peer, error = %e, "client connection ended with an error");
                break;
            }
        }
    }
    drop(registered);
}
