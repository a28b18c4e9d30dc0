//! [`MigrationStates`]: where each tenant stands in the move, resolved from
//! the state file against one tenant table.
//!
//! A tenant's state is its own override if the state file lists it, else its
//! filer's state, else the file's default. Filer states sit in a vector
//! indexed by filer number, so the per-request cost is one array read (plus
//! one small hash lookup when overrides exist).

use std::collections::HashMap;
use std::fmt;

use super::tenants::{FilerIdx, TenantIdx};

/// Where a site is served during the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MigrationState {
    /// Not moved yet: forward to the legacy balancer.
    Legacy,
    /// Served by the legacy balancer, with a sample of safe requests also
    /// sent to the new pool and the answers compared (verification before
    /// the flip).
    Shadow,
    /// Being moved now: answer 503 locally, touch no backend.
    Maintenance,
    /// Moved: serve from the local webserver pools.
    Migrated,
}

impl MigrationState {
    pub const ALL: [MigrationState; 4] = [
        MigrationState::Legacy,
        MigrationState::Shadow,
        MigrationState::Maintenance,
        MigrationState::Migrated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MigrationState::Legacy => "legacy",
            MigrationState::Shadow => "shadow",
            MigrationState::Maintenance => "maintenance",
            MigrationState::Migrated => "migrated",
        }
    }
}

impl fmt::Display for MigrationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which line of the state file decided a tenant's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateSource {
    TenantOverride,
    Filer,
    Default,
}

/// The migration state file, resolved against one tenant table.
#[derive(Debug, Clone)]
pub struct MigrationStates {
    default: MigrationState,
    by_filer: Box<[Option<MigrationState>]>,
    by_tenant: HashMap<TenantIdx, MigrationState, foldhash::fast::RandomState>,
}

impl MigrationStates {
    /// Everything in `default`, for `filers` filers.
    pub fn new(default: MigrationState, filers: usize) -> Self {
        MigrationStates {
            default,
            by_filer: vec![None; filers].into_boxed_slice(),
            by_tenant: HashMap::default(),
        }
    }

    /// Sets a filer's state; ignored for filers beyond the table.
    pub fn set_filer(&mut self, filer: FilerIdx, state: MigrationState) {
        if let Some(s) = self.by_filer.get_mut(usize::from(filer)) {
            *s = Some(state);
        }
    }

    pub fn set_tenant(&mut self, tenant: TenantIdx, state: MigrationState) {
        self.by_tenant.insert(tenant, state);
    }

    pub fn default_state(&self) -> MigrationState {
        self.default
    }

    /// The state of a tenant on a filer, and what decided it.
    #[inline]
    pub fn of(&self, tenant: TenantIdx, filer: FilerIdx) -> (MigrationState, StateSource) {
        if !self.by_tenant.is_empty() {
            if let Some(&s) = self.by_tenant.get(&tenant) {
                return (s, StateSource::TenantOverride);
            }
        }
        match self.by_filer.get(usize::from(filer)).copied().flatten() {
            Some(s) => (s, StateSource::Filer),
            None => (self.default, StateSource::Default),
        }
    }

    /// Number of tenant overrides.
    pub fn override_count(&self) -> usize {
        self.by_tenant.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MigrationState::*;

    #[test]
    fn override_then_filer_then_default() {
        let mut m = MigrationStates::new(Legacy, 3);
        m.set_filer(1, Migrated);
        m.set_filer(2, Maintenance);
        m.set_tenant(7, Legacy);
        assert_eq!(m.of(0, 0), (Legacy, StateSource::Default));
        assert_eq!(m.of(0, 1), (Migrated, StateSource::Filer));
        assert_eq!(m.of(0, 2), (Maintenance, StateSource::Filer));
        assert_eq!(m.of(7, 1), (Legacy, StateSource::TenantOverride));
        // A filer number beyond the table falls back to the default.
        assert_eq!(m.of(0, 9), (Legacy, StateSource::Default));
        m.set_filer(9, Migrated);
        assert_eq!(m.of(0, 9), (Legacy, StateSource::Default));
        assert_eq!(m.override_count(), 1);
    }
}
