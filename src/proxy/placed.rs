//! A request placed on a pool's servers: the choice among them by live
//! load (the pure [`crate::placement::choose`] fed with the servers' live
//! state), a slot on one of them under its in-flight ceiling (or a place
//! in the pool's fair queue when every one is at its ceiling), the count
//! of the request in flight, and what its outcome teaches the pool's
//! health (latency, passive ejection).

use std::net::SocketAddr;
use std::time::Instant;

use crate::config::{PoolId, ServerIdx, TierId};
use crate::health::{self, Enter, InFlight, PoolLive, Ticket, granted_first};
use crate::isolation::queue::Want;
use crate::placement::MAX_ATTEMPTS;
use crate::placement::choose::{self, Live};
use crate::snapshot::Snapshot;

use super::error::{ProxyError, ShedReason};
use super::upstream::Exchange;

/// A request on its way to a pool's servers.
pub struct Placed {
    slot: Slot,
    /// The servers tried, in order, as pool indexes (`targets` holds their
    /// addresses).
    servers: [ServerIdx; MAX_ATTEMPTS],
    n: u8,
    sent_at: Instant,
}

/// The request's slot on a server, or its place in the queue.
enum Slot {
    Held(InFlight),
    Waiting(Ticket),
}

/// Chooses the servers a request for `tenant` tries, writes their
/// addresses to `targets` and returns how many, with the request counted
/// in flight on the first (the first under its ceiling, moved to the
/// front), or queued when all are at their ceilings ([`Placed::ticket`]).
/// Every server down: `NoServer` (a 503); a full queue: `Shed`.
/// `sent_at` is the request's start: the servers' live signals are read
/// at it, and its latency counted from it.
pub fn place(
    snap: &Snapshot,
    tenant: u32,
    tier: TierId,
    pool: PoolId,
    point: u32,
    targets: &mut [SocketAddr; MAX_ATTEMPTS],
    sent_at: Instant,
) -> Result<(usize, Placed), ProxyError> {
    let t = snap.config.tier(tier);
    let live = snap.live.pool(pool);
    let grows = t.k_max > t.k_min;
    let k = if grows {
        live.state().hot_k(point, t.k_min, t.k_max)
    } else {
        t.k_min
    };
    let attempts = snap.config.limits.upstream_attempts.clamp(1, MAX_ATTEMPTS);
    // The affinity set and two spill candidates, or the attempts.
    let head = (k + 2).max(attempts).min(MAX_ATTEMPTS);
    let mut prefs = [0; MAX_ATTEMPTS];
    let n = snap.servers(tenant, pool, point, &mut prefs[..head]);
    let now = health::ms_at(sent_at);
    let mut signals = [Live::IDLE; MAX_ATTEMPTS];
    for (l, &s) in signals.iter_mut().zip(&prefs[..n]) {
        *l = live.server(s).live(now);
    }
    let mut servers = [0; MAX_ATTEMPTS];
    let ordered = choose::order(
        &prefs[..n],
        &signals[..n],
        live.totals(),
        k,
        snap.config.placement.balance_factor,
        &mut servers[..attempts],
    );
    if grows {
        let hold = snap.config.placement.hot_hold;
        live.state()
            .hot_record(point, ordered.pressure, now, hold, (t.k_min, t.k_max));
    }
    let p = snap.config.pool(pool);
    if ordered.n == 0 {
        return Err(ProxyError::NoServer {
            pool: p.name.clone(),
        });
    }
    let n = ordered.n;
    let iso = snap.config.isolation.tiers.get(usize::from(tier));
    let want = Want {
        lane: point,
        share: iso.map_or(1, |l| l.share),
        priority: iso.map_or(0, |l| l.priority),
        servers: &servers[..n],
    };
    let slot = match slot(live, want) {
        Enter::Now(f) => {
            granted_first(&mut servers[..n], f.server());
            Slot::Held(f)
        }
        Enter::Wait(ticket) => {
            snap.tenants_live.queued(tenant);
            Slot::Waiting(ticket)
        }
        Enter::Full => {
            return Err(ProxyError::Shed {
                pool: p.name.as_str().into(),
                reason: ShedReason::QueueFull,
                retry_after: retry_after(live),
            });
        }
    };
    for (t, &s) in targets.iter_mut().zip(&servers[..n]) {
        *t = p.servers[usize::from(s)].address;
    }
    let placed = Placed {
        slot,
        servers,
        n: n as u8,
        sent_at,
    };
    Ok((n, placed))
}

/// A slot on the first of `want.servers` under its ceiling, or the queue
/// (entered at once while others wait: a request arriving does not pass
/// them).
#[inline]
fn slot(live: &std::sync::Arc<PoolLive>, want: Want<'_>) -> Enter {
    if live.state().queue.is_empty() {
        for &s in want.servers {
            if let Some(f) = live.try_begin(s) {
                return Enter::Now(f);
            }
        }
    }
    live.enter(want)
}

/// The `Retry-After` of a request shed by `pool`: its queue's timeout.
pub fn retry_after(pool: &PoolLive) -> u32 {
    pool.queue_timeout.as_secs().clamp(1, 60) as u32
}

impl Placed {
    /// The pool's live state.
    pub fn pool(&self) -> &std::sync::Arc<PoolLive> {
        match &self.slot {
            Slot::Held(f) => f.pool(),
            Slot::Waiting(t) => t.pool(),
        }
    }

    /// The pool's retry budget.
    pub fn retry_budget(&self) -> &crate::health::budget::RetryBudget {
        &self.pool().state().retry
    }

    /// The place in the queue of a request whose servers were all at
    /// their ceilings.
    pub fn ticket(&mut self) -> Option<&mut Ticket> {
        match &mut self.slot {
            Slot::Waiting(t) => Some(t),
            Slot::Held(_) => None,
        }
    }

    /// The queue granted `f` at `at`: its server goes first in the
    /// servers tried and in `targets` (their addresses, in the same
    /// order), and its latency is counted from `at` (the wait is not the
    /// server's).
    pub fn granted(&mut self, f: InFlight, targets: &mut [SocketAddr], at: Instant) {
        self.sent_at = at;
        let n = usize::from(self.n);
        if let Some(i) = self.servers[..n].iter().position(|&s| s == f.server()) {
            self.servers[..=i].rotate_right(1);
            targets[..=i].rotate_right(1);
        }
        self.slot = Slot::Held(f);
    }

    /// Records the outcome: servers that could not be reached count a
    /// failure, the one that answered its latency and whether its status
    /// is a failure; the in-flight count moves to the server that
    /// answered. Returns the count, to be held until the body ends.
    pub fn outcome(
        self,
        targets: &[SocketAddr],
        result: &Result<Exchange, ProxyError>,
        at: Instant,
    ) -> Option<InFlight> {
        let Slot::Held(mut in_flight) = self.slot else {
            return None; // never sent
        };
        let now = health::ms_at(at);
        let tried = &self.servers[..usize::from(self.n)];
        // The server that answered, once the pool's borrow has ended.
        let mut answered = None;
        {
            let pool = in_flight.pool();
            let eject = &pool.eject;
            match result {
                Ok(ex) => {
                    let i = usize::from(ex.attempt).min(tried.len() - 1);
                    for &s in &tried[..i] {
                        pool.server(s).failed(now, eject);
                    }
                    let s = pool.server(tried[i]);
                    let rtt = at.saturating_duration_since(self.sent_at);
                    s.responded(rtt.as_micros() as u32, now);
                    if eject.on.fails(ex.response.status().as_u16()) {
                        s.failed(now, eject);
                    } else {
                        s.succeeded(now, eject);
                    }
                    answered = Some(tried[i]);
                }
                Err(e) => {
                    if let Some(addr) = e.failed_server() {
                        // Every server up to the one that failed last.
                        let last = targets.iter().position(|t| *t == addr);
                        for &s in &tried[..last.map_or(0, |i| i + 1).min(tried.len())] {
                            pool.server(s).failed(now, eject);
                        }
                    }
                }
            }
        }
        if let Some(s) = answered {
            in_flight.move_to(s);
        }
        Some(in_flight)
    }
}
