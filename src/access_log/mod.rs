//! The access log: one JSON line per request, written off the request path.
//!
//! A worker formats a request's line when its response ends ([`Record`],
//! carried by the response body) and hands it to a bounded queue
//! ([`Sender::send`], never blocking); one writer thread ([`Writer`])
//! appends the queued lines to stdout or a file, many per system call. A
//! slow or full disk therefore never slows a request: when the queue is
//! full, the line is dropped and counted
//! (`predictor_access_log_lines_total{result="dropped"}`).
//!
//! The output is the config's `[access_log]`, read again at every wake of
//! the writer, so a reload can turn the log on, off, or to another file.
//! [`Handle::reopen`] (`SIGUSR1`) reopens the file after logrotate moved it.
//! On shutdown the writer ends once every worker's sender is gone and the
//! queue is written out.

mod record;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;

pub use record::{Record, RequestLine};
pub use writer::Writer;

use crate::metrics::Metrics;

/// Lines queued for the writer at most; beyond, lines are dropped.
pub const QUEUE: usize = 65_536;

/// A worker's end of the queue.
#[derive(Clone)]
pub struct Sender {
    tx: SyncSender<Vec<u8>>,
    metrics: Arc<Metrics>,
}

impl Sender {
    /// Queues one line (without its newline); drops it when the writer is
    /// behind.
    pub fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.access_log.dropped.increment(1)
            }
        }
    }
}

/// The writer thread, for reopening and for waiting until it has written
/// everything.
pub struct Handle {
    reopen: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Starts the writer thread; returns the senders' prototype and its handle.
/// `current` gives the config serving (the writer follows its
/// `[access_log]`).
pub fn start(
    current: impl Fn() -> Arc<crate::config::Config> + Send + 'static,
    metrics: Arc<Metrics>,
) -> std::io::Result<(Sender, Handle)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let reopen = Arc::new(AtomicBool::new(false));
    let writer = Writer::new(rx, Box::new(current), metrics.clone(), reopen.clone());
    let thread = std::thread::Builder::new()
        .name("predictor-log".into())
        .spawn(move || writer.run())?;
    Ok((Sender { tx, metrics }, Handle { reopen, thread }))
}

impl Handle {
    /// Reopens the log file before the next line (after logrotate).
    pub fn reopen(&self) {
        // Seen at the writer's next line or tick (a quarter second).
        self.reopen.store(true, Ordering::Release);
    }

    /// Waits until every queued line is written: call once every
    /// [`Sender`] is dropped.
    pub fn finish(self) {
        let _ = self.thread.join();
    }
}
