//! Request counts and latencies by route, tier and pool.
//!
//! The label values of a route's series come from the config (tier and
//! pool names), so the handles are registered per snapshot, once, on the
//! first request that needs them ([`RouteTable`], kept in the snapshot),
//! and a request only adds to the atomics of its [`RouteSlot`]. A handle
//! registered again by a later snapshot is the same series: counts go on
//! across reloads.

use std::sync::Arc;

use metrics::{Counter, Histogram, Label};

use super::{CLASSES, Registrar};
use crate::config::{Config, TierId};
use crate::routing::RouteKind;

/// The label value of "no tier" and "no pool".
pub const NONE: &str = "none";

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
    requests: [Counter; 5],
    /// Request head received to response head sent.
    pub duration: Histogram,
    /// Request sent upstream to response head (local and legacy only).
    pub upstream: Option<Histogram>,
}

impl RouteSlot {
    /// Counts one answer by its status class.
    pub fn answered(&self, status: http::StatusCode) {
        self.requests[class_index(status)].increment(1);
    }
}

/// Index of a status's class in [`CLASSES`].
pub(super) fn class_index(status: http::StatusCode) -> usize {
    usize::from(status.as_u16() / 100).clamp(1, 5) - 1
}

/// Every slot of one config: per tier, local, legacy and maintenance;
/// then unknown and rejected (no tier).
pub struct RouteTable {
    slots: Box<[Arc<RouteSlot>]>,
    tiers: usize,
}

impl RouteTable {
    pub(super) fn new(r: &Registrar<'_>, config: &Config) -> RouteTable {
        let tiers = config.tiers.len();
        let upstream = |route: RouteKind, pool: &str| {
            r.histogram_with(
                "predictor_upstream_duration_seconds",
                "Time from a request sent upstream to the response head, by route (local: a pool's webserver; legacy: the legacy balancer) and pool.",
                vec![
                    Label::new("route", route.as_str()),
                    Label::new("pool", pool.to_string()),
                ],
            )
        };
        let legacy_upstream = upstream(RouteKind::Legacy, NONE);
        let pool_upstream: Vec<Histogram> = config
            .pools
            .iter()
            .map(|p| upstream(RouteKind::Local, &p.name))
            .collect();
        let slot = |route: RouteKind, tier: &str, pool: &str, up: Option<Histogram>| {
            let labels = |class: &'static str| {
                vec![
                    Label::new("route", route.as_str()),
                    Label::new("tier", tier.to_string()),
                    Label::new("pool", pool.to_string()),
                    Label::new("class", class),
                ]
            };
            Arc::new(RouteSlot {
                route,
                tier: tier.into(),
                pool: pool.into(),
                log_members: std::sync::OnceLock::new(),
                requests: CLASSES.map(|class| {
                    r.counter_with(
                        "predictor_requests_total",
                        "Requests answered, by route (local, legacy, maintenance, unknown: a host in no table sent to legacy, rejected: refused before routing), tenant tier, pool and status class.",
                        labels(class),
                    )
                }),
                duration: r.histogram_with(
                    "predictor_request_duration_seconds",
                    "Time from a request's head received to the response head sent (upstream's or predictor's own answer), by route.",
                    vec![Label::new("route", route.as_str())],
                ),
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
