//! Health and live load of the webservers.
//!
//! Owns the live state of every server ([`ServerState`]: requests in
//! flight, Peak-EWMA latency, the agent's report, active check and passive
//! ejection state) and of every pool ([`PoolState`]: total in flight, total
//! effective weight), keyed by server (pool, id, address) in a
//! [`Registry`] so that a reload carries them over: an ejected server stays
//! ejected, in-flight counts stay true. Each snapshot gets a [`LiveSet`]
//! bound to its config: per pool, the states in the config's server order,
//! so the request path reads them by index, with no lookup and no lock.
//!
//! Writers: the workers (in flight, latency, passive failures) and the
//! control thread ([`run`]: active checks, agents, pool weight totals).
//! Readers: placement, through [`ServerState::live`].

pub mod agent;
pub mod budget;
pub mod check;
mod eject;
mod registry;
mod state;
mod wait;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use registry::{InFlight, LiveSet, PoolLive, Registry};
pub use state::{Health, PoolState, ServerState, WEIGHT_SCALE};
pub use wait::{Enter, Ticket, Waited, granted_first};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// `t` since the process's first reading of this clock.
#[inline]
fn since_epoch(t: Instant) -> Duration {
    t.saturating_duration_since(*EPOCH.get_or_init(Instant::now))
}

/// Milliseconds since the process's first call: the clock every health
/// time is on.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// `t` on the health clock (for a caller that has read the time already).
#[inline]
pub fn ms_at(t: Instant) -> u64 {
    since_epoch(t).as_millis() as u64
}

/// Nanoseconds since the process's first call (never 0): the clock of
/// rate limits.
pub fn now_ns() -> u64 {
    ns_at(Instant::now())
}

/// `t` on the rate limits' clock.
#[inline]
pub fn ns_at(t: Instant) -> u64 {
    since_epoch(t).as_nanos() as u64 + 1
}

/// How often the control thread looks at what is due.
const TICK: Duration = Duration::from_millis(100);

/// Runs the active checks and agent probes of every pool of the current
/// snapshot, each at its interval, and refreshes the pools' weight totals,
/// until `shutdown`. A reload's new pools and intervals apply at the next
/// tick; results land on the states, whatever snapshot is current by then.
/// `current` gives the config serving and its pools' live states (the
/// caller reads them from the current snapshot).
pub async fn run(
    current: impl Fn() -> (std::sync::Arc<crate::config::Config>, LiveSet),
    mut shutdown: watch::Receiver<bool>,
) {
    // Next due time (ms) of each pool's checks and agents, by pool name.
    let mut due: std::collections::HashMap<String, (u64, u64)> = Default::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let (config, set) = current();
        let now = now_ms();
        due.retain(|name, _| config.pools.iter().any(|p| &p.name == name));
        for (pool, live) in config.pools.iter().zip(set.pools()) {
            live.refresh_weight(now);
            let (next_check, next_agent) = due.entry(pool.name.clone()).or_insert((now, now));
            if let Some(probe) = &pool.check {
                if now >= *next_check {
                    *next_check = now + probe.interval.as_millis() as u64;
                    for s in live.servers() {
                        tokio::spawn(check::run_one(s.clone(), probe.clone()));
                    }
                }
            }
            if let Some(agent) = pool.agent {
                if now >= *next_agent {
                    *next_agent = now + agent.interval.as_millis() as u64;
                    for s in live.servers() {
                        tokio::spawn(agent::probe(s.clone(), agent));
                    }
                }
            }
        }
    }
}
