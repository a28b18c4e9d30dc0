//! `GET /status`: the state of a running instance as JSON, for operators
//! and their tools: version, config generation, the last good and last
//! failed reload, tenants and hosts by migration state, each pool's
//! servers with their health and load, the legacy tunnel, the listeners
//! (with the L4 balancers whose PROXY headers they take).

use std::time::SystemTime;

use serde::Serialize;

use crate::health;
use crate::routing::migration::MigrationState;

#[derive(Serialize)]
struct Status {
    version: &'static str,
    /// `ready`, or why not (`starting: ...`, `draining: ...`).
    readiness: String,
    connections_open: usize,
    generation: u64,
    listeners: Vec<Listener>,
    reload: Reload,
    tenants: ByState,
    hosts: ByState,
    pools: Vec<Pool>,
    legacy: Option<Legacy>,
    /// Without `[tls]`: none.
    certificates: Option<Certificates>,
}

/// A listener as the serving config has it (its address as written: a
/// port 0 is the one bound at start).
#[derive(Serialize)]
struct Listener {
    address: String,
    protocol: String,
    /// The sources whose PROXY protocol headers it takes; none when off.
    proxy_protocol: Option<Vec<String>>,
}

#[derive(Serialize)]
struct Certificates {
    indexed: usize,
    /// Expiring within `scrape::EXPIRING_DAYS` days, or expired.
    expiring: usize,
    /// Files refused at the last load, each with why (file first).
    refused: Vec<String>,
}

#[derive(Serialize)]
struct Reload {
    last_good: Option<Good>,
    last_failed: Option<Failed>,
    /// A valid change held for confirmation (it moves too much).
    held: Option<Held>,
}

#[derive(Serialize)]
struct Held {
    at: f64,
    /// What it would change.
    change: String,
    changed_share: f64,
    dropped_hosts_share: f64,
    /// `POST /reload/confirm?token=TOKEN` installs it.
    token: String,
    confirm: String,
}

#[derive(Serialize)]
struct Good {
    /// Seconds since the Unix epoch.
    at: f64,
    generation: u64,
}

#[derive(Serialize)]
struct Failed {
    at: f64,
    /// One problem per entry, each with its file:line.
    problems: Vec<String>,
}

/// Counts by migration state; `total` is their sum (hosts: exact and
/// wildcard names alike, see [`crate::snapshot::Summary`]).
#[derive(Serialize)]
struct ByState {
    total: usize,
    /// Hosts only: how many of `total` are wildcard names.
    #[serde(skip_serializing_if = "Option::is_none")]
    wildcards: Option<usize>,
    legacy: usize,
    shadow: usize,
    maintenance: usize,
    migrated: usize,
}

#[derive(Serialize)]
struct Pool {
    name: String,
    in_flight: u32,
    servers: Vec<Server>,
}

#[derive(Serialize)]
struct Server {
    id: String,
    address: String,
    /// `up`, `draining` or `down`.
    state: &'static str,
    check_down: bool,
    agent: String,
    agent_down: bool,
    ejected_for_ms: u64,
    ejections: u32,
    in_flight: u32,
    latency_ms: f64,
    weight_ratio: f64,
}

#[derive(Serialize)]
struct Legacy {
    address: String,
    up: bool,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The status document.
pub fn render(admin: &super::Admin) -> String {
    let (shared, tunnel) = (&admin.snapshot, &admin.tunnel);
    let snap = shared.load_full();
    let summary = snap.summary();
    let reloads = shared.reload_status();
    let by_state = |total: usize, of: &dyn Fn(MigrationState) -> usize| ByState {
        total,
        wildcards: None,
        legacy: of(MigrationState::Legacy),
        shadow: of(MigrationState::Shadow),
        maintenance: of(MigrationState::Maintenance),
        migrated: of(MigrationState::Migrated),
    };
    let now = health::now_ms();
    let pools = snap
        .config
        .pools
        .iter()
        .zip(snap.live.pools())
        .map(|(p, live)| Pool {
            name: p.name.clone(),
            in_flight: live.totals().in_flight,
            servers: p
                .servers
                .iter()
                .zip(live.servers())
                .map(|(conf, s)| {
                    let h = s.health(now);
                    Server {
                        id: conf.id.clone(),
                        address: conf.address.to_string(),
                        state: h.admission.as_str(),
                        check_down: h.check_down,
                        agent: format!("{:?}", h.agent).to_lowercase(),
                        agent_down: h.agent_down,
                        ejected_for_ms: h.ejected_for_ms,
                        ejections: h.ejections,
                        in_flight: s.in_flight(),
                        latency_ms: f64::from(s.latency(now)) / 1000.0,
                        weight_ratio: s.weight_ratio(),
                    }
                })
                .collect(),
        })
        .collect();
    let status = Status {
        version: env!("CARGO_PKG_VERSION"),
        readiness: match admin.lifecycle.ready() {
            Ok(()) => "ready".into(),
            Err(why) => why.to_string(),
        },
        connections_open: admin.lifecycle.connections_open(),
        generation: snap.generation,
        listeners: snap
            .config
            .listeners
            .iter()
            .map(|l| Listener {
                address: l.address.to_string(),
                protocol: format!("{:?}", l.protocol).to_lowercase(),
                proxy_protocol: l
                    .proxy_protocol
                    .as_ref()
                    .map(|p| p.from.iter().map(|n| n.to_string()).collect()),
            })
            .collect(),
        reload: Reload {
            last_good: reloads.last_good.map(|(at, generation)| Good {
                at: unix(at),
                generation,
            }),
            last_failed: reloads.last_failed.map(|(at, problems)| Failed {
                at: unix(at),
                problems: problems.lines().map(str::to_string).collect(),
            }),
            held: admin.snapshot.guard.held().map(|h| Held {
                at: unix(h.at),
                confirm: format!(
                    "predictor reload --confirm --config DIR, or POST /reload/confirm?token={}",
                    h.token
                ),
                change: h.summary,
                changed_share: h.changed_share,
                dropped_hosts_share: h.dropped_hosts_share,
                token: h.token,
            }),
        },
        tenants: by_state(summary.tenants, &|s| summary.tenants_in(s)),
        hosts: ByState {
            wildcards: Some(summary.wildcards),
            ..by_state(summary.hosts, &|s| summary.hosts_in(s))
        },
        pools,
        certificates: snap.config.tls.as_ref().map(|_| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let soon = now + super::scrape::EXPIRING_DAYS * 86_400;
            let files = snap.certs.files();
            Certificates {
                indexed: files.len(),
                expiring: files.iter().filter(|f| f.not_after < soon).count(),
                refused: snap.certs.refused().iter().map(|e| e.to_string()).collect(),
            }
        }),
        legacy: snap.config.legacy.as_ref().map(|l| Legacy {
            address: l.address.to_string(),
            up: tunnel.is_up(),
        }),
    };
    serde_json::to_string_pretty(&status).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
