//! A pool's fair queue: requests waiting for a server under its
//! in-flight ceiling, served fairly across tenants.
//!
//! Each tenant waiting has a lane; lanes take turns in deficit round
//! robin with unit costs: a lane at the head of the turn order is served
//! up to its tier's `share` requests, then goes to the back. A flooded
//! tenant therefore waits behind itself: when a slot frees on a server,
//! the next lane in turn that has a request able to use that server gets
//! it, whatever the number of requests the flooded lane holds.
//!
//! Bounded: at most `max` requests wait; a full queue sheds the newest
//! request of the lowest priority below the newcomer's, or among equal
//! priorities of the longest lane (the newcomer's own lane sheds the
//! newcomer). Waiters whose request went away (a timeout, a client gone)
//! are skipped and dropped as they are met.
//!
//! The queue never touches a server's count itself: the caller passes
//! [`Slots`], which takes a slot under the server's ceiling, or gives one
//! back. Everything happens under one lock per pool, taken only while
//! requests wait (the request path checks [`FairQueue::is_empty`] first).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio::sync::oneshot;

use crate::config::ServerIdx;
use crate::model::MAX_ATTEMPTS;

/// Taking and giving back a slot of a server under its ceiling.
pub trait Slots {
    /// Takes a slot of `server` if it is under its ceiling.
    fn take(&self, server: ServerIdx) -> bool;
    /// Gives back a slot taken and not used.
    fn give_back(&self, server: ServerIdx);
}

/// What a waiting request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A slot of this server, taken for the request.
    Server(ServerIdx),
    /// Shed to make room for a request of higher priority (or of a
    /// shorter lane).
    Shed,
}

/// A request asking for one of `servers`.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// The tenant's lane (its ring point: stable across reloads).
    pub lane: u32,
    /// Its tier's share per round and priority.
    pub share: u32,
    pub priority: u8,
    pub servers: &'a [ServerIdx],
}

/// The outcome of [`FairQueue::enter`].
#[derive(Debug)]
pub enum Entered {
    /// A server had room: its slot is taken.
    Now(ServerIdx),
    /// Queued: the grant comes on this channel.
    Wait(oneshot::Receiver<Grant>),
    /// The queue is full of requests of higher priority (or the
    /// newcomer's lane is the longest): shed at once.
    Full,
}

/// One pool's queue.
#[derive(Default)]
pub struct FairQueue {
    /// Requests waiting (a read without the lock, for the request path).
    waiting: AtomicUsize,
    inner: Mutex<Lanes>,
}

#[derive(Default)]
struct Lanes {
    lanes: HashMap<u32, Lane>,
    /// The turn order of the lanes with requests waiting.
    order: VecDeque<u32>,
    len: usize,
}

struct Lane {
    waiters: VecDeque<Waiter>,
    /// Requests this lane may still be served in its current turn.
    credit: u32,
    share: u32,
    priority: u8,
}

struct Waiter {
    servers: [ServerIdx; MAX_ATTEMPTS],
    n: u8,
    tx: oneshot::Sender<Grant>,
}

impl Waiter {
    fn wants(&self, s: ServerIdx) -> bool {
        self.servers[..usize::from(self.n)].contains(&s)
    }
}

impl std::fmt::Debug for FairQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairQueue")
            .field("waiting", &self.len())
            .finish()
    }
}

impl FairQueue {
    /// Whether no request waits (no lock).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.waiting.load(Relaxed) == 0
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.waiting.load(Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request that found its servers at their ceilings: a slot taken at
    /// once if one freed meanwhile, else a place in its tenant's lane (at
    /// most `max` waiting).
    pub fn enter(&self, want: Want<'_>, max: usize, slots: &impl Slots) -> Entered {
        let mut q = self.lock();
        if let Some(&s) = want.servers.iter().find(|&&s| slots.take(s)) {
            return Entered::Now(s);
        }
        if q.len >= max {
            q.purge();
        }
        if q.len >= max && !q.shed_for(&want) {
            self.waiting.store(q.len, Relaxed);
            return Entered::Full;
        }
        let (tx, rx) = oneshot::channel();
        let mut servers = [0; MAX_ATTEMPTS];
        let n = want.servers.len().min(MAX_ATTEMPTS);
        servers[..n].copy_from_slice(&want.servers[..n]);
        let waiter = Waiter {
            servers,
            n: n as u8,
            tx,
        };
        let lanes = &mut q.lanes;
        let lane = lanes.entry(want.lane).or_insert_with(|| Lane {
            waiters: VecDeque::new(),
            credit: want.share.max(1),
            share: want.share.max(1),
            priority: want.priority,
        });
        let new_lane = lane.waiters.is_empty();
        lane.waiters.push_back(waiter);
        if new_lane {
            q.order.push_back(want.lane);
        }
        q.len += 1;
        self.waiting.store(q.len, Relaxed);
        Entered::Wait(rx)
    }

    /// A slot of `server` was freed (already given back): the next lane
    /// in turn with a request that can use it gets it. Returns whether a
    /// request got it.
    pub fn freed(&self, server: ServerIdx, slots: &impl Slots) -> bool {
        let mut q = self.lock();
        let granted = q.grant(server, slots);
        self.waiting.store(q.len, Relaxed);
        granted
    }
}

impl Lanes {
    fn grant(&mut self, server: ServerIdx, slots: &impl Slots) -> bool {
        let mut taken = false;
        let mut pos = 0;
        while pos < self.order.len() {
            let key = self.order[pos];
            let Some(lane) = self.lanes.get_mut(&key) else {
                self.order.remove(pos);
                continue;
            };
            // The lane's first live request that can use the server.
            let mut found = None;
            let mut i = 0;
            while i < lane.waiters.len() {
                if lane.waiters[i].tx.is_closed() {
                    lane.waiters.remove(i);
                    self.len -= 1;
                } else if lane.waiters[i].wants(server) {
                    found = Some(i);
                    break;
                } else {
                    i += 1;
                }
            }
            if let Some(i) = found {
                if !taken {
                    if !slots.take(server) {
                        return false; // taken by a request not queued
                    }
                    taken = true;
                }
                let w = lane.waiters.remove(i).map(|w| w.tx);
                self.len -= 1;
                // A receiver gone since the check: the slot goes on to the
                // next request.
                let sent = w.is_some_and(|tx| tx.send(Grant::Server(server)).is_ok());
                if sent {
                    lane.credit = lane.credit.saturating_sub(1);
                    if lane.waiters.is_empty() {
                        self.lanes.remove(&key);
                        self.order.remove(pos);
                    } else if lane.credit == 0 {
                        lane.credit = lane.share;
                        self.order.remove(pos);
                        self.order.push_back(key);
                    }
                    return true;
                }
                continue;
            }
            if lane.waiters.is_empty() {
                self.lanes.remove(&key);
                self.order.remove(pos);
            } else {
                pos += 1;
            }
        }
        if taken {
            slots.give_back(server);
        }
        false
    }

    /// Drops the requests that went away.
    fn purge(&mut self) {
        let mut gone = 0;
        self.lanes.retain(|_, lane| {
            let before = lane.waiters.len();
            lane.waiters.retain(|w| !w.tx.is_closed());
            gone += before - lane.waiters.len();
            !lane.waiters.is_empty()
        });
        self.len -= gone;
        let lanes = &self.lanes;
        self.order.retain(|k| lanes.contains_key(k));
    }

    /// Makes room for `want` in a full queue: sheds the newest request of
    /// the lowest priority below its own, or of the longest lane of its
    /// priority when that lane is longer than the newcomer's would be.
    fn shed_for(&mut self, want: &Want<'_>) -> bool {
        let own = self.lanes.get(&want.lane).map_or(0, |l| l.waiters.len());
        let victim = self
            .lanes
            .iter()
            .filter(|(k, l)| {
                l.priority < want.priority
                    || (l.priority == want.priority
                        && **k != want.lane
                        && l.waiters.len() > own + 1)
            })
            .min_by_key(|(_, l)| (l.priority, std::cmp::Reverse(l.waiters.len())))
            .map(|(k, _)| *k);
        let Some(key) = victim else {
            return false;
        };
        let Some(lane) = self.lanes.get_mut(&key) else {
            return false;
        };
        if let Some(w) = lane.waiters.pop_back() {
            let _ = w.tx.send(Grant::Shed);
            self.len -= 1;
        }
        if lane.waiters.is_empty() {
            self.lanes.remove(&key);
            self.order.retain(|k| *k != key);
        }
        true
    }
}

#[cfg(test)]
mod tests;
