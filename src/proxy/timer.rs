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
use std::time::Duration;

use tokio::time::{Instant, Sleep};

#[derive(Debug)]
pub struct LazyTimer {
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Default for LazyTimer {
    fn default() -> Self {
        LazyTimer {
            sleep: Box::pin(tokio::time::sleep_until(
                Instant::now() + Duration::from_secs(86_400),
            )),
            armed: None,
        }
    }
}

impl LazyTimer {
    /// Ready once `deadline` has passed; otherwise arranges a wake-up no
    /// later than it.
    pub fn poll_deadline(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed.is_none_or(|armed| armed > deadline) {
            self.arm(deadline);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if Instant::now() < deadline {
            // An earlier deadline's timer: move it to this one.
            self.arm(deadline);
            return self.sleep.as_mut().poll(cx);
        }
        Poll::Ready(())
    }

    fn arm(&mut self, deadline: Instant) {
        self.sleep.as_mut().reset(deadline);
        self.armed = Some(deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
