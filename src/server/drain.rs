//! A worker's connections through a drain.
//!
//! (HTTP/1 connections, predictor's own, follow the drain in their own
//! loop: [`crate::proxy::front`]; what follows is how hyper's HTTP/2
//! connections do.)
//!
//! Every client connection holds a [`Watcher`] of its worker's [`Drain`];
//! a drain tells them all, then waits until every watcher is gone (each
//! connection closed) or its deadline. A connection with a request in
//! progress finishes it and closes (HTTP/1.1: `Connection: close` on the
//! response; HTTP/2: `GOAWAY`); an idle keep-alive connection closes at
//! once. A connection accepted just before the drain whose first request
//! has not been read yet is given [`FIRST_REQUEST_GRACE`] to start it, so
//! that a request the kernel had already queued is answered, not reset.
//! (hyper-util's `GracefulShutdown` closes such a connection at once.)
//! That wait polls the connection's request count every 5 ms, during the
//! drain only and only for connections that never started a request: a
//! wake-up from `ConnShared::begin` would put a notification on every
//! request of every connection for the sake of the last second of a
//! process.

use std::pin::Pin;
use std::time::Duration;

use std::rc::Rc;

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;

use crate::proxy::client_io::ConnShared;

use crate::proxy::front::DrainSignal;
pub use crate::proxy::front::FIRST_REQUEST_GRACE;

/// A worker's drain signal.
pub struct Drain(watch::Sender<bool>, Rc<DrainSignal>);

/// A connection's end of the drain signal (the drain waits for it).
pub struct Watcher(watch::Receiver<bool>, Rc<DrainSignal>);

impl Drain {
    pub fn new() -> Drain {
        Drain(watch::Sender::new(false), Rc::default())
    }

    pub fn watcher(&self) -> Watcher {
        Watcher(self.0.subscribe(), self.1.clone())
    }

    /// Connections not closed yet.
    pub fn count(&self) -> usize {
        self.0.receiver_count()
    }

    /// Tells every connection, then waits until all are closed.
    pub async fn run(&self) {
        self.1.begin();
        self.0.send_replace(true);
        self.0.closed().await;
    }
}

impl Watcher {
    /// The drain as an HTTP/1 connection follows it (the watcher itself
    /// is held until the connection closes).
    pub fn signal(&self) -> &Rc<DrainSignal> {
        &self.1
    }

    /// Resolves once the drain has begun. (A watcher held without being
    /// watched, as by a passed-through TLS connection, holds the drain
    /// open until dropped.)
    async fn draining(&mut self) {
        let _ = self.0.wait_for(|d| *d).await;
    }

    /// Serves `conn` to its end, shutting it down gracefully once the
    /// drain has begun (see the module's documentation). The connection is
    /// boxed: hyper's connection state is ~3.6 KiB, and each move of a
    /// future holding it inline copies all of it (on every accept, as the
    /// connection's task is spawned: `benches/callgrind.sh` with
    /// `CG_CLOSE=1`).
    pub async fn watch<C: GracefulConnection>(
        mut self,
        mut conn: Pin<Box<C>>,
        shared: &ConnShared,
    ) -> C::Output {
        tokio::select! {
            r = conn.as_mut() => return r,
            () = self.draining() => {}
        }
        if !shared.has_begun() {
            let grace = tokio::time::sleep(FIRST_REQUEST_GRACE);
            tokio::pin!(grace);
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while !shared.has_begun() {
                tokio::select! {
                    r = conn.as_mut() => return r,
                    () = &mut grace => break,
                    _ = tick.tick() => {}
                }
            }
        }
        conn.as_mut().graceful_shutdown();
        conn.await
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}
