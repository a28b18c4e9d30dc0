//! A worker's buffer of formatted lines, handed to the writer in batches.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Batch, Record, Sender};

/// A buffer this full is handed over at once.
pub(super) const FULL: usize = 32 * 1024;
/// A line waits in its worker's buffer this long at most.
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// One worker's lines not yet handed to the writer (worker-local: no lock,
/// no atomic per line).
pub struct Lines {
    buffer: RefCell<Vec<u8>>,
    count: Cell<u64>,
    sender: Sender,
    /// Told when a line goes into an empty buffer: [`flush_loop`] hands it
    /// over [`FLUSH_AFTER`] later.
    started: Notify,
}

impl Lines {
    pub fn new(sender: Sender) -> Lines {
        Lines {
            buffer: RefCell::new(Vec::new()),
            count: Cell::new(0),
            sender,
            started: Notify::new(),
        }
    }

    /// Appends `record`'s line (the response having ended, `completed`,
    /// or been cut short).
    pub fn push(&self, record: &Record, completed: bool) {
        let full = {
            let mut buffer = self.buffer.borrow_mut();
            if buffer.is_empty() {
                if buffer.capacity() == 0 {
                    buffer.reserve(FULL + 1024);
                }
                self.started.notify_one();
            }
            record.write(completed, &mut buffer);
            buffer.len() >= FULL
        };
        self.count.set(self.count.get() + 1);
        if full {
            self.flush();
        }
    }

    /// Hands the buffered lines to the writer.
    pub fn flush(&self) {
        let bytes = std::mem::take(&mut *self.buffer.borrow_mut());
        let lines = self.count.replace(0);
        if lines > 0 {
            self.sender.send(Batch { bytes, lines });
        }
    }
}

impl Drop for Lines {
    /// A worker that stops hands over what it holds.
    fn drop(&mut self) {
        self.flush();
    }
}

/// Hands a worker's lines over [`FLUSH_AFTER`] after the first of them,
/// for as long as the worker runs (it sleeps while no line comes).
pub async fn flush_loop(lines: Rc<Lines>) {
    loop {
        lines.started.notified().await;
        tokio::time::sleep(FLUSH_AFTER).await;
        lines.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Instant, SystemTime};

    use crate::access_log::RequestLine;
    use crate::routing::RouteKind;

    fn record() -> Record {
        let metrics = crate::metrics::Metrics::new();
        let config = crate::config::tests_support::two_tiers();
        let table = metrics.routes(&config);
        Record {
            request: RequestLine {
                time: SystemTime::now(),
                client: crate::access_log::address_value("192.0.2.7:4711".parse().unwrap()),
                method: http::Method::GET,
                uri: "/".parse().unwrap(),
                version: http::Version::HTTP_11,
                host: None,
                user_agent: None,
            },
            started: Instant::now(),
            request_id: None,
            request_id_generated: false,
            tenant: None,
            slot: table.slot(RouteKind::Rejected, None).clone(),
            server: None,
            status: 400,
            upstream: None,
            bytes_in: None,
            bytes_out: 0,
            queued: None,
            bounded: None,
            preview: false,
        }
    }

    /// Lines wait in the buffer until it is full, its time has come, or the
    /// worker stops; a batch is whole lines; a full queue drops batches and
    /// counts their lines.
    #[test]
    fn lines_go_in_batches_of_whole_lines_and_a_full_queue_counts_its_drops() {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let sender = Sender {
            tx,
            metrics: metrics.clone(),
        };
        let lines = Lines::new(sender);
        let r = record();
        lines.push(&r, true);
        lines.push(&r, false);
        assert!(rx.try_recv().is_err(), "held until full or flushed");
        lines.flush();
        let batch = rx.try_recv().unwrap();
        assert_eq!(batch.lines, 2);
        let text = String::from_utf8(batch.bytes).unwrap();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed.len(), 2);
        assert!(text.ends_with('\n'));
        assert_eq!(parsed[1]["completed"], false);
        lines.flush();
        assert!(rx.try_recv().is_err(), "nothing to hand over");

        // A full buffer goes by itself.
        let mut pushed = 0u64;
        while rx.try_recv().is_err() {
            lines.push(&r, true);
            pushed += 1;
            assert!(pushed < 10_000);
        }
        assert!(pushed > 10, "{pushed} lines made a batch");
        // The queue (one batch) fills; the next full batch is dropped and
        // its lines counted.
        for _ in 0..2 * pushed {
            lines.push(&r, true);
        }
        let dropped = format!("predictor_access_log_lines_total{{result=\"dropped\"}} {pushed}");
        assert!(metrics.render().contains(&dropped), "{}", metrics.render());
        assert_eq!(rx.try_recv().unwrap().lines, pushed);
        lines.push(&r, true);
        drop(lines);
        // The worker's stop handed over its last line: the queue had room.
        assert_eq!(rx.try_recv().unwrap().lines, 1);
        assert!(rx.try_recv().is_err());
    }
}
