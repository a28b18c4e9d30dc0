//! The request path's clock: read once per poll of a connection's task.
//!
//! A keep-alive request read the monotonic clock six times (its start, the
//! pool checkout, the response's arrival, its duration, the connection's
//! return to the pool, the next idle deadline): ~5 % of the request's
//! user-space time under load (`perf`, `__vdso_clock_gettime`). The reads
//! fall into the two polls of the connection's task a request takes (the
//! request arrives; its response arrives), and within one poll the time
//! moves by the few microseconds of its system calls. Like nginx
//! (`ngx_time_update` once per event-loop turn) and HAProxy (`now_ms`), a
//! connection's task now reads the clock at most once per poll:
//! [`Turns`] wraps the task's future, and [`now`] inside it returns the
//! poll's first reading.
//!
//! Outside a [`Turns`] poll (background loops, tests) [`now`] reads the
//! clock every time, so a stale reading never leaks out of the poll it was
//! taken in. The clock is tokio's, so tests with a paused clock see
//! theirs.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
enum Turn {
    /// Not inside a connection's poll: every read is a new one.
    Off,
    /// Inside one, not read yet.
    Unread,
    /// Inside one, read at this instant.
    At(Instant),
}

thread_local! {
    static TURN: Cell<Turn> = const { Cell::new(Turn::Off) };
}

/// The time: the current poll's reading inside a [`Turns`] future, a new
/// reading elsewhere.
pub fn now() -> Instant {
    TURN.with(|turn| match turn.get() {
        Turn::At(t) => t,
        Turn::Off => Instant::now(),
        Turn::Unread => {
            let t = Instant::now();
            turn.set(Turn::At(t));
            t
        }
    })
}

/// [`now`] as a standard instant (the access log's and the metrics'
/// durations).
pub fn now_std() -> std::time::Instant {
    now().into_std()
}

/// A future whose every poll reads the clock at most once ([`now`]).
pub struct Turns<F>(F);

impl<F> Turns<F> {
    pub fn new(inner: F) -> Self {
        Turns(inner)
    }
}

impl<F: Future + Unpin> Future for Turns<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // The turn that begins here ends here (even by a panic), so a
        // reading never outlives its poll; a nested `Turns` is part of the
        // outer one's turn.
        struct End;
        impl Drop for End {
            fn drop(&mut self) {
                TURN.with(|turn| turn.set(Turn::Off));
            }
        }
        let _end = TURN.with(|turn| match turn.get() {
            Turn::Off => {
                turn.set(Turn::Unread);
                Some(End)
            }
            Turn::Unread | Turn::At(_) => None,
        });
        Pin::new(&mut self.0).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_reading_per_poll_inside_a_turn() {
        let turns = Turns::new(Box::pin(async {
            let first = now();
            std::thread::sleep(Duration::from_millis(2));
            let same = now();
            // A new poll: a new reading.
            tokio::task::yield_now().await;
            (first, same, now())
        }));
        let (first, same, next) = turns.await;
        assert_eq!(same, first);
        assert!(next - first >= Duration::from_millis(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_is_tokios() {
        let turns = Turns::new(Box::pin(async {
            let first = now();
            tokio::time::advance(Duration::from_secs(60)).await;
            now() - first
        }));
        assert_eq!(turns.await, Duration::from_secs(60));
    }

    #[test]
    fn outside_a_turn_every_read_is_new() {
        let a = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() - a >= Duration::from_millis(2));
    }

    #[test]
    fn a_reading_does_not_outlive_its_poll() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut turns = Turns::new(Box::pin(async { now() }));
        let Poll::Ready(inside) = Pin::new(&mut turns).poll(&mut cx) else {
            panic!("ready at once");
        };
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() - inside >= Duration::from_millis(2));
        TURN.with(|t| assert!(matches!(t.get(), Turn::Off)));
    }

    #[test]
    fn a_nested_turn_keeps_the_outer_reading() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut outer = Turns::new(Box::pin(async {
            let before = now();
            std::thread::sleep(Duration::from_millis(2));
            let mut inner = Turns::new(Box::pin(async { now() }));
            let inside = std::future::poll_fn(|cx| Pin::new(&mut inner).poll(cx)).await;
            (before, inside, now())
        }));
        let Poll::Ready((before, inside, after)) = Pin::new(&mut outer).poll(&mut cx) else {
            panic!("ready at once");
        };
        assert_eq!(inside, before);
        assert_eq!(after, before);
    }
}
