//! What the config files are right now, cheaply: for each file a config
//! reads, its size, modification time and inode (following symlinks, so a
//! ConfigMap's `..data` swap shows), plus a hash of the content for small
//! files (a rewrite within one timestamp tick and of the same size still
//! shows). Comparing two fingerprints says whether anything changed.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::config::stamp::FileStamp;
use crate::config::{Config, MAIN_FILE};

/// Files at most this big are hashed whole.
const HASHED_UP_TO: u64 = 1 << 20;

/// One file's identity, or `None` when it cannot be read. Files hashed
/// whole compare by content (a file written again with the same bytes is
/// the same), the others by size, modification time and inode.
#[derive(Debug, Clone, Eq)]
struct FileId {
    stamp: FileStamp,
    hash: Option<u64>,
}

impl PartialEq for FileId {
    fn eq(&self, other: &FileId) -> bool {
        match (self.hash, other.hash) {
            (Some(a), Some(b)) => a == b && self.stamp.len == other.stamp.len,
            _ => self.stamp == other.stamp,
        }
    }
}

/// The identities of every file a config reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<(PathBuf, Option<FileId>)>);

impl Fingerprint {
    /// The files of the folder `dir` as `config` reads them.
    pub fn of(dir: &Path, config: &Config) -> Fingerprint {
        // Not the certificate files: a folder may hold tens of thousands;
        // the watch names those that changed (`CertChanges`).
        let ids: Vec<(PathBuf, Option<FileId>)> = files(dir, config)
            .into_iter()
            .map(|p| {
                let id = identify(&p, HASHED_UP_TO);
                (p, id)
            })
            .collect();
        Fingerprint(ids)
    }

    /// Whether every file was last written well before `t` (so that a
    /// snapshot read from `t` on holds exactly these files).
    pub fn settled_before(&self, t: std::time::SystemTime) -> bool {
        self.0
            .iter()
            .all(|(_, id)| id.as_ref().is_some_and(|id| id.stamp.settled_before(t)))
    }

    /// Whether a file is missing (being replaced, most likely).
    pub fn incomplete(&self) -> bool {
        self.0.iter().any(|(_, id)| id.is_none())
    }
}

/// The files a config reads: `predictor.toml`, the tenant table, the state
/// file, the pages.
fn files(dir: &Path, config: &Config) -> Vec<PathBuf> {
    let mut out = vec![
        dir.join(MAIN_FILE),
        config.tenants_file.clone(),
        config.migration_file.clone(),
    ];
    out.extend(config.maintenance.page.clone());
    out.extend(config.legacy.as_ref().and_then(|l| l.down_page.clone()));
    out.sort();
    out.dedup();
    out
}

/// The folders to watch: the config folder, the certificate folder, and
/// every folder holding a file the config reads.
pub fn folders(dir: &Path, config: &Config) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    out.extend(config.tls.as_ref().map(|t| t.certificates.clone()));
    for f in files(dir, config) {
        if let Some(parent) = f.parent() {
            out.push(parent.to_path_buf());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A file's stamp, and the hash of its content when at most `hash_up_to`
/// bytes long.
fn identify(path: &Path, hash_up_to: u64) -> Option<FileId> {
    let stamp = FileStamp::of(path)?;
    let hash = if stamp.len <= hash_up_to {
        let bytes = std::fs::read(path).ok()?;
        let mut h = std::hash::DefaultHasher::new();
        bytes.hash(&mut h);
        Some(h.finish())
    } else {
        None
    };
    Some(FileId { stamp, hash })
}
