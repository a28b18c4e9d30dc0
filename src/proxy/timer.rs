//! [`LazyTimer`]: one timer per connection, moved only when it must be.
//!
//! Connections need a deadline per request (the client's idle and head
//! timeouts, the upstream response timeout). Registering a tokio timer per
//! request costs ~700 instructions (measured with callgrind); a connection
//! instead keeps one timer and, when the new deadline is later than the armed
//! one, leaves it: the earlier timer fires, finds the real deadline still
//! ahead, and is moved once. On a busy keep-alive connection most requests
//! touch no timer at all.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// Made when first armed: a connection that never waits (its request
/// already in the socket when it is read, as under load) allocates none.
#[derive(Debug, Default)]
pub struct LazyTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
}

impl LazyTimer {
    /// Ready once `deadline` has passed; otherwise arranges a wake-up no
    /// later than it.
    pub fn poll_deadline(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed.is_none_or(|armed| armed > deadline) {
            self.arm(deadline);
        }
        if self.sleep_mut(deadline).poll(cx).is_pending() {
            return Poll::Pending;
        }
        // A fresh reading, not `proxy::clock::now`: the poll's cached one
        // may be from before the timer fired, which would re-arm it for a
        // deadline already past and cost a loop turn.
        if Instant::now() < deadline {
            // An earlier deadline's timer: move it to this one.
            self.arm(deadline);
            return self.sleep_mut(deadline).poll(cx);
        }
        Poll::Ready(())
    }

    fn arm(&mut self, deadline: Instant) {
        match &mut self.sleep {
            Some(s) => s.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.armed = Some(deadline);
    }

    /// The timer (armed at `deadline` if it was not made yet, which
    /// `poll_deadline` has done).
    fn sleep_mut(&mut self, deadline: Instant) -> Pin<&mut Sleep> {
        self.sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)))
            .as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_deadline_even_when_armed_earlier() {
        let mut t = LazyTimer::default();
        let start = Instant::now();
        let first = start + Duration::from_secs(5);
        // Armed for 5 s, then asked for 20 s: stays armed at 5 s...
        assert!(
            std::future::poll_fn(|cx| Poll::Ready(t.poll_deadline(first, cx)))
                .await
                .is_pending()
        );
        let later = start + Duration::from_secs(20);
        std::future::poll_fn(|cx| t.poll_deadline(later, cx)).await;
        // ...and still fires only at 20 s.
        assert_eq!(Instant::now() - start, Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_timer_forward() {
        let mut t = LazyTimer::default();
        let start = Instant::now();
        assert!(
            std::future::poll_fn(|cx| Poll::Ready(
                t.poll_deadline(start + Duration::from_secs(60), cx)
            ))
            .await
            .is_pending()
        );
        std::future::poll_fn(|cx| t.poll_deadline(start + Duration::from_secs(2), cx)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_is_made_only_when_first_needed() {
        let mut t = LazyTimer::default();
        assert!(t.sleep.is_none());
        // A deadline already passed: ready at once (the timer made for it).
        let past = Instant::now();
        tokio::time::advance(Duration::from_millis(1)).await;
        std::future::poll_fn(|cx| t.poll_deadline(past, cx)).await;
        assert!(t.sleep.is_some());
    }
}
