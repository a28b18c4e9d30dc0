use std::cell::Cell;

use super::*;

/// Servers with ceilings, counted in cells.
struct Counts {
    in_flight: Vec<Cell<u32>>,
    ceiling: u32,
}

impl Counts {
    fn full(servers: usize, ceiling: u32) -> Counts {
        Counts {
            in_flight: (0..servers).map(|_| Cell::new(ceiling)).collect(),
            ceiling,
        }
    }

    /// A request on `s` ends: its slot freed and offered to the queue.
    fn end(&self, q: &FairQueue, s: ServerIdx) -> bool {
        self.give_back(s);
        q.freed(s, self)
    }
}

impl Slots for Counts {
    fn take(&self, s: ServerIdx) -> bool {
        let c = &self.in_flight[usize::from(s)];
        if c.get() < self.ceiling {
            c.set(c.get() + 1);
            true
        } else {
            false
        }
    }
    fn give_back(&self, s: ServerIdx) {
        let c = &self.in_flight[usize::from(s)];
        c.set(c.get() - 1);
    }
}

fn want(lane: u32, servers: &[ServerIdx]) -> Want<'_> {
    Want {
        lane,
        share: 1,
        priority: 0,
        servers,
    }
}

fn wait(e: Entered) -> oneshot::Receiver<Grant> {
    match e {
        Entered::Wait(rx) => rx,
        other => panic!("expected to wait, got {other:?}"),
    }
}

/// Which of `rxs` (by label) got a grant, in the order they are served
/// as `n` slots of server 0 free one by one.
fn served(
    q: &FairQueue,
    counts: &Counts,
    rxs: &mut [(char, oneshot::Receiver<Grant>)],
    n: usize,
) -> String {
    let mut order = String::new();
    for _ in 0..n {
        assert!(counts.end(q, 0));
        for (label, rx) in rxs.iter_mut() {
            if let Ok(g) = rx.try_recv() {
                assert_eq!(g, Grant::Server(0));
                order.push(*label);
            }
        }
    }
    order
}

#[test]
fn a_flooded_tenant_waits_behind_itself() {
    let counts = Counts::full(1, 4);
    let q = FairQueue::default();
    let mut rxs = Vec::new();
    for _ in 0..6 {
        rxs.push(('F', wait(q.enter(want(1, &[0]), 100, &counts))));
    }
    for _ in 0..2 {
        rxs.push(('n', wait(q.enter(want(2, &[0]), 100, &counts))));
    }
    assert_eq!(q.len(), 8);
    // First come is not first served: the neighbour's two requests go
    // between the flood's, not after all six.
    assert_eq!(served(&q, &counts, &mut rxs, 8), "FnFnFFFF");
    assert!(q.is_empty());
    // Nobody waits: the slot stays free.
    assert!(!counts.end(&q, 0));
    assert_eq!(counts.in_flight[0].get(), 3);
}

#[test]
fn shares_weigh_the_turns() {
    let counts = Counts::full(1, 1);
    let q = FairQueue::default();
    let mut rxs = Vec::new();
    for _ in 0..4 {
        let w = Want {
            share: 2,
            ..want(7, &[0])
        };
        rxs.push(('P', wait(q.enter(w, 100, &counts))));
        rxs.push(('s', wait(q.enter(want(8, &[0]), 100, &counts))));
    }
    assert_eq!(served(&q, &counts, &mut rxs, 8), "PPsPPsss");
}

#[test]
fn a_slot_goes_to_a_request_that_can_use_its_server() {
    let counts = Counts::full(2, 1);
    let q = FairQueue::default();
    let mut a = wait(q.enter(want(1, &[1]), 100, &counts));
    let mut b = wait(q.enter(want(2, &[0, 1]), 100, &counts));
    // Server 0 frees: lane 1 is first in turn but cannot use it.
    assert!(counts.end(&q, 0));
    assert_eq!(b.try_recv(), Ok(Grant::Server(0)));
    assert!(a.try_recv().is_err());
    assert!(counts.end(&q, 1));
    assert_eq!(a.try_recv(), Ok(Grant::Server(1)));
}

#[test]
fn requests_gone_are_skipped_and_the_slot_not_lost() {
    let counts = Counts::full(1, 1);
    let q = FairQueue::default();
    let gone = wait(q.enter(want(1, &[0]), 100, &counts));
    let mut live = wait(q.enter(want(2, &[0]), 100, &counts));
    drop(gone);
    assert!(counts.end(&q, 0));
    assert_eq!(live.try_recv(), Ok(Grant::Server(0)));
    assert_eq!(counts.in_flight[0].get(), 1);
    // Only a request gone: the slot is given back.
    let gone = wait(q.enter(want(1, &[0]), 100, &counts));
    drop(gone);
    assert!(!counts.end(&q, 0));
    assert_eq!(counts.in_flight[0].get(), 0);
    assert!(q.is_empty());
}

#[test]
fn a_free_server_is_taken_at_once() {
    let counts = Counts::full(2, 1);
    counts.give_back(1);
    let q = FairQueue::default();
    assert!(matches!(
        q.enter(want(1, &[0, 1]), 100, &counts),
        Entered::Now(1)
    ));
    assert!(q.is_empty());
}

#[test]
fn a_full_queue_sheds_the_lowest_priority_then_the_longest_lane() {
    let counts = Counts::full(1, 1);
    let q = FairQueue::default();
    let low = |lane| Want {
        priority: 0,
        ..want(lane, &[0])
    };
    let high = |lane| Want {
        priority: 9,
        ..want(lane, &[0])
    };
    let mut flood: Vec<_> = (0..3).map(|_| wait(q.enter(low(1), 4, &counts))).collect();
    let mut other = wait(q.enter(low(2), 4, &counts));
    // Full; a premium request sheds the newest of the longest low lane.
    let _p = wait(q.enter(high(3), 4, &counts));
    assert_eq!(flood[2].try_recv(), Ok(Grant::Shed));
    assert!(other.try_recv().is_err());
    // Another low request of a short lane sheds from the flood's lane...
    let _o = wait(q.enter(low(4), 4, &counts));
    assert_eq!(flood[1].try_recv(), Ok(Grant::Shed));
    // ...but the flood's own newcomer is refused: its lane is not shorter.
    assert!(matches!(q.enter(low(1), 4, &counts), Entered::Full));
    // Premium is never shed for lower priorities.
    let mut lows: Vec<_> = Vec::new();
    for lane in 10..12 {
        lows.push(q.enter(low(lane), 4, &counts));
    }
    assert!(lows.iter().all(|e| matches!(e, Entered::Full)));
    assert_eq!(q.len(), 4);
    assert!(flood[0].try_recv().is_err());
}
