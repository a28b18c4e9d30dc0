//! The live state of one server and of one pool: atomics written by the
//! workers (in flight, latency, passive failures) and by the control
//! thread (checks, agent), read by every request's placement.
//!
//! Times are milliseconds on the process clock ([`super::now_ms`]), passed
//! in by the caller so that the transitions are tested without sleeping.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::agent::{AdminState, AgentReply, WeightReport};
use super::check::RiseFall;
use std::time::Duration;

use crate::config::Eject;
use crate::placement::choose::{Admission, Live, Pressure};
use crate::placement::hot::{self, Hot};

/// Peak-EWMA time constant: a latency peak is forgotten by 1/e in this
/// long (linkerd's and Finagle's default).
const DECAY_MS: f64 = 10_000.0;

/// Effective weights are in hundredths of a configured weight unit, so an
/// agent's `75%` keeps integer arithmetic.
pub const WEIGHT_SCALE: u32 = 100;

/// Pool-wide state: the bounded-load cap's sums, and the hot tenants.
#[derive(Debug)]
pub struct PoolState {
    pub(super) in_flight: AtomicU32,
    /// Sum of the effective weights of the servers not down; refreshed by
    /// the control thread.
    pub(super) weight: AtomicU32,
    /// Hot tenants' records ([`Hot`] packed), by ring point's low bits.
    hot: Box<[AtomicU64]>,
    /// How many requests may go to a second server.
    pub retry: super::budget::RetryBudget,
    /// Requests waiting for a server under its ceiling.
    pub queue: crate::isolation::queue::FairQueue,
}

/// Slots of a pool's hot-tenant table (8 bytes each).
const HOT_SLOTS: usize = 1024;

impl Default for PoolState {
    fn default() -> Self {
        PoolState {
            in_flight: AtomicU32::new(0),
            weight: AtomicU32::new(0),
            hot: (0..HOT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            retry: Default::default(),
            queue: Default::default(),
        }
    }
}

impl PoolState {
    fn slot(&self, key: u32) -> &AtomicU64 {
        &self.hot[key as usize & (HOT_SLOTS - 1)]
    }

    /// The affinity set size of the tenant at ring point `key` now.
    #[inline]
    pub fn hot_k(&self, key: u32, k_min: usize, k_max: usize) -> usize {
        let h = Hot::unpack(self.slot(key).load(Relaxed));
        if h.key == key && h != Hot::default() {
            h.k(k_min, k_max)
        } else {
            k_min
        }
    }

    /// Counts one request's pressure towards the tenant's growth or
    /// shrink; writes only when its record changes.
    #[inline]
    pub fn hot_record(
        &self,
        key: u32,
        p: Pressure,
        now_ms: u64,
        hold: Duration,
        k: (usize, usize),
    ) {
        let slot = self.slot(key);
        let old = slot.load(Relaxed);
        let now_s = (now_ms / 1000) as u16;
        let hold_s = hold.as_secs().clamp(1, 3600) as u16;
        if let Some(next) = hot::step(Hot::unpack(old), key, p, now_s, hold_s, k.0, k.1) {
            // A lost race loses one count: no retry on the request path.
            let _ = slot.compare_exchange(old, next.pack(), Relaxed, Relaxed);
        }
    }
}

/// One server's live state, keyed by (pool, id, address) and carried
/// across reloads.
#[derive(Debug)]
pub struct ServerState {
    pub id: Box<str>,
    pub address: SocketAddr,
    /// Configured weight.
    weight: u32,
    in_flight: AtomicU32,
    /// The configured in-flight ceiling (0: none) and the agent's
    /// `maxconn` (0: none); the lower of the two applies.
    ceiling: AtomicU32,
    agent_maxconn: AtomicU32,
    /// Peak-EWMA of the time to response headers, µs (0: none yet).
    latency_us: AtomicU32,
    latency_at_ms: AtomicU64,
    /// The agent's last word: admin state, operational down, weight.
    agent_admin: AtomicU8,
    agent_down: AtomicBool,
    /// Effective weight ([`WEIGHT_SCALE`] per configured unit).
    effective: AtomicU32,
    /// Active checks: down after `fall` failures, up after `rise`.
    check_down: AtomicBool,
    check_run: Mutex<RiseFall>,
    /// Passive: consecutive failures of real traffic, ejections in a row,
    /// and the end of the current ejection.
    fails: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
}

/// Why a server is down, for operators (`/status`, `predictor route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub admission: Admission,
    pub check_down: bool,
    pub agent: AdminState,
    pub agent_down: bool,
    /// Milliseconds of ejection left.
    pub ejected_for_ms: u64,
    pub ejections: u32,
}

impl ServerState {
    pub fn new(id: &str, address: SocketAddr, weight: u32) -> ServerState {
        ServerState {
            id: id.into(),
            address,
            weight,
            in_flight: AtomicU32::new(0),
            ceiling: AtomicU32::new(0),
            agent_maxconn: AtomicU32::new(0),
            latency_us: AtomicU32::new(0),
            latency_at_ms: AtomicU64::new(0),
            agent_admin: AtomicU8::new(AdminState::Ready as u8),
            agent_down: AtomicBool::new(false),
            effective: AtomicU32::new(weight * WEIGHT_SCALE),
            check_down: AtomicBool::new(false),
            check_run: Mutex::new(RiseFall::default()),
            fails: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
        }
    }

    /// The configured weight (what the state was created with).
    pub fn configured_weight(&self) -> u32 {
        self.weight
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// The in-flight ceiling now (0: none): the configured one, lowered
    /// by the agent's `maxconn`.
    pub fn ceiling(&self) -> u32 {
        match (self.ceiling.load(Relaxed), self.agent_maxconn.load(Relaxed)) {
            (c, 0) => c,
            (0, a) => a,
            (c, a) => c.min(a),
        }
    }

    /// The configured ceiling (set as a snapshot binds the server).
    pub(super) fn set_ceiling(&self, c: u32) {
        self.ceiling.store(c, Relaxed);
    }

    /// Counts one more request in flight if the server is under its
    /// ceiling.
    #[inline]
    pub(super) fn try_add_in_flight(&self) -> bool {
        let cap = self.ceiling();
        if cap == 0 {
            self.in_flight.fetch_add(1, Relaxed);
            return true;
        }
        let mut n = self.in_flight.load(Relaxed);
        loop {
            if n >= cap {
                return false;
            }
            match self
                .in_flight
                .compare_exchange_weak(n, n + 1, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => n = seen,
            }
        }
    }

    pub(super) fn add_in_flight(&self, delta: i32) {
        if delta >= 0 {
            self.in_flight.fetch_add(delta as u32, Relaxed);
        } else {
            self.in_flight.fetch_sub(delta.unsigned_abs(), Relaxed);
        }
    }

    pub fn admission(&self, now_ms: u64) -> Admission {
        let admin = AdminState::from_u8(self.agent_admin.load(Relaxed));
        if self.check_down.load(Relaxed)
            || self.agent_down.load(Relaxed)
            || admin == AdminState::Maint
            || now_ms < self.ejected_until_ms.load(Relaxed)
        {
            Admission::Down
        } else if admin == AdminState::Drain || self.effective.load(Relaxed) == 0 {
            Admission::Drain
        } else {
            Admission::Up
        }
    }

    /// The signals placement weighs, at `now_ms`.
    #[inline]
    pub fn live(&self, now_ms: u64) -> Live {
        Live {
            admission: self.admission(now_ms),
            weight: self.effective.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            latency_us: self.latency(now_ms),
        }
    }

    /// The effective weight, counted in the pool's total when not down.
    pub fn effective_weight(&self) -> u32 {
        self.effective.load(Relaxed)
    }

    /// The effective weight as a share of the configured one (what the
    /// agent reports: 0.75 for "75%").
    pub fn weight_ratio(&self) -> f64 {
        f64::from(self.effective_weight()) / f64::from((self.weight * WEIGHT_SCALE).max(1))
    }

    /// The Peak-EWMA latency, decaying towards 0 while no answer updates
    /// it (so a server that had one slow spell gets traffic again).
    pub fn latency(&self, now_ms: u64) -> u32 {
        let l = self.latency_us.load(Relaxed);
        if l == 0 {
            return 0;
        }
        let idle = now_ms.saturating_sub(self.latency_at_ms.load(Relaxed));
        if idle < 1_000 {
            l
        } else {
            (f64::from(l) * DECAY_MS / (DECAY_MS + idle as f64)) as u32
        }
    }

    /// An answer came after `rtt_us`: a peak is taken at once, a lower
    /// value blends in by the time since the last one.
    pub fn responded(&self, rtt_us: u32, now_ms: u64) {
        let rtt_us = rtt_us.max(1);
        let prev = self.latency_us.load(Relaxed);
        let at = self.latency_at_ms.swap(now_ms, Relaxed);
        let next = if prev == 0 || rtt_us >= prev {
            rtt_us
        } else {
            let w = (-(now_ms.saturating_sub(at) as f64) / DECAY_MS).exp();
            (f64::from(prev) * w + f64::from(rtt_us) * (1.0 - w)) as u32
        };
        self.latency_us.store(next.max(1), Relaxed);
    }

    /// Real traffic got an answer that is not a failure.
    #[inline]
    pub fn succeeded(&self, now_ms: u64, eject: &Eject) {
        // Loads first: no write to a shared line on the common path.
        if self.fails.load(Relaxed) != 0 {
            self.fails.store(0, Relaxed);
        }
        if self.ejections.load(Relaxed) != 0 {
            let until = self.ejected_until_ms.load(Relaxed);
            // Good for a while after the last ejection: the backoff resets.
            if now_ms >= until + super::eject::backoff(eject, 1).as_millis() as u64 {
                self.ejections.store(0, Relaxed);
            }
        }
    }

    /// Real traffic failed (connect error, timeout, or a failing status).
    /// Returns whether this failure ejected the server.
    pub fn failed(&self, now_ms: u64, eject: &Eject) -> bool {
        if eject.failures == 0 {
            return false;
        }
        let n = self.fails.fetch_add(1, Relaxed) + 1;
        if n < eject.failures || now_ms < self.ejected_until_ms.load(Relaxed) {
            return false;
        }
        let k = self.ejections.fetch_add(1, Relaxed) + 1;
        let until = now_ms + super::eject::backoff(eject, k).as_millis() as u64;
        self.ejected_until_ms.store(until, Relaxed);
        // Back on trial: the first failure after the ejection ends ejects
        // again (for longer), a success clears it.
        self.fails.store(eject.failures - 1, Relaxed);
        tracing::warn!(server = %self.id, address = %self.address, failures = n, ejections = k, for_ms = until - now_ms, "server ejected");
        true
    }

    /// The result of one active check; returns the new state on a change.
    pub fn checked(&self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        let mut run = self.check_run.lock().unwrap_or_else(|e| e.into_inner());
        let change = run.observe(ok, rise, fall);
        if let Some(up) = change {
            self.check_down.store(!up, Relaxed);
            if up {
                tracing::info!(server = %self.id, address = %self.address, "server up (checks)");
            } else {
                tracing::warn!(server = %self.id, address = %self.address, "server down (checks)");
            }
        }
        change
    }

    /// Applies an agent's reply: only what it names changes.
    pub fn agent_replied(&self, reply: &AgentReply) {
        if let Some(admin) = reply.admin {
            let old = self.agent_admin.swap(admin as u8, Relaxed);
            if old != admin as u8 {
                tracing::info!(server = %self.id, state = ?admin, "agent changed the server's state");
            }
        }
        if let Some(down) = reply.down {
            self.agent_down.store(down, Relaxed);
        }
        if let Some(m) = reply.maxconn {
            self.agent_maxconn.store(m, Relaxed);
        }
        match reply.weight {
            Some(WeightReport::Percent(p)) => self
                .effective
                .store(self.weight * WEIGHT_SCALE * p / 100, Relaxed),
            Some(WeightReport::Absolute(w)) => self.effective.store(w * WEIGHT_SCALE, Relaxed),
            None => {}
        }
    }

    pub fn health(&self, now_ms: u64) -> Health {
        Health {
            admission: self.admission(now_ms),
            check_down: self.check_down.load(Relaxed),
            agent: AdminState::from_u8(self.agent_admin.load(Relaxed)),
            agent_down: self.agent_down.load(Relaxed),
            ejected_for_ms: self.ejected_until_ms.load(Relaxed).saturating_sub(now_ms),
            ejections: self.ejections.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EjectOn;

    fn eject(failures: u32) -> Eject {
        Eject {
            failures,
            on: EjectOn::Gateway,
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
        }
    }

    fn server() -> ServerState {
        ServerState::new("web-1", "127.0.0.1:80".parse().unwrap(), 1)
    }

    #[test]
    fn consecutive_failures_eject_with_doubling_backoff() {
        let s = server();
        let e = eject(3);
        assert!(!s.failed(0, &e));
        assert!(!s.failed(1, &e));
        s.succeeded(2, &e);
        assert!(
            !s.failed(3, &e) && !s.failed(4, &e),
            "a success resets the run"
        );
        assert!(s.failed(5, &e), "third in a row");
        assert_eq!(s.admission(6), Admission::Down);
        assert_eq!(s.admission(10_005), Admission::Up, "back after 10 s");
        // The first failure on trial ejects again, for twice as long.
        assert!(s.failed(10_006, &e));
        assert_eq!(s.admission(10_006 + 19_999), Admission::Down);
        assert_eq!(s.admission(10_006 + 20_000), Admission::Up);
        // A success long after the ejection clears the backoff.
        s.succeeded(10_006 + 20_000 + 10_000, &e);
        assert_eq!(s.health(0).ejections, 0);
    }

    #[test]
    fn ejection_can_be_turned_off() {
        let s = server();
        for t in 0..100 {
            assert!(!s.failed(t, &eject(0)));
        }
        assert_eq!(s.admission(100), Admission::Up);
    }

    #[test]
    fn peak_ewma_takes_peaks_at_once_and_forgets_slowly() {
        let s = server();
        s.responded(1_000, 0);
        assert_eq!(s.latency(0), 1_000);
        s.responded(9_000, 10);
        assert_eq!(s.latency(10), 9_000, "a peak counts at once");
        // A fast answer 10 s later weighs 1 - 1/e.
        s.responded(1_000, 10_010);
        let l = s.latency(10_010);
        assert!((3_900..4_000).contains(&l), "{l}");
        // No traffic for 10 s: halves.
        assert_eq!(s.latency(20_010), l / 2);
    }

    #[test]
    fn the_agent_sets_weight_and_state() {
        let s = server();
        s.agent_replied(&"75%".parse().unwrap());
        assert_eq!(s.effective_weight(), 75);
        s.agent_replied(&"drain".parse().unwrap());
        assert_eq!(s.admission(0), Admission::Drain);
        assert_eq!(s.effective_weight(), 75, "unnamed values are kept");
        s.agent_replied(&"maint".parse().unwrap());
        assert_eq!(s.admission(0), Admission::Down);
        s.agent_replied(&"ready 100%".parse().unwrap());
        assert_eq!(s.admission(0), Admission::Up);
        s.agent_replied(&"down#disk full".parse().unwrap());
        assert_eq!(s.admission(0), Admission::Down);
        s.agent_replied(&"up".parse().unwrap());
        assert_eq!(s.admission(0), Admission::Up);
        s.agent_replied(&"0%".parse().unwrap());
        assert_eq!(
            s.admission(0),
            Admission::Drain,
            "weight 0 takes no new sites"
        );
        s.agent_replied(&"weight:3".parse().unwrap());
        assert_eq!(s.effective_weight(), 300);
    }
}
