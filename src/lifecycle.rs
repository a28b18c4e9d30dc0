//! The process's state as load balancers and orchestrators see it: ready
//! (every worker accepting on its sockets), draining (from `SIGTERM`
//! until exit), and the client connections open.
//!
//! Read by the admin listener (`/readyz`, `/metrics`); written by the
//! workers as they start and by the server's shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Semaphore;

pub struct Lifecycle {
    workers: usize,
    started: AtomicUsize,
    draining: AtomicBool,
    /// The connection limit's permits: one taken per open connection.
    limit: Arc<Semaphore>,
    max_connections: usize,
}

/// Why an instance is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Some workers are not accepting yet (or could not start).
    Starting { started: usize, workers: usize },
    /// Shutting down: not accepting, finishing requests in progress.
    Draining,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Starting { started, workers } => {
                write!(f, "starting: {started} of {workers} workers accepting")
            }
            NotReady::Draining => f.write_str("draining: not accepting new connections"),
        }
    }
}

impl Lifecycle {
    pub fn new(workers: usize, max_connections: usize) -> Lifecycle {
        Lifecycle {
            workers,
            started: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            limit: Arc::new(Semaphore::new(max_connections)),
            max_connections,
        }
    }

    /// The connection limit, one permit per open client connection.
    pub fn limit(&self) -> &Arc<Semaphore> {
        &self.limit
    }

    /// A worker has its listening sockets and accepts.
    pub fn worker_started(&self) {
        self.started.fetch_add(1, Ordering::AcqRel);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Ready: every worker accepting (sockets bound, a snapshot loaded:
    /// a server does not exist without both) and not draining.
    pub fn ready(&self) -> Result<(), NotReady> {
        if self.is_draining() {
            return Err(NotReady::Draining);
        }
        let started = self.started.load(Ordering::Acquire);
        if started < self.workers {
            return Err(NotReady::Starting {
                started,
                workers: self.workers,
            });
        }
        Ok(())
    }

    pub fn connections_open(&self) -> usize {
        self.max_connections
            .saturating_sub(self.limit.available_permits())
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_every_worker_accepts_and_until_draining() {
        let l = Lifecycle::new(2, 10);
        assert_eq!(
            l.ready(),
            Err(NotReady::Starting {
                started: 0,
                workers: 2
            })
        );
        l.worker_started();
        assert!(l.ready().is_err());
        l.worker_started();
        assert_eq!(l.ready(), Ok(()));
        let permit = l.limit().clone().try_acquire_owned().unwrap();
        assert_eq!(l.connections_open(), 1);
        drop(permit);
        assert_eq!(l.connections_open(), 0);
        l.start_draining();
        assert_eq!(l.ready(), Err(NotReady::Draining));
        assert!(NotReady::Draining.to_string().starts_with("draining"));
    }
}
