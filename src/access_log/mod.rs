//! The access log: one JSON line per request, written off the request path.
//!
//! A worker formats a request's line when its response ends ([`Record`],
//! carried by the response body) straight into its own buffer
//! ([`Lines`]). A full buffer (32 KiB), or one that has waited 100 ms, is
//! handed to a bounded queue ([`Sender`], never blocking), and one writer
//! thread ([`Writer`]) appends the queued batches to stdout or a file. So a
//! line costs its formatting and nothing else on the request path (no
//! allocation, no queue operation, no copy per line), as with nginx's
//! `access_log ... buffer=32k flush=100ms`; and a slow or full disk never
//! slows a request: when the queue is full, the batch is dropped and its
//! lines counted (`predictor_access_log_lines_total{result="dropped"}`).
//!
//! The output is the config's `[access_log]`, read again at every wake of
//! the writer, so a reload can turn the log on, off, or to another file.
//! [`Handle::reopen`] (`SIGUSR1`) reopens the file after logrotate moved it.
//! On shutdown each worker hands over what it holds as its [`Lines`] is
//! dropped, and the writer ends once every sender is gone and the queue is
//! written out.

mod escape;
mod lines;
mod record;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;

pub use lines::{FLUSH_AFTER, Lines, flush_loop};
pub use record::{Name, Record, RequestLine, address_value};
pub use writer::Writer;

use crate::metrics::Metrics;

/// Batches queued for the writer at most (each up to [`lines::FULL`]
/// bytes and a line: about 16 MiB); beyond, batches are dropped.
pub const QUEUE: usize = 512;

/// Whole lines, each ending in a newline, from one worker.
pub struct Batch {
    pub bytes: Vec<u8>,
    pub lines: u64,
}

/// A worker's end of the queue.
#[derive(Clone)]
pub struct Sender {
    tx: SyncSender<Batch>,
    metrics: Arc<Metrics>,
}

impl Sender {
    /// Queues one batch; drops it (counting its lines) when the writer is
    /// behind.
    pub fn send(&self, batch: Batch) {
        let lines = batch.lines;
        match self.tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.access_log.dropped.increment(lines)
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
        // Seen at the writer's next batch or tick (a quarter second).
        self.reopen.store(true, Ordering::Release);
    }

    /// Waits until every queued line is written: call once every
    /// [`Sender`] is dropped.
    pub fn finish(self) {
        let _ = self.thread.join();
    }
}
