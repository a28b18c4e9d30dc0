//! The writer thread: the workers' batches of lines to stdout or a file.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::Batch;
use crate::config::LogOutput;
use crate::metrics::Metrics;

/// How often the writer looks at the config and the reopen flag when no
/// line arrives.
const TICK: Duration = Duration::from_millis(250);
/// Batches written between two flushes at most.
const BATCHES: usize = 16;

/// Gives the config serving.
pub type Current = Box<dyn Fn() -> Arc<crate::config::Config> + Send>;

pub struct Writer {
    rx: Receiver<Batch>,
    /// The config serving.
    current: Current,
    metrics: Arc<Metrics>,
    reopen: Arc<AtomicBool>,
    /// What is open, and where to.
    /// Unbuffered: a batch is already many lines, written in one call.
    open: Option<(LogOutput, Box<dyn Write + Send>)>,
    /// The last output that could not be opened (reported once).
    failed: Option<LogOutput>,
}

impl Writer {
    pub fn new(
        rx: Receiver<Batch>,
        current: Current,
        metrics: Arc<Metrics>,
        reopen: Arc<AtomicBool>,
    ) -> Writer {
        Writer {
            rx,
            current,
            metrics,
            reopen,
            open: None,
            failed: None,
        }
    }

    pub fn run(mut self) {
        loop {
            let first = self.rx.recv_timeout(TICK);
            self.follow_config();
            match first {
                Ok(batch) => {
                    self.write(&batch);
                    for _ in 1..BATCHES {
                        match self.rx.try_recv() {
                            Ok(batch) => self.write(&batch),
                            Err(_) => break,
                        }
                    }
                    self.flush();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.flush();
    }

    /// Opens, closes or reopens the output as the config and the reopen
    /// flag say.
    fn follow_config(&mut self) {
        let want = (self.current)().access_log.clone();
        let reopen = self.reopen.swap(false, Ordering::AcqRel);
        let same = self.open.as_ref().map(|(o, _)| o) == want.as_ref();
        if same && !reopen {
            return;
        }
        self.flush();
        self.open = None;
        let Some(output) = want else {
            return;
        };
        match open(&output) {
            Ok(w) => {
                if self.failed.take().is_some() || reopen {
                    tracing::info!(output = ?output, "access log open");
                }
                self.open = Some((output, w));
            }
            Err(e) => {
                if self.failed.as_ref() != Some(&output) {
                    tracing::error!(output = ?output, error = %e, "cannot open the access log; its lines are dropped until it can");
                }
                self.failed = Some(output);
            }
        }
    }

    fn write(&mut self, batch: &Batch) {
        let m = &self.metrics.access_log;
        let Some((_, w)) = &mut self.open else {
            // Logging turned off (or the file cannot be opened): the
            // lines of requests already on their way go nowhere.
            if self.failed.is_some() {
                m.failed.increment(batch.lines);
            }
            return;
        };
        match w.write_all(&batch.bytes) {
            Ok(()) => m.written.increment(batch.lines),
            Err(e) => {
                m.failed.increment(batch.lines);
                tracing::error!(error = %e, "access log write failed; reopening");
                self.reopen.store(true, Ordering::Release);
            }
        }
    }

    fn flush(&mut self) {
        if let Some((_, w)) = &mut self.open {
            if let Err(e) = w.flush() {
                tracing::error!(error = %e, "access log flush failed; reopening");
                self.reopen.store(true, Ordering::Release);
            }
        }
    }
}

fn open(output: &LogOutput) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match output {
        // The descriptor itself: `Stdout` would copy every batch into its
        // line buffer.
        LogOutput::Stdout => Box::new(std::fs::File::from(
            std::io::stdout().as_fd().try_clone_to_owned()?,
        )),
        LogOutput::File(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
    })
}
