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
pub mod check;
mod eject;
mod registry;
mod state;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use registry::{InFlight, LiveSet, PoolLive, Registry};
pub use state::{Health, PoolState, ServerState, WEIGHT_SCALE};

use crate::snapshot::SharedSnapshot;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the process's first call: the clock every health
/// time is on.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// `t` on the health clock (for a caller that has read the time already).
#[inline]
pub fn ms_at(t: Instant) -> u64 {
    t.saturating_duration_since(*EPOCH.get_or_init(Instant::now))
        .as_millis() as u64
}

/// How often the control thread looks at what is due.
const TICK: Duration = Duration::from_millis(100);

/// Runs the active checks and agent probes of every pool of the current
/// snapshot, each at its interval, and refreshes the pools' weight totals,
/// until `shutdown`. A reload's new pools and intervals apply at the next
/// tick; results land on the states, whatever snapshot is current by then.
pub async fn run(snapshot: std::sync::Arc<SharedSnapshot>, mut shutdown: watch::Receiver<bool>) {
    // Next due time (ms) of each pool's checks and agents, by pool name.
    let mut due: std::collections::HashMap<String, (u64, u64)> = Default::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let snap = snapshot.load_full();
        let now = now_ms();
        due.retain(|name, _| snap.config.pools.iter().any(|p| &p.name == name));
        for (pool, live) in snap.config.pools.iter().zip(snap.live.pools()) {
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

/// The live state of every server of `snap`'s pools in Prometheus text
/// format, appended to the recorder's exposition: rendered from the
/// current snapshot at scrape time, so a server removed by a reload
/// leaves no stale series. Labels are config names (pool, server id),
/// bounded by the config, never a host or tenant.
pub fn exposition(snap: &crate::snapshot::Snapshot) -> String {
    use crate::placement::choose::Admission;
    use std::fmt::Write;
    let now = now_ms();
    let families: [(&str, &str); 6] = [
        (
            "predictor_server_up",
            "1 when the server takes requests (up or draining), 0 when down (checks, agent, passive ejection).",
        ),
        (
            "predictor_server_draining",
            "1 when the server's agent says drain or weight 0: it keeps its sites, takes no new ones.",
        ),
        (
            "predictor_server_in_flight",
            "Requests sent to the server and not finished (until the response body ends).",
        ),
        (
            "predictor_server_latency_seconds",
            "Peak-EWMA of the server's time to response headers.",
        ),
        (
            "predictor_server_weight_ratio",
            "Effective weight as a share of the configured one (the agent's report).",
        ),
        (
            "predictor_server_ejections",
            "Passive ejections in a row (0 once the server has been good for a while).",
        ),
    ];
    let mut out = String::new();
    for (f, (name, help)) in families.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (pool, live) in snap.config.pools.iter().zip(snap.live.pools()) {
            for (conf, s) in pool.servers.iter().zip(live.servers()) {
                let h = s.health(now);
                let v = match f {
                    0 => f64::from(u8::from(h.admission != Admission::Down)),
                    1 => f64::from(u8::from(h.admission == Admission::Drain)),
                    2 => f64::from(s.in_flight()),
                    3 => f64::from(s.latency(now)) / 1e6,
                    4 => s.weight_ratio(),
                    _ => f64::from(h.ejections),
                };
                let _ = writeln!(
                    out,
                    "{name}{{pool=\"{}\",server=\"{}\"}} {v}",
                    pool.name, conf.id
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP predictor_pool_in_flight Requests in flight to the pool's servers.\n# TYPE predictor_pool_in_flight gauge"
    );
    for (pool, live) in snap.config.pools.iter().zip(snap.live.pools()) {
        let _ = writeln!(
            out,
            "predictor_pool_in_flight{{pool=\"{}\"}} {}",
            pool.name,
            live.totals().in_flight
        );
    }
    out
}
