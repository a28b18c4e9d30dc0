//! Problems found while loading the config folder.
//!
//! Every problem names its file, its line when there is one, the key path for
//! `predictor.toml`, and what was expected, so that an operator can fix a bad
//! line without reading code. Loading collects problems instead of stopping
//! at the first one; the list is capped so that a million broken lines do not
//! become a million log lines.

use std::fmt;
use std::path::{Path, PathBuf};

/// How many problems are kept in detail; the rest are only counted.
pub const MAX_REPORTED: usize = 100;

/// One thing wrong with one place of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// Key path in `predictor.toml` (`pools.shared.servers[1].address`).
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The problems of one load, in file order, capped at [`MAX_REPORTED`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    list: Vec<Problem>,
    omitted: usize,
}

impl Problems {
    pub fn push(&mut self, problem: Problem) {
        if self.list.len() < MAX_REPORTED {
            self.list.push(problem);
        } else {
            self.omitted += 1;
        }
    }

    pub fn extend(&mut self, other: Problems) {
        for p in other.list {
            self.push(p);
        }
        self.omitted += other.omitted;
    }

    /// Counts `n` problems found but not kept in detail.
    pub fn omit(&mut self, n: usize) {
        self.omitted += n;
    }

    /// Both lists in file and line order, the first [`MAX_REPORTED`] kept
    /// (each list holding the first problems of its own kind, the first
    /// of both are among them).
    pub fn merge(mut self, other: Problems) -> Problems {
        let omitted = self.omitted + other.omitted;
        self.list.extend(other.list);
        self.sort();
        let extra = self.list.len().saturating_sub(MAX_REPORTED);
        self.list.truncate(MAX_REPORTED);
        Problems {
            list: self.list,
            omitted: omitted + extra,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && self.omitted == 0
    }

    /// Puts the problems in file and line order.
    pub fn sort(&mut self) {
        self.list
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    }

    /// All problems found, including those not kept in detail.
    pub fn total(&self) -> usize {
        self.list.len() + self.omitted
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.list.iter()
    }

    /// `Ok(())` when nothing was found, the problems otherwise.
    pub fn into_result(self) -> Result<(), ConfigError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self))
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.list.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        if self.omitted > 0 {
            write!(f, "\n... and {} more problems", self.omitted)?;
        }
        Ok(())
    }
}

/// Why a config folder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Problems),
}

impl ConfigError {
    /// A single problem without a line (a missing file, an empty folder).
    pub fn single(file: &Path, message: impl Into<String>) -> Self {
        let mut p = Problems::default();
        p.push(Problem {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: message.into(),
        });
        ConfigError::Invalid(p)
    }

    /// Number of problems this error stands for.
    pub fn count(&self) -> usize {
        match self {
            ConfigError::Read { .. } => 1,
            ConfigError::Invalid(p) => p.total(),
        }
    }
}

/// Collects problems of one text file, turning byte offsets into lines.
pub(crate) struct Collector<'a> {
    file: &'a Path,
    text: &'a str,
    pub(crate) problems: Problems,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Collector {
            file,
            text,
            problems: Problems::default(),
        }
    }

    /// A problem at a byte span of the file, under a key path.
    pub(crate) fn at(
        &mut self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = line_of(self.text, span.start);
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line: Some(line),
            key: Some(key.into()),
            message: message.into(),
        });
    }

    /// The line of a byte offset of the file.
    pub(crate) fn line(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// A problem of the whole file (a missing required key).
    pub(crate) fn file_level(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line: None,
            key: Some(key.into()),
            message: message.into(),
        });
    }
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let t = "a\nb\nc";
        assert_eq!(line_of(t, 0), 1);
        assert_eq!(line_of(t, 2), 2);
        assert_eq!(line_of(t, 4), 3);
        assert_eq!(line_of(t, 100), 3);
    }

    #[test]
    fn problems_are_capped_but_counted() {
        let mut p = Problems::default();
        for i in 0..MAX_REPORTED + 5 {
            p.push(Problem {
                file: "f".into(),
                line: Some(i + 1),
                key: None,
                message: "bad".into(),
            });
        }
        assert_eq!(p.iter().count(), MAX_REPORTED);
        assert_eq!(p.total(), MAX_REPORTED + 5);
        assert!(p.to_string().ends_with("... and 5 more problems"));
    }

    #[test]
    fn display_names_file_line_and_key() {
        let p = Problem {
            file: "cfg/predictor.toml".into(),
            line: Some(7),
            key: Some("timeouts.connect".into()),
            message: "expected a duration like \"2s\"".into(),
        };
        assert_eq!(
            p.to_string(),
            "cfg/predictor.toml:7: timeouts.connect: expected a duration like \"2s\""
        );
    }
}
