//! Routing: from a request's host to what happens to it.
//!
//! Owns host normalisation ([`host`]), the million-host index ([`index`]),
//! the tenant table ([`tenants`]), the migration states ([`migration`]) and
//! the decision that combines them ([`route`]): exact host, then the longest
//! wildcard, then the unknown-host policy; then the tenant's migration state
//! (override, filer, default); then, for a migrated tenant, its tier's pool.
//!
//! Invariant: pure. No I/O, no clock, no locks, no allocation: a decision is
//! a function of the snapshot's tables and the host, so it is unit-testable,
//! benchable alone, and the same on every instance.

pub use crate::model::host;
pub mod index;
pub mod migration;
pub mod tenants;

use http::StatusCode;

use crate::config::{Config, PoolId, TierId, UnknownHosts};
use host::Host;
use migration::{MigrationState, MigrationStates, StateSource};
use tenants::{TenantMatch, TenantTable};

/// The metric label of a decision (bounded: never a host or a tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// Served by a local webserver pool.
    Local,
    /// A known tenant forwarded to the legacy balancer.
    Legacy,
    /// Answered with the maintenance page.
    Maintenance,
    /// A host in no table, forwarded to the legacy balancer.
    Unknown,
    /// Answered locally with an error (unknown host, malformed request).
    Rejected,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Local => "local",
            RouteKind::Legacy => "legacy",
            RouteKind::Maintenance => "maintenance",
            RouteKind::Unknown => "unknown",
            RouteKind::Rejected => "rejected",
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Serve from `pool`; `point` places the tenant on the pool's ring.
    Local {
        tier: TierId,
        pool: PoolId,
        point: u32,
    },
    /// Forward to the legacy balancer.
    Legacy,
    /// Answer 503 with the maintenance page.
    Maintenance,
    /// Answer with this status.
    Reject(StatusCode),
}

/// A routing decision and what it was based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The tenant, when the host is in the table.
    pub tenant: Option<TenantMatch>,
    /// The tenant's migration state and where it came from.
    pub state: Option<(MigrationState, StateSource)>,
    pub action: Action,
}

impl Decision {
    pub fn kind(&self) -> RouteKind {
        match (self.action, self.tenant) {
            (Action::Local { .. }, _) => RouteKind::Local,
            (Action::Legacy, Some(_)) => RouteKind::Legacy,
            (Action::Legacy, None) => RouteKind::Unknown,
            (Action::Maintenance, _) => RouteKind::Maintenance,
            (Action::Reject(_), _) => RouteKind::Rejected,
        }
    }
}

/// Decides where a request for `host` goes.
#[inline]
pub fn route(
    config: &Config,
    tenants: &TenantTable,
    states: &MigrationStates,
    host: &Host,
) -> Decision {
    let Some(found) = tenants.lookup(host) else {
        return route_unknown(config);
    };
    let record = tenants.record(found.tenant);
    let (state, source) = states.of(found.tenant, record.filer);
    let action = match state {
        MigrationState::Migrated => Action::Local {
            tier: record.tier,
            pool: config.tier(record.tier).pool,
            point: record.ring_point,
        },
        MigrationState::Legacy | MigrationState::Shadow if config.legacy.is_some() => {
            Action::Legacy
        }
        // Validation refuses a legacy state without a legacy balancer; an
        // unreachable one is a gateway error, decided here for completeness.
        MigrationState::Legacy | MigrationState::Shadow => Action::Reject(StatusCode::BAD_GATEWAY),
        MigrationState::Maintenance => Action::Maintenance,
    };
    Decision {
        tenant: Some(found),
        state: Some((state, source)),
        action,
    }
}

/// The decision for a host in no table (or a request without any host).
pub fn route_unknown(config: &Config) -> Decision {
    let action = match config.unknown_hosts {
        UnknownHosts::Legacy => Action::Legacy,
        UnknownHosts::Reject(status) => Action::Reject(status),
    };
    Decision {
        tenant: None,
        state: None,
        action,
    }
}

#[cfg(test)]
mod tests;
