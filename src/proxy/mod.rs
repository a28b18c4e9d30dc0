//! The proxy: one HTTP request from a client to an upstream and back.
//!
//! Owns everything between a client connection and the upstream
//! connections: the HTTP/1.x client side, predictor's own ([`front`]: one
//! task per connection reads heads, runs the phases, writes responses),
//! the HTTP/2 client side on the `h2` crate ([`h2`]: a connection's
//! streams driven from its task), the phases
//! of a request ([`phase`]: check, plan, rewrite, send, respond; run in
//! sequence by [`handler`]), the header rules ([`headers`],
//! [`forwarding`]), a request's fields as the phases read them, from an
//! HTTP/1.x head or an HTTP/2 map ([`fields`]), and its field edits,
//! applied as the upstream head is written ([`edits`]), an HTTP/2 connection's idle timeout ([`client_io`]),
//! the time as the request path reads it, once per poll of a connection's
//! task ([`clock`]),
//! the per-worker upstream connection pools and the HTTP/1.1 exchange on
//! them, driven by the client connection's own task ([`upstream`]), the
//! streamed response body ([`body`]), what a request's metrics and log
//! line are made of ([`account`]), the HTTP/1.1 codec ([`h1`]: heads,
//! framing, chunked bodies; both sides read with it), the 421 of
//! a request for another tenant than its TLS connection's
//! ([`misdirected`]) and the mapping of failures to statuses ([`error`]).
//!
//! Invariants: a request reads the snapshot once and routes on it alone;
//! bodies are streamed, never collected; nothing on this path takes a lock
//! shared between threads (each worker has its own pools); every failure
//! becomes a [`ProxyError`] whose side, retry safety and status are decided
//! in one place.

pub mod account;
pub mod body;
pub mod client_io;
pub mod clock;
pub mod edits;
pub mod error;
pub mod fields;
pub mod forwarding;
pub mod front;
pub mod h1;
pub mod h2;
pub mod handler;
pub mod headers;
pub mod misdirected;
pub mod phase;
pub mod placed;
pub mod request_id;
pub mod shadow;
pub mod target;
pub mod timer;
pub mod upstream;

pub use error::{ProxyError, Side};
pub use headers::is_managed_header;

/// Runs hyper's HTTP/2 client connections (the legacy balancer over h2c)
/// on the worker's own thread.
#[derive(Clone, Copy, Debug)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}
