//! The worker's drain as its HTTP/1 connections see it: a flag read for
//! nothing on every request, and each connection's waker registered once
//! (a connection's task never changes), woken when the drain begins so
//! that idle connections close at once.
//!
//! (A `tokio::sync::watch` receiver polled per request cost ~600
//! instructions a keep-alive request: its `Notified` takes a lock on each
//! poll while it waits. `benches/callgrind.sh`.)

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;

/// A worker's drain signal (single-threaded: the worker's connections
/// share it).
#[derive(Debug, Default)]
pub struct DrainSignal {
    on: Cell<bool>,
    wakers: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl DrainSignal {
    /// The drain begins: every registered connection is woken.
    pub fn begin(&self) {
        self.on.set(true);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        self.free.borrow_mut().clear();
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }

    /// Whether the drain has begun.
    pub fn is_on(&self) -> bool {
        self.on.get()
    }

    /// Wakes `waker` when the drain begins, until the registration is
    /// dropped.
    pub(crate) fn register(self: &Rc<Self>, waker: &Waker) -> Registered {
        let mut wakers = self.wakers.borrow_mut();
        let slot = match self.free.borrow_mut().pop() {
            Some(i) => {
                wakers[i] = Some(waker.clone());
                i
            }
            None => {
                wakers.push(Some(waker.clone()));
                wakers.len() - 1
            }
        };
        Registered {
            signal: self.clone(),
            slot,
        }
    }
}

/// A connection's registration with the drain.
#[derive(Debug)]
pub(crate) struct Registered {
    signal: Rc<DrainSignal>,
    slot: usize,
}

impl Drop for Registered {
    fn drop(&mut self) {
        // After the drain began the list is gone: nothing to take back.
        if let Some(w) = self.signal.wakers.borrow_mut().get_mut(self.slot) {
            *w = None;
            self.signal.free.borrow_mut().push(self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn registered_connections_are_woken_once_and_slots_reused() {
        let signal = Rc::new(DrainSignal::default());
        let (a, b) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let ra = signal.register(&Waker::from(a.clone()));
        let rb = signal.register(&Waker::from(b.clone()));
        drop(rb);
        // The freed slot is taken again.
        let rb = signal.register(&Waker::from(b.clone()));
        assert_eq!(signal.wakers.borrow().len(), 2);
        assert!(!signal.is_on());
        signal.begin();
        assert!(signal.is_on());
        assert_eq!(a.0.load(Ordering::Relaxed), 1);
        assert_eq!(b.0.load(Ordering::Relaxed), 1);
        drop((ra, rb));
        assert!(signal.wakers.borrow().is_empty());
    }
}
