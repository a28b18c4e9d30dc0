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
//! to the table's numbers. A filer the table does not know is an error
//! (`filer-20` for `filer-02` would leave that filer's sites on the default),
//! named with its line and the nearest filers of the table, unless it is
//! listed in `prepared_filers = [...]`: a filer whose state is set before its
//! sites are in the table. A tenant the table does not know is a warning:
//! per-tenant lines may run ahead of the table.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::raw::{self, RawMigration, RawState};
use crate::config::{Collector, ConfigError, Problem, Problems, is_valid_name};
use crate::routing::migration::{MigrationState, MigrationStates};
use crate::routing::tenants::TenantTable;

/// A parsed state file, not yet resolved against a tenant table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    pub default: MigrationState,
    /// `(name, state, line)`.
    pub filers: Vec<(String, MigrationState, usize)>,
    pub tenants: Vec<(String, MigrationState, usize)>,
    /// Filers allowed to have no host in the table yet.
    pub prepared: Vec<String>,
    file: std::path::PathBuf,
}

/// A state file resolved against a tenant table.
pub struct Resolved {
    pub states: MigrationStates,
    /// Worth a look, not stopping the load.
    pub warnings: Vec<Problem>,
    /// Refusing the load: a filer the table does not know.
    pub problems: Problems,
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
        let mut ps = Problems::default();
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
                let line = crate::config::line_of(text, name.span().start);
                out.push((name.into_inner(), state_of(*state.get_ref()), line));
            }
            out.sort_by_key(|e| e.2);
            out
        };
    let filers = entries(raw.filers, "filers");
    let tenants = entries(raw.tenants, "tenants");
    let mut prepared = Vec::with_capacity(raw.prepared_filers.len());
    for name in raw.prepared_filers {
        if is_valid_name(name.get_ref().as_bytes()) {
            prepared.push(name.into_inner());
        } else {
            c.at(
                name.span(),
                "prepared_filers",
                "filer names are 1-64 of A-Z a-z 0-9 _ . - :",
            );
        }
    }
    c.problems.into_result()?;
    Ok(MigrationFile {
        default: state_of(*raw.default.get_ref()),
        filers,
        tenants,
        prepared,
        file: path.to_path_buf(),
    })
}

fn state_of(s: RawState) -> MigrationState {
    match s {
        RawState::Legacy => MigrationState::Legacy,
        RawState::Shadow => MigrationState::Shadow,
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

    /// Resolves names against `table`: the states, a problem per filer the
    /// table does not know (unless prepared), a warning per tenant it does
    /// not know.
    pub fn resolve(&self, table: &TenantTable) -> Resolved {
        let mut states = MigrationStates::new(self.default, table.filers().len());
        let mut warnings = Vec::new();
        let mut problems = Problems::default();
        for (name, state, line) in &self.filers {
            match table.filer_by_name(name) {
                Some(f) => states.set_filer(f, *state),
                None if self.prepared.contains(name) => {}
                None => problems.push(self.warning(*line, unknown_filer(name, table.filers()))),
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
        Resolved {
            states,
            warnings,
            problems,
        }
    }

    /// A problem or warning at `line` of this file.
    fn warning(&self, line: usize, message: String) -> Problem {
        Problem {
            file: self.file.clone(),
            line: Some(line),
            key: None,
            message,
        }
    }
}

/// A `legacy` (or `shadow`) state at `line` (`None`: the default)
/// without a `[legacy]` section in `predictor.toml`.
pub fn needs_legacy(file: &Path, line: Option<usize>, state: MigrationState) -> Problem {
    Problem {
        file: file.to_path_buf(),
        line,
        key: None,
        message: format!(
            "state \"{state}\" needs a [legacy] section with the legacy balancer's address in predictor.toml"
        ),
    }
}

/// Why a filer line is refused, with the nearest names the table has.
fn unknown_filer(name: &str, known: &[String]) -> String {
    let mut message = format!("filer {name} has no host in the tenant table");
    let near = nearest(name, known);
    if !near.is_empty() {
        let _ = write!(message, "; did you mean {}?", near.join(" or "));
    }
    message.push_str(
        " (a filer prepared before its sites are in the table goes in prepared_filers = [...])",
    );
    message
}

/// The names of `known` closest to `name` (edit distance, a swap of two
/// neighbours counting one), at most three, when close enough to be a
/// typo.
fn nearest<'a>(name: &str, known: &'a [String]) -> Vec<&'a str> {
    let bound = (name.chars().count() / 3).max(1);
    let mut best = usize::MAX;
    let mut near: Vec<&str> = Vec::new();
    for k in known {
        let d = strsim::osa_distance(name, k);
        if d > bound || d > best {
            continue;
        }
        if d < best {
            best = d;
            near.clear();
        }
        near.push(k);
    }
    near.sort_unstable();
    near.truncate(3);
    near
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_filers_are_the_likely_typos() {
        let known: Vec<String> = (1..=12).map(|i| format!("filer-{i:02}")).collect();
        assert_eq!(nearest("filer-20", &known), ["filer-02", "filer-10"]);
        assert_eq!(
            nearest("filer-1", &known),
            ["filer-01", "filer-10", "filer-11"]
        );
        assert_eq!(nearest("filer-013", &known), ["filer-01", "filer-03"]);
        assert!(nearest("nas-7", &known).is_empty(), "nothing close");
        assert!(unknown_filer("nas-7", &known).ends_with("in prepared_filers = [...])"));
    }
}
