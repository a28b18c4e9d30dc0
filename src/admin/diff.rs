//! `predictor diff`: what a change of the config folder moves, before it
//! is applied. Tenants and hosts that change route, by move (from one
//! state and pool to another) and by filer ([`Impact`]); the capacity
//! units each webserver serves before and after, against its bound (the
//! sites of a server are those homed on it by placement, counted once
//! migrated); whether the serving folder's `[reload]` guard would hold
//! the change; and, given an access log, the share of its requests whose
//! site moves.

use std::collections::HashMap;
use std::fmt::Write;

use serde_json::json;

use crate::placement::bounded;
use crate::routing::migration::MigrationState;
use crate::snapshot::Snapshot;
use crate::snapshot::held;
use crate::snapshot::impact::{Impact, move_words, route};

/// One server's capacity units served, before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUnits {
    pub pool: String,
    pub server: String,
    pub before: u64,
    pub after: u64,
    /// Its bounded-load cap after the change.
    pub cap: u64,
}

/// A change measured.
#[derive(Debug, Clone)]
pub struct Diff {
    pub impact: Impact,
    pub held: bool,
    /// Servers whose units change.
    pub servers: Vec<ServerUnits>,
    /// Requests of moving sites, requests counted, and where the counts
    /// come from.
    pub requests: Option<(f64, f64, &'static str)>,
}

/// How many requests each tenant (by name) takes: from an access log, or
/// from a running instance's `/top`.
pub struct Weights {
    pub source: &'static str,
    pub per_tenant: HashMap<String, f64>,
}

impl Weights {
    /// The requests of an access log (JSON lines with `tenant`).
    pub fn from_log(log: &str) -> Weights {
        let mut per: HashMap<String, f64> = HashMap::new();
        for line in log.lines() {
            // The tenant member is written as `"tenant":"NAME"` (or null).
            let Some(rest) = line.split_once("\"tenant\":\"").map(|(_, r)| r) else {
                continue;
            };
            if let Some((name, _)) = rest.split_once('"') {
                *per.entry(name.to_string()).or_default() += 1.0;
            }
        }
        Weights {
            source: "the access log",
            per_tenant: per,
        }
    }

    /// Requests per second of the tenants a `/top` JSON answer lists.
    pub fn from_top(top: &serde_json::Value) -> Weights {
        let per_tenant = top["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some((
                    t["tenant"].as_str()?.to_string(),
                    t["requests_per_s"].as_f64()?,
                ))
            })
            .collect();
        Weights {
            source: "the running instance (its busiest tenants over 15 min, requests/s)",
            per_tenant,
        }
    }
}

/// Capacity units served (migrated sites homed there) per (pool, server).
fn served(snap: &Snapshot) -> HashMap<(String, String), u64> {
    let mut out = HashMap::new();
    for (t, r) in snap.tenants.tenants() {
        let (state, _) = snap.migration.of(t, r.filer);
        if state != MigrationState::Migrated {
            continue;
        }
        let tier = snap.config.tier(r.tier);
        let pool = snap.config.pool(tier.pool);
        if let Some(home) = snap.placement.home(t) {
            let id = pool.servers[usize::from(home)].id.clone();
            *out.entry((pool.name.clone(), id)).or_default() += u64::from(tier.cost);
        }
    }
    out
}

impl Diff {
    /// What replacing `before` by `after` moves; `weights` weigh the
    /// share of requests that moves.
    pub fn of(before: &Snapshot, after: &Snapshot, weights: Option<&Weights>) -> Diff {
        let impact = Impact::of(before, after);
        let held = held::holds(&before.config.reload, &impact);
        let (b, a) = (served(before), served(after));
        let caps = bounded::caps(&after.config, after.tenants.records());
        let mut servers = Vec::new();
        for (p, pool) in after.config.pools.iter().enumerate() {
            for (s, server) in pool.servers.iter().enumerate() {
                let key = (pool.name.clone(), server.id.clone());
                let (before, after) = (
                    b.get(&key).copied().unwrap_or(0),
                    a.get(&key).copied().unwrap_or(0),
                );
                if before != after {
                    servers.push(ServerUnits {
                        pool: key.0,
                        server: key.1,
                        before,
                        after,
                        cap: caps[p][s],
                    });
                }
            }
        }
        let requests = weights.map(|w| {
            let (m, t) = moving_requests(before, after, &w.per_tenant);
            (m, t, w.source)
        });
        Diff {
            impact,
            held,
            servers,
            requests,
        }
    }

    pub fn text(&self) -> String {
        let i = &self.impact;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tenants:   {} -> {}; {} change route ({:.2} %: {} moved, {} gone), {} new",
            i.tenants_before,
            i.tenants_after,
            i.moved + i.gone,
            i.changed_share() * 100.0,
            i.moved,
            i.gone,
            i.new
        );
        let _ = writeln!(
            out,
            "hosts:     {} -> {} ({:.2} % fewer)",
            i.hosts_before,
            i.hosts_after,
            i.dropped_hosts_share() * 100.0
        );
        let _ = writeln!(
            out,
            "reload:    {}",
            if self.held {
                "would be HELD by the serving folder's [reload] guard (confirm with predictor reload --confirm)"
            } else {
                "would be installed"
            }
        );
        if let Some((moving, total, source)) = self.requests {
            let _ = writeln!(
                out,
                "requests:  {:.2} % move ({moving:.0} of {total:.0}, from {source})",
                moving * 100.0 / total.max(1.0)
            );
        }
        if !i.moves.is_empty() {
            out.push_str("moves:\n");
            for ((from, to), n) in &i.moves {
                let _ = writeln!(out, "  {n:>9}  {}", move_words(from, to));
            }
            out.push_str("by filer:\n");
            for (filer, moves) in &i.by_filer {
                for ((from, to), n) in moves {
                    let _ = writeln!(out, "  {filer:<16} {n:>9}  {}", move_words(from, to));
                }
            }
        }
        if !self.servers.is_empty() {
            out.push_str(
                "servers:   (capacity units of the sites served, before -> after, of its bound)\n",
            );
            for s in &self.servers {
                let over = if s.after > s.cap { "  OVER" } else { "" };
                let _ = writeln!(
                    out,
                    "  {}/{:<16} {:>9} -> {:<9} of {}{over}",
                    s.pool, s.server, s.before, s.after, s.cap
                );
            }
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let i = &self.impact;
        let moves = |m: &std::collections::BTreeMap<crate::snapshot::impact::Move, usize>| {
            m.iter()
                .map(|((from, to), n)| {
                    json!({
                        "from": from.as_ref().map(|r| r.to_string()),
                        "to": to.as_ref().map(|r| r.to_string()),
                        "tenants": n,
                    })
                })
                .collect::<Vec<_>>()
        };
        json!({
            "tenants": {"before": i.tenants_before, "after": i.tenants_after, "moved": i.moved, "gone": i.gone, "new": i.new, "changed_share": i.changed_share()},
            "hosts": {"before": i.hosts_before, "after": i.hosts_after, "dropped_share": i.dropped_hosts_share()},
            "held": self.held,
            "moves": moves(&i.moves),
            "by_filer": i.by_filer.iter().map(|(f, m)| (f.clone(), serde_json::Value::from(moves(m)))).collect::<serde_json::Map<_, _>>(),
            "servers": self.servers.iter().map(|s| json!({"pool": s.pool, "server": s.server, "units_before": s.before, "units_after": s.after, "cap": s.cap})).collect::<Vec<_>>(),
            "requests": self.requests.map(|(m, t, s)| json!({"moving": m, "total": t, "source": s})),
        })
    }
}

/// The numbers of the tenants of `s` named in `wanted`.
fn index<'s>(s: &'s Snapshot, wanted: &HashMap<String, f64>) -> HashMap<&'s str, u32> {
    s.tenants
        .tenants()
        .map(|(t, _)| (s.tenants.name(t), t))
        .filter(|(n, _)| wanted.contains_key(*n))
        .collect()
}

/// The weight of the tenants of `per` whose route moves, and of all.
fn moving_requests(before: &Snapshot, after: &Snapshot, per: &HashMap<String, f64>) -> (f64, f64) {
    // Names to tenant numbers, for the sites weighed only.
    let (b, a) = (index(before, per), index(after, per));
    let (mut moving, mut total) = (0.0, 0.0);
    for (name, n) in per {
        total += n;
        let from = b.get(name.as_str()).map(|&t| route(before, t));
        let to = a.get(name.as_str()).map(|&t| route(after, t));
        if from.is_some() && from != to {
            moving += n;
        }
    }
    (moving, total)
}
