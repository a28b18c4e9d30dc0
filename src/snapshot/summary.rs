//! Counts describing a snapshot: what `predictor check` prints, and the
//! migration's progress (tenants and hosts by state).
//!
//! One rule for hosts everywhere (`check`, `/status`, `/metrics`): a host
//! is a name line of the tenant table, exact or wildcard (`*.example.com`
//! is one host); `wildcards` says how many of them are wildcards. So the
//! hosts by state always add up to the total.

use std::fmt;

use super::Snapshot;
use crate::routing::migration::MigrationState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub tenants: usize,
    /// Host names of the table, exact and wildcard.
    pub hosts: usize,
    /// How many of `hosts` are wildcards.
    pub wildcards: usize,
    pub tiers: usize,
    pub pools: usize,
    pub servers: usize,
    pub filers: usize,
    /// Tenants in each state, in [`MigrationState::ALL`] order.
    pub tenants_by_state: [usize; 4],
    /// Hosts (exact and wildcard) in each state.
    pub hosts_by_state: [usize; 4],
}

fn slot(s: MigrationState) -> usize {
    match s {
        MigrationState::Legacy => 0,
        MigrationState::Shadow => 1,
        MigrationState::Maintenance => 2,
        MigrationState::Migrated => 3,
    }
}

impl Summary {
    /// Counts a snapshot; walks every tenant and host, so not for the
    /// request path.
    pub fn of(snap: &Snapshot) -> Summary {
        let t = &snap.tenants;
        let mut s = Summary {
            tenants: t.tenant_count(),
            hosts: t.host_count() + t.wildcard_count(),
            wildcards: t.wildcard_count(),
            tiers: snap.config.tiers.len(),
            pools: snap.config.pools.len(),
            servers: snap.config.server_count(),
            filers: t.filers().len(),
            ..Summary::default()
        };
        let state_of = |idx| {
            let r = t.record(idx);
            snap.migration.of(idx, r.filer).0
        };
        for (idx, _) in t.tenants() {
            s.tenants_by_state[slot(state_of(idx))] += 1;
        }
        for (_, idx) in t.hosts() {
            s.hosts_by_state[slot(state_of(idx))] += 1;
        }
        s
    }

    pub fn tenants_in(&self, state: MigrationState) -> usize {
        self.tenants_by_state[slot(state)]
    }

    pub fn hosts_in(&self, state: MigrationState) -> usize {
        self.hosts_by_state[slot(state)]
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tenants, {} hosts ({} wildcards), {} tiers, {} pools, {} servers, {} filers; tenants",
            self.tenants,
            self.hosts,
            self.wildcards,
            self.tiers,
            self.pools,
            self.servers,
            self.filers
        )?;
        let mut sep = ":";
        for state in MigrationState::ALL {
            let n = self.tenants_by_state[slot(state)];
            // Shadow only while some are: a summary without it reads as
            // before shadow existed.
            if state != MigrationState::Shadow || n > 0 {
                write!(f, "{sep} {n} {state}")?;
                sep = ",";
            }
        }
        Ok(())
    }
}
