//! The response deadline of an upstream connection, enforced by the task
//! that drives the connection.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use super::super::timer::LazyTimer;

/// A connection's response deadline, shared between the request waiting on
/// it and the task driving the connection.
///
/// Why not `tokio::time::timeout` around each request: that registers and
/// removes a timer per request. Each connection task keeps one
/// [`LazyTimer`] instead.
#[derive(Debug, Default)]
pub(super) struct Watch {
    pub(super) deadline: Cell<Option<Instant>>,
    pub(super) expired: Cell<bool>,
}

/// Clears the deadline when the wait for the response head ends (or is
/// abandoned).
pub(super) struct Awaiting<'a>(&'a Watch);

impl<'a> Awaiting<'a> {
    pub(super) fn start(watch: &'a Watch, after: Duration) -> Self {
        watch.deadline.set(Some(Instant::now() + after));
        Awaiting(watch)
    }
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        self.0.deadline.set(None);
    }
}

/// The task of one upstream connection: hyper's connection future, closed
/// when a response head is late.
pub(super) struct Watched<C> {
    pub(super) conn: Pin<Box<C>>,
    pub(super) watch: Rc<Watch>,
    pub(super) timer: LazyTimer,
    pub(super) addr: SocketAddr,
}

impl<C> Future for Watched<C>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Poll::Ready(result) = this.conn.as_mut().poll(cx) {
            if let Err(e) = result {
                tracing::debug!(addr = %this.addr, error = %e, "upstream connection ended");
            }
            return Poll::Ready(());
        }
        let Some(deadline) = this.watch.deadline.get() else {
            return Poll::Pending;
        };
        if this.timer.poll_deadline(deadline, cx).is_pending() {
            return Poll::Pending;
        }
        // No response head in time: close the connection; the waiting
        // request fails and reads `expired`.
        this.watch.expired.set(true);
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that never ends by itself.
    fn watched(watch: Rc<Watch>) -> Watched<std::future::Pending<Result<(), hyper::Error>>> {
        Watched {
            conn: Box::pin(std::future::pending()),
            watch,
            timer: LazyTimer::default(),
            addr: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_response_head_closes_the_connection_at_its_deadline() {
        let watch = Rc::new(Watch::default());
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let task = tokio::task::spawn_local(watched(watch.clone()));
                // First request: answered in time; its timer stays armed.
                let first = Awaiting::start(&watch, Duration::from_secs(10));
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(first);
                // Second request, later: the earlier timer must not cut it.
                let started = Instant::now();
                let _second = Awaiting::start(&watch, Duration::from_secs(10));
                tokio::task::yield_now().await;
                task.await.unwrap();
                assert!(watch.expired.get());
                assert_eq!(started.elapsed(), Duration::from_secs(10));
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_no_expiry() {
        let watch = Rc::new(Watch::default());
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let task = tokio::task::spawn_local(watched(watch.clone()));
                drop(Awaiting::start(&watch, Duration::from_secs(1)));
                let waited = tokio::time::timeout(Duration::from_secs(3600), task).await;
                assert!(
                    waited.is_err(),
                    "a connection without a pending request was closed"
                );
                assert!(!watch.expired.get());
            })
            .await;
    }
}
