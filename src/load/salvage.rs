//! The rest of a folder whose `predictor.toml` was refused: its tenant table
//! and state file are checked as far as the broken file allows, so that one
//! run of `predictor check` lists every problem of the folder.
//!
//! What is taken from the refused file, when it parses as TOML (whatever
//! its keys): the names of the other two files (`tenants`, `migration`),
//! the tier names, and whether it has a `[legacy]` section. When it does not parse, or a key is
//! missing, the files have their usual names (`tenants.tsv`,
//! `migration.toml`), a guessed file that does not exist is passed over
//! silently, and any well-formed tier name is taken.

use std::path::{Path, PathBuf};

use super::{migration, tenants};
use crate::config::{ConfigError, MAIN_FILE, Problem, Problems};
use crate::routing::migration::MigrationState;

/// The tenant table's usual name, used when `predictor.toml` cannot say.
pub const DEFAULT_TENANTS: &str = "tenants.tsv";
/// The state file's usual name, used when `predictor.toml` cannot say.
pub const DEFAULT_MIGRATION: &str = "migration.toml";

/// What could be read of a refused `predictor.toml` (the [`raw`] types
/// refuse a file with one unknown key whole; this reads what is there).
///
/// [`raw`]: crate::config::raw
struct Salvaged {
    tenants: (PathBuf, bool),
    migration: (PathBuf, bool),
    /// `None`: unknown (the file is not TOML, or names none).
    tiers: Option<Vec<String>>,
    /// `None`: unknown.
    legacy: Option<bool>,
}

impl Salvaged {
    /// Read as plain TOML (not as [`RawConfig`], which an unknown key
    /// refuses whole): the names survive any mistake but a syntax error.
    fn read(dir: &Path) -> Salvaged {
        let text = std::fs::read_to_string(dir.join(MAIN_FILE)).ok();
        let parsed = text.and_then(|t| t.parse::<toml::Table>().ok());
        // A name as written (`true`: named), or the usual one.
        let file = |doc: Option<&toml::Table>, key: &str, usual: &str| match doc
            .and_then(|d| d.get(key))
            .and_then(|v| v.as_str())
        {
            Some(n) if !n.is_empty() => (dir.join(n), true),
            _ => (dir.join(usual), false),
        };
        let doc = parsed.as_ref();
        Salvaged {
            tenants: file(doc, "tenants", DEFAULT_TENANTS),
            migration: file(doc, "migration", DEFAULT_MIGRATION),
            // No tier at all is a problem of predictor.toml already, not
            // one per line of the table.
            tiers: doc
                .and_then(|d| d.get("tiers"))
                .and_then(|t| t.as_table())
                .filter(|t| !t.is_empty())
                .map(|t| t.keys().cloned().collect()),
            legacy: doc.map(|d| d.contains_key("legacy")),
        }
    }
}

/// Adds to `problems` (those of `predictor.toml`) every problem of the
/// folder's other files.
pub fn check_rest(dir: &Path, mut problems: Problems) -> Problems {
    let s = Salvaged::read(dir);
    let mut add = |e: ConfigError, named: bool| match e {
        ConfigError::Invalid(p) => problems.extend(p),
        ConfigError::Read { source, .. }
            if !named && source.kind() == std::io::ErrorKind::NotFound => {}
        ConfigError::Read { path, source } => problems.push(Problem {
            file: path,
            line: None,
            key: None,
            message: format!("cannot read: {source}"),
        }),
    };
    let table = std::fs::File::open(&s.tenants.0)
        .map_err(|source| ConfigError::Read {
            path: s.tenants.0.clone(),
            source,
        })
        .and_then(|file| {
            let names: Option<Vec<&str>> = s
                .tiers
                .as_ref()
                .map(|t| t.iter().map(String::as_str).collect());
            tenants::parse_with_tiers(&s.tenants.0, file, names.as_deref())
        });
    let table = match table {
        Ok(t) => Some(t),
        Err(e) => {
            add(e, s.tenants.1);
            None
        }
    };
    let states = match migration::load(&s.migration.0) {
        Ok(m) => Some(m),
        Err(e) => {
            add(e, s.migration.1);
            None
        }
    };
    if let Some(m) = &states {
        if s.legacy == Some(false) {
            for (state, line) in m.states_used() {
                if matches!(state, MigrationState::Legacy | MigrationState::Shadow) {
                    problems.push(migration::needs_legacy(&s.migration.0, line, state));
                }
            }
        }
        if let Some(t) = &table {
            problems.extend(m.resolve(t).problems);
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(toml: &str, tenants: &str, state: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MAIN_FILE), toml).unwrap();
        std::fs::write(dir.path().join(DEFAULT_TENANTS), tenants).unwrap();
        std::fs::write(dir.path().join(DEFAULT_MIGRATION), state).unwrap();
        dir
    }

    fn lines(p: &Problems) -> Vec<String> {
        p.iter()
            .map(|p| {
                let file = p.file.file_name().unwrap().to_string_lossy();
                format!("{file}:{}", p.line.unwrap_or(0))
            })
            .collect()
    }

    const TABLE: &str =
        "a.example\tt1\tgold\tf1\nbad host!\tt2\tgold\tf1\na.example\tt3\tgold\tf2\n";
    const STATE: &str = "default = \"migrated\"\n[filers]\nf1 = \"migrated\"\nf9 = \"legacy\"\n";

    #[test]
    fn a_file_that_is_not_toml_leaves_the_usual_names_and_any_tier() {
        let dir = folder(
            "this is [not toml\n",
            TABLE,
            "default = \"migrated\"\n[filers]\nf1 = \"migrated\"\nf9 = \"moved\"\n",
        );
        let p = check_rest(dir.path(), Problems::default());
        assert_eq!(
            lines(&p),
            ["tenants.tsv:2", "tenants.tsv:3", "migration.toml:4"],
            "{p}"
        );
    }

    #[test]
    fn the_names_and_tiers_of_a_toml_file_are_used() {
        let toml =
            "tenants = \"hosts.tsv\"\nmigration = \"m.toml\"\n[tiers.basic]\npool = \"nope\"\n";
        let dir = folder(toml, "", "");
        std::fs::write(dir.path().join("hosts.tsv"), TABLE).unwrap();
        std::fs::write(dir.path().join("m.toml"), STATE).unwrap();
        let p = check_rest(dir.path(), Problems::default());
        let found = lines(&p);
        // Every line names tier gold, not one of this file's tiers; f9 is
        // legacy without [legacy].
        assert!(found.contains(&"hosts.tsv:1".to_string()), "{p}");
        assert!(p.to_string().contains("unknown tier \"gold\""), "{p}");
        assert!(found.contains(&"m.toml:4".to_string()), "{p}");
        assert!(p.to_string().contains("needs a [legacy] section"), "{p}");
    }

    #[test]
    fn a_guessed_file_that_is_not_there_is_passed_over_and_a_named_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MAIN_FILE), "[[listen]\n").unwrap();
        assert!(check_rest(dir.path(), Problems::default()).is_empty());
        std::fs::write(
            dir.path().join(MAIN_FILE),
            "tenants = \"gone.tsv\"\nunknown_key = 1\n",
        )
        .unwrap();
        let p = check_rest(dir.path(), Problems::default());
        assert_eq!(p.total(), 1, "{p}");
        assert!(p.to_string().contains("gone.tsv: cannot read"), "{p}");
    }
}
