//! The isolation settings of a config: the in-flight ceiling of every
//! server, each pool's fair queue, each tier's per-tenant limits. Kept
//! apart from [`super::Tier`] and [`super::Pool`] so that changing a
//! limit never rebuilds placement (which compares those).

use std::time::Duration;

/// Per-tenant limits of one tier (`[tiers.NAME.limits]`), and its place
/// in the fair queue and in shedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierLimits {
    /// Requests of one tenant in flight at once, over all its servers
    /// (0: no limit). Beyond it: `429`.
    pub concurrent: u32,
    /// Requests per second of one tenant (0: no limit), with `burst`
    /// requests at once after a quiet spell. Beyond it: `429`.
    pub rate: u32,
    pub burst: u32,
    /// Requests per second from one client address within one tenant (0:
    /// no limit), with `client_burst`. Beyond it: `429`.
    pub client_rate: u32,
    pub client_burst: u32,
    /// The tier's weight in a pool's fair queue: a tenant of this tier is
    /// served `share` requests per round (defaults to the tier's cost).
    pub share: u32,
    /// Shedding order when a pool's queue is full: the lowest priority
    /// waiting is shed first (0-255, default 0).
    pub priority: u8,
}

impl TierLimits {
    /// Whether any per-tenant limit is on.
    pub fn any(&self) -> bool {
        self.concurrent > 0 || self.rate > 0 || self.client_rate > 0
    }

    /// Whether the rates changed (a tenant's token buckets start afresh).
    pub fn rates_differ(&self, other: &TierLimits) -> bool {
        (self.rate, self.burst, self.client_rate, self.client_burst)
            != (
                other.rate,
                other.burst,
                other.client_rate,
                other.client_burst,
            )
    }
}

/// A pool's ceiling and queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolIsolation {
    /// The in-flight ceiling of each server, in the pool's server order
    /// (0: none; HAProxy's `maxconn`).
    pub max_in_flight: Vec<u32>,
    /// The longest a request waits for a server under its ceiling, then
    /// `503` with `Retry-After`.
    pub queue_timeout: Duration,
    /// Requests waiting at most (all workers); a full queue sheds the
    /// lowest priority.
    pub queue_max: usize,
}

/// Isolation between tenants: by [`super::TierId`] and [`super::PoolId`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Isolation {
    pub tiers: Vec<TierLimits>,
    pub pools: Vec<PoolIsolation>,
}

/// Defaults: protective out of the box (a cluster that configures nothing
/// still bounds one runaway tenant), generous enough that no ordinary
/// site meets them.
pub mod defaults {
    /// Requests one server takes at once.
    pub const MAX_IN_FLIGHT: i64 = 128;
    /// Requests one tenant has in flight at once: two servers' default
    /// ceilings (a runaway site fills at most two servers' slots, and
    /// waits fairly for the rest).
    pub const CONCURRENT: i64 = 256;
    pub const QUEUE_TIMEOUT_SECS: u64 = 5;
    pub const QUEUE_MAX: i64 = 4096;
}
