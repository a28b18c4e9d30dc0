//! The migration state file (TOML): a default, then one line per filer and
//! per overridden tenant.
//!
//! ```toml
//! default = "legacy"
//! [filers]
//! filer-01 = "migrated"
//! filer-02 = "maintenance"
//! [tenants]
//! t000042 = "legacy"
//! ```
//!
//! Parsing is independent of the tenant table (so its errors are reported
//! even when the table is broken); [`MigrationFile::resolve`] then maps names
//! to the table's numbers. A filer or tenant the table does not know is a
//! warning, not an error: the state file may run ahead of the table.

use std::path::Path;

use super::raw::{self, RawMigration, RawState};
use super::{Collector, ConfigError, Problem, is_valid_name};
use crate::routing::migration::{MigrationState, MigrationStates};
use crate::routing::tenants::TenantTable;

/// A parsed state file, not yet resolved against a tenant table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    pub default: MigrationState,
    /// `(name, state, line)`.
    pub filers: Vec<(String, MigrationState, usize)>,
    pub tenants: Vec<(String, MigrationState, usize)>,
    file: std::path::PathBuf,
}

/// Reads and parses a state file.
pub fn load(path: &Path) -> Result<MigrationFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<MigrationFile, ConfigError> {
    let raw: RawMigration = raw::parse(path, text).map_err(|p| {
        let mut ps = super::Problems::default();
        ps.push(p);
        ConfigError::Invalid(ps)
    })?;
    let mut c = Collector::new(path, text);
    let mut entries =
        |map: std::collections::BTreeMap<raw::Spanned<String>, raw::Spanned<RawState>>,
         section: &str| {
            let mut out = Vec::with_capacity(map.len());
            for (name, state) in map {
                if !is_valid_name(name.get_ref().as_bytes()) {
                    c.at(
                        name.span(),
                        format!("{section}.{}", name.get_ref()),
                        "names are 1-64 of A-Z a-z 0-9 _ . - :",
                    );
                    continue;
                }
                let line = super::error::line_of(text, name.span().start);
                out.push((name.into_inner(), state_of(*state.get_ref()), line));
            }
            out.sort_by_key(|e| e.2);
            out
        };
    let filers = entries(raw.filers, "filers");
    let tenants = entries(raw.tenants, "tenants");
    c.problems.into_result()?;
    Ok(MigrationFile {
        default: state_of(*raw.default.get_ref()),
        filers,
        tenants,
        file: path.to_path_buf(),
    })
}

fn state_of(s: RawState) -> MigrationState {
    match s {
        RawState::Legacy => MigrationState::Legacy,
        RawState::Maintenance => MigrationState::Maintenance,
        RawState::Migrated => MigrationState::Migrated,
    }
}

impl MigrationFile {
    /// Every state this file can give a tenant (for validation against the
    /// rest of the config).
    pub fn states_used(&self) -> impl Iterator<Item = (MigrationState, Option<usize>)> + '_ {
        std::iter::once((self.default, None)).chain(
            self.filers
                .iter()
                .chain(self.tenants.iter())
                .map(|(_, s, line)| (*s, Some(*line))),
        )
    }

    /// Resolves names against `table`; returns the states and a warning per
    /// filer or tenant the table does not know.
    pub fn resolve(&self, table: &TenantTable) -> (MigrationStates, Vec<Problem>) {
        let mut states = MigrationStates::new(self.default, table.filers().len());
        let mut warnings = Vec::new();
        for (name, state, line) in &self.filers {
            match table.filer_by_name(name) {
                Some(f) => states.set_filer(f, *state),
                None => warnings.push(self.warning(
                    *line,
                    format!("filer {name} has no host in the tenant table"),
                )),
            }
        }
        if !self.tenants.is_empty() {
            let wanted: std::collections::HashMap<&str, (MigrationState, usize)> = self
                .tenants
                .iter()
                .map(|(n, s, l)| (n.as_str(), (*s, *l)))
                .collect();
            let mut found = std::collections::HashSet::new();
            for (t, _) in table.tenants() {
                let name = table.name(t);
                if let Some(&(state, _)) = wanted.get(name) {
                    states.set_tenant(t, state);
                    found.insert(name);
                }
            }
            for (name, _, line) in &self.tenants {
                if !found.contains(name.as_str()) {
                    warnings.push(self.warning(
                        *line,
                        format!("tenant {name} has no host in the tenant table"),
                    ));
                }
            }
        }
        (states, warnings)
    }

    fn warning(&self, line: usize, message: String) -> Problem {
        Problem {
            file: self.file.clone(),
            line: Some(line),
            key: None,
            message,
        }
    }
}
