//! Waiting for a server under its ceiling: a pool's fair queue
//! ([`crate::isolation::queue`]) bound to the pool's live counts. A
//! request whose servers are all at their ceilings enters the queue and
//! holds a [`Ticket`]; the slot freed by a request ending is handed to
//! the next request in turn, already counted, so no request arriving
//! meanwhile can take it.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{InFlight, PoolLive};
use crate::config::ServerIdx;
use crate::isolation::queue::{Entered, Grant, Want};

/// What a request gets from a pool at its ceiling.
#[derive(Debug)]
pub enum Enter {
    /// A server had room after all.
    Now(InFlight),
    /// It waits for a slot.
    Wait(Ticket),
    /// The queue is full of requests that go first: shed.
    Full,
}

impl PoolLive {
    /// A request for one of `want.servers`, all at their ceilings when it
    /// looked: a slot if one freed, else a place in the fair queue.
    pub fn enter(self: &Arc<Self>, want: Want<'_>) -> Enter {
        match self.state().queue.enter(want, self.queue_max, &**self) {
            Entered::Now(s) => Enter::Now(self.adopt(s)),
            Entered::Wait(rx) => Enter::Wait(Ticket {
                pool: self.clone(),
                rx,
            }),
            Entered::Full => Enter::Full,
        }
    }

    /// Requests waiting in the pool's queue.
    pub fn queued(&self) -> usize {
        self.state().queue.len()
    }
}

/// A place in a pool's queue. Dropped before its grant is used (a
/// timeout, the client gone), it passes a slot it was given on.
#[derive(Debug)]
pub struct Ticket {
    pool: Arc<PoolLive>,
    rx: oneshot::Receiver<Grant>,
}

/// How a wait ended.
#[derive(Debug)]
pub enum Waited {
    Granted(InFlight),
    /// Shed for a request of higher priority (or a shorter lane).
    Shed,
}

impl Ticket {
    /// The pool it waits in.
    pub fn pool(&self) -> &Arc<PoolLive> {
        &self.pool
    }

    /// Waits for a slot (bound the wait with a timeout: dropping the
    /// ticket gives up the place).
    pub async fn wait(&mut self) -> Waited {
        match (&mut self.rx).await {
            Ok(Grant::Server(s)) => Waited::Granted(self.pool.adopt(s)),
            // A queue dropped with its pool (a reload that removed it).
            Ok(Grant::Shed) | Err(_) => Waited::Shed,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(Grant::Server(s)) = self.rx.try_recv() {
            // Granted as it gave up: the slot ends here, and goes on.
            drop(self.pool.adopt(s));
        }
    }
}

/// The servers of `servers` with the one granted first (the rest kept in
/// order, as retries).
pub fn granted_first(servers: &mut [ServerIdx], granted: ServerIdx) {
    if let Some(i) = servers.iter().position(|&s| s == granted) {
        servers[..=i].rotate_right(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RawDocument};
    use crate::health::LiveSet;

    fn pool(ceiling: u32) -> Arc<PoolLive> {
        let toml = format!(
            "tenants = \"t\"\nmigration = \"m\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n\
             [tiers.a]\npool = \"p\"\n[pools.p]\nmax_in_flight = {ceiling}\n\
             servers = [{{ id = \"a\", address = \"127.0.0.1:1\" }}, {{ id = \"b\", address = \"127.0.0.1:2\", max_in_flight = 5 }}]\n"
        );
        let c =
            Config::try_from(RawDocument::parse("predictor.toml".into(), toml).unwrap()).unwrap();
        LiveSet::fresh(&c).pool(0).clone()
    }

    fn want(servers: &[ServerIdx]) -> Want<'_> {
        Want {
            lane: 1,
            share: 1,
            priority: 0,
            servers,
        }
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_waiting_request() {
        let p = pool(1);
        assert_eq!((p.server(0).ceiling(), p.server(1).ceiling()), (1, 5));
        let first = p.try_begin(0).unwrap();
        assert!(p.try_begin(0).is_none(), "at its ceiling");
        let Enter::Wait(mut ticket) = p.enter(want(&[0])) else {
            panic!("expected to wait")
        };
        assert_eq!(p.queued(), 1);
        drop(first);
        // Handed over, never free: nobody else could take it meanwhile.
        assert!(p.try_begin(0).is_none());
        let Waited::Granted(f) = ticket.wait().await else {
            panic!("expected a slot")
        };
        assert_eq!((f.server(), p.server(0).in_flight(), p.queued()), (0, 1, 0));
        drop(f);
        assert_eq!(p.totals().in_flight, 0);
    }

    #[test]
    fn a_request_that_gives_up_loses_no_slot() {
        let p = pool(1);
        let first = p.try_begin(0).unwrap();
        // Gave up before a grant.
        let Enter::Wait(ticket) = p.enter(want(&[0])) else {
            panic!()
        };
        drop(ticket);
        drop(first);
        assert_eq!(p.server(0).in_flight(), 0);
        // Gave up as the grant came.
        let first = p.try_begin(0).unwrap();
        let Enter::Wait(ticket) = p.enter(want(&[0])) else {
            panic!()
        };
        drop(first);
        assert_eq!(p.server(0).in_flight(), 1, "granted");
        drop(ticket);
        assert_eq!((p.server(0).in_flight(), p.totals().in_flight), (0, 0));
    }

    #[test]
    fn the_agent_lowers_the_ceiling_and_zero_is_none() {
        let p = pool(0);
        assert_eq!(p.server(0).ceiling(), 0);
        let many: Vec<_> = (0..100).map(|_| p.try_begin(0).unwrap()).collect();
        p.server(1).agent_replied(&"maxconn:2".parse().unwrap());
        assert_eq!(p.server(1).ceiling(), 2, "lower than its 5");
        let two: Vec<_> = (0..2).map(|_| p.try_begin(1).unwrap()).collect();
        assert!(p.try_begin(1).is_none());
        p.server(1).agent_replied(&"maxconn:0".parse().unwrap());
        assert_eq!(p.server(1).ceiling(), 5);
        drop((many, two));
    }

    #[test]
    fn granted_goes_first_and_the_rest_keep_their_order() {
        let mut s = [4, 7, 9, 2];
        granted_first(&mut s, 9);
        assert_eq!(s, [9, 4, 7, 2]);
        granted_first(&mut s, 9);
        assert_eq!(s, [9, 4, 7, 2]);
    }
}
