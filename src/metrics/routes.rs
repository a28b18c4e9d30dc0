//! Request counts and latencies by route, tier and pool.
//!
//! The label values of a route's series come from the config (tier and
//! pool names), so the series are registered per snapshot, once, on the
//! first request that needs them ([`RouteTable`], kept in the snapshot),
//! and a request only adds to its worker's shard of its [`RouteSlot`]'s
//! series ([`super::shards`]). A series registered again by a later
//! snapshot is the same one ([`RouteSeries`], the server's): counts go on
//! across reloads. A scrape renders them ([`RouteSeries::render`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use super::CLASSES;
use super::LATENCY_BUCKETS;
use super::shards::{Count, Histogram, Sharded};
use crate::config::{Config, TierId};
use crate::routing::RouteKind;

/// The label value of "no tier" and "no pool".
pub const NONE: &str = "none";

const REQUESTS: &str = "predictor_requests_total";
const REQUESTS_HELP: &str = "Requests answered, by route (local, legacy, maintenance, unknown: a host in no table sent to legacy, rejected: refused before routing), tenant tier, pool and status class.";
const DURATION: &str = "predictor_request_duration_seconds";
const DURATION_HELP: &str = "Time from a request's head received to the response head sent (upstream's or predictor's own answer), by route.";
const UPSTREAM: &str = "predictor_upstream_duration_seconds";
const UPSTREAM_HELP: &str = "Time from a request sent upstream to the response head, by route (local: a pool's webserver; legacy: the legacy balancer) and pool.";

/// A request count per status class.
#[derive(Default)]
pub struct Classes([Count; 5]);

/// The series one kind of request adds to.
pub struct RouteSlot {
    pub route: RouteKind,
    /// The tenant's tier name, or [`NONE`].
    pub tier: Box<str>,
    /// The pool served from (local only), or [`NONE`].
    pub pool: Box<str>,
    /// This slot's part of an access log line, written by the access log
    /// at its first line and kept with the slot (once per config).
    pub log_members: std::sync::OnceLock<Box<[u8]>>,
    requests: Arc<Sharded<Classes>>,
    /// Request head received to response head sent.
    duration: Arc<Sharded<Histogram>>,
    /// Request sent upstream to response head (local and legacy only).
    upstream: Option<Arc<Sharded<Histogram>>>,
}

impl RouteSlot {
    /// Counts one answer by its status class (on `worker`'s shard: the
    /// calling worker's number, [`super::shards`]).
    pub fn answered(&self, worker: usize, status: http::StatusCode) {
        self.requests.shard(worker).0[class_index(status)].add(1);
    }

    /// The answer's head went out `seconds` after the request's.
    pub fn took(&self, worker: usize, seconds: f64) {
        self.duration.shard(worker).record(seconds);
    }

    /// The upstream answered `seconds` after the request was sent (a
    /// route without an upstream series ignores it).
    pub fn waited(&self, worker: usize, seconds: f64) {
        if let Some(h) = &self.upstream {
            h.shard(worker).record(seconds);
        }
    }

    /// The route has an upstream series (local, legacy, unknown).
    pub fn has_upstream(&self) -> bool {
        self.upstream.is_some()
    }
}

/// Index of a status's class in [`CLASSES`].
pub(super) fn class_index(status: http::StatusCode) -> usize {
    usize::from(status.as_u16() / 100).clamp(1, 5) - 1
}

/// Every route series of one server: registered by the snapshots'
/// tables, kept across them, rendered by a scrape. A series whose tier
/// or pool a reload removed stays (with its last counts), as the
/// recorder's series do.
pub struct RouteSeries {
    workers: usize,
    registered: Mutex<Registered>,
}

/// A request series' labels: route, tier, pool.
type RequestLabels = (&'static str, Box<str>, Box<str>);

#[derive(Default)]
struct Registered {
    requests: BTreeMap<RequestLabels, Arc<Sharded<Classes>>>,
    /// By route.
    duration: BTreeMap<&'static str, Arc<Sharded<Histogram>>>,
    /// By route, pool.
    upstream: BTreeMap<(&'static str, Box<str>), Arc<Sharded<Histogram>>>,
}

impl RouteSeries {
    /// Series with a shard for each of `workers` workers.
    pub fn new(workers: usize) -> Self {
        RouteSeries {
            workers,
            registered: Mutex::default(),
        }
    }

    fn registered(&self) -> std::sync::MutexGuard<'_, Registered> {
        // A panic while holding it left nothing half-made: every entry is
        // inserted whole.
        self.registered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends every series in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let r = self.registered();
        let _ = writeln!(
            out,
            "# HELP {REQUESTS} {REQUESTS_HELP}\n# TYPE {REQUESTS} counter"
        );
        for ((route, tier, pool), series) in &r.requests {
            for (i, class) in CLASSES.iter().enumerate() {
                let n: u64 = series.iter().map(|c| c.0[i].get()).sum();
                let _ = writeln!(
                    out,
                    "{REQUESTS}{{route=\"{route}\",tier=\"{}\",pool=\"{}\",class=\"{class}\"}} {n}",
                    Escaped(tier),
                    Escaped(pool),
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP {DURATION} {DURATION_HELP}\n# TYPE {DURATION} histogram"
        );
        for (route, series) in &r.duration {
            histogram(out, DURATION, &format!("route=\"{route}\""), series);
        }
        let _ = writeln!(
            out,
            "# HELP {UPSTREAM} {UPSTREAM_HELP}\n# TYPE {UPSTREAM} histogram"
        );
        for ((route, pool), series) in &r.upstream {
            let labels = format!("route=\"{route}\",pool=\"{}\"", Escaped(pool));
            histogram(out, UPSTREAM, &labels, series);
        }
    }
}

/// One histogram's lines: its cumulative buckets, `+Inf`, sum and count.
fn histogram(out: &mut String, name: &str, labels: &str, series: &Sharded<Histogram>) {
    let t = series.totals();
    for (le, n) in LATENCY_BUCKETS.iter().zip(t.buckets) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", t.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", t.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", t.count);
}

/// A label value as the text format writes it (`\\`, `\"` and `\n`
/// escaped). Tier and pool names are checked by the config; this keeps the
/// exposition valid whatever they hold.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Every slot of one config: per tier, local, legacy and maintenance;
/// then unknown and rejected (no tier).
pub struct RouteTable {
    slots: Box<[Arc<RouteSlot>]>,
    tiers: usize,
}

impl RouteTable {
    pub(super) fn new(series: &RouteSeries, config: &Config) -> RouteTable {
        let workers = series.workers;
        let mut r = series.registered();
        let tiers = config.tiers.len();
        let mut upstream = |route: RouteKind, pool: &str| {
            r.upstream
                .entry((route.as_str(), pool.into()))
                .or_insert_with(|| Arc::new(Sharded::new(workers)))
                .clone()
        };
        let legacy_upstream = upstream(RouteKind::Legacy, NONE);
        let pool_upstream: Vec<Arc<Sharded<Histogram>>> = config
            .pools
            .iter()
            .map(|p| upstream(RouteKind::Local, &p.name))
            .collect();
        let mut slot = |route: RouteKind, tier: &str, pool: &str, up| {
            let requests = r
                .requests
                .entry((route.as_str(), tier.into(), pool.into()))
                .or_insert_with(|| Arc::new(Sharded::new(workers)))
                .clone();
            let duration = r
                .duration
                .entry(route.as_str())
                .or_insert_with(|| Arc::new(Sharded::new(workers)))
                .clone();
            Arc::new(RouteSlot {
                route,
                tier: tier.into(),
                pool: pool.into(),
                log_members: std::sync::OnceLock::new(),
                requests,
                duration,
                upstream: up,
            })
        };
        let mut slots = Vec::with_capacity(3 * tiers + 2);
        for t in &config.tiers {
            let pool = &config.pool(t.pool).name;
            let up = pool_upstream.get(usize::from(t.pool)).cloned();
            slots.push(slot(RouteKind::Local, &t.name, pool, up));
        }
        for route in [RouteKind::Legacy, RouteKind::Maintenance] {
            for t in &config.tiers {
                let up = (route == RouteKind::Legacy).then(|| legacy_upstream.clone());
                slots.push(slot(route, &t.name, NONE, up));
            }
        }
        slots.push(slot(
            RouteKind::Unknown,
            NONE,
            NONE,
            Some(legacy_upstream.clone()),
        ));
        slots.push(slot(RouteKind::Rejected, NONE, NONE, None));
        RouteTable {
            slots: slots.into_boxed_slice(),
            tiers,
        }
    }

    /// The slot of a request routed `route`, for a tenant of `tier` (when
    /// the host is in the table). A tier is ignored where the route has
    /// none (unknown, rejected); a local, legacy or maintenance request
    /// without a tier (which routing never produces) counts as rejected.
    pub fn slot(&self, route: RouteKind, tier: Option<TierId>) -> &Arc<RouteSlot> {
        let t = self.tiers;
        let tiered = |base: usize| match tier.map(usize::from) {
            Some(i) if i < t => base + i,
            _ => 3 * t + 1,
        };
        let i = match route {
            RouteKind::Local => tiered(0),
            RouteKind::Legacy => tiered(t),
            RouteKind::Maintenance => tiered(2 * t),
            RouteKind::Unknown => 3 * t,
            RouteKind::Rejected => 3 * t + 1,
        };
        &self.slots[i]
    }
}
