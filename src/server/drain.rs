//! A worker's connections through a drain.
//!
//! Every client connection holds a [`Watcher`] of its worker's [`Drain`];
//! a drain tells them all ([`DrainSignal`], which the HTTP/1 and HTTP/2
//! connections follow in their own loops: [`crate::proxy::front`],
//! [`crate::proxy::h2`]), then waits until every watcher is gone (each
//! connection closed) or its deadline. A connection with a request in
//! progress finishes it and closes (HTTP/1.1: `Connection: close` on the
//! response; HTTP/2: `GOAWAY`); an idle keep-alive connection closes at
//! once. A connection accepted just before the drain whose first request
//! has not been read yet is given
//! [`FIRST_REQUEST_GRACE`](crate::proxy::front::FIRST_REQUEST_GRACE) to start it, so
//! that a request the kernel had already queued is answered, not reset.

use std::rc::Rc;

use tokio::sync::watch;

use crate::proxy::front::DrainSignal;

/// A worker's drain signal.
pub struct Drain(watch::Sender<bool>, Rc<DrainSignal>);

/// A connection's end of the drain signal (the drain waits for it).
pub struct Watcher {
    /// Held while the connection lives: the drain counts the receivers.
    _held: watch::Receiver<bool>,
    signal: Rc<DrainSignal>,
}

impl Drain {
    pub fn new() -> Drain {
        Drain(watch::Sender::new(false), Rc::default())
    }

    pub fn watcher(&self) -> Watcher {
        Watcher {
            _held: self.0.subscribe(),
            signal: self.1.clone(),
        }
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
    /// The drain as a connection follows it (the watcher itself is held
    /// until the connection closes).
    pub fn signal(&self) -> &Rc<DrainSignal> {
        &self.signal
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}
