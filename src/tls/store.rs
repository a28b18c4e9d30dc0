//! [`CertIndex`]: every DNS name of every certificate in a folder, mapped
//! to its file.
//!
//! A folder holds one PEM file (`*.pem`) per certificate: the chain, leaf
//! first, and its private key. Indexing reads each file's certificates and
//! takes the leaf's subjectAltName DNS names (`*.example.com` is indexed as
//! a wildcard); the key is only checked to be there and decodable, not
//! turned into a signing key (the slow part, done on first use by
//! [`super::keys`]). A file that cannot be indexed is refused with its
//! path and why; the others are indexed. A reload looks again only at the
//! files the folder watch reported ([`CertIndex::update`], given
//! [`CertChanges`]); a full rescan ([`CertIndex::scan`]) still reuses the
//! entries of files whose stamp (size, mtime, inode) is unchanged, so
//! either way a reload reads only the files that changed.
//!
//! Matching follows RFC 6125: exact name first, then a wildcard covering
//! exactly one more label (`*.example.com` matches `a.example.com`, not
//! `example.com` nor `a.b.example.com`). Two certificates for one name:
//! the one valid longest wins (a rotation overlaps the old certificate).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::stamp::FileStamp;

/// One indexed certificate file.
#[derive(Debug)]
pub struct CertFile {
    /// Unique for the life of the process: a rewritten file gets a new id,
    /// so a key cached for its old content is never served for the new.
    pub id: u64,
    pub path: PathBuf,
    stamp: Option<FileStamp>,
    /// The leaf's DNS names, lowercased.
    pub names: Vec<Name>,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
}

/// A DNS name of a certificate: `domain` itself, or with `wildcard` any
/// one label under it (`*.example.com` has the domain `example.com`).
/// Shared, so that rebuilding an index allocates no name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub wildcard: bool,
    pub domain: Arc<str>,
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.domain)
    }
}

/// Why a certificate file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no certificate (expected a PEM CERTIFICATE block, leaf first)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: bad certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{}: the certificate names no DNS name (subjectAltName)", path.display())]
    NoNames { path: PathBuf },
    #[error("{}: no usable private key (expected a PEM PRIVATE KEY block): {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{}: the private key does not match the certificate", path.display())]
    KeyMismatch { path: PathBuf },
}

impl CertError {
    /// The file (or folder) concerned.
    pub fn path(&self) -> &Path {
        match self {
            CertError::Read { path, .. }
            | CertError::NoCertificate { path }
            | CertError::BadCertificate { path, .. }
            | CertError::NoNames { path }
            | CertError::BadKey { path, .. }
            | CertError::KeyMismatch { path } => path,
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Which certificate files to look at again on a reload: none, the ones
/// the folder watch reported, or the whole folder (at start, on `SIGHUP`,
/// when the watch lost events or saw the folder itself replaced, as a
/// Kubernetes Secret's `..data` swap does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CertChanges {
    #[default]
    None,
    Files(BTreeSet<PathBuf>),
    All,
}

impl CertChanges {
    /// Adds what `other` asks to look at.
    pub fn merge(&mut self, other: CertChanges) {
        match (&mut *self, other) {
            (_, CertChanges::None) | (CertChanges::All, _) => {}
            (CertChanges::Files(mine), CertChanges::Files(theirs)) => mine.extend(theirs),
            (me, other) => *me = other,
        }
    }

    /// Adds one file.
    pub fn file(&mut self, path: PathBuf) {
        match self {
            CertChanges::All => {}
            CertChanges::Files(files) => {
                files.insert(path);
            }
            CertChanges::None => *self = CertChanges::Files(BTreeSet::from([path])),
        }
    }
}

/// The certificates of a folder, by name.
#[derive(Debug, Default)]
pub struct CertIndex {
    dir: PathBuf,
    /// Sorted by path.
    files: Vec<Arc<CertFile>>,
    exact: HashMap<Arc<str>, u32>,
    /// `example.com` for `*.example.com`.
    wildcards: HashMap<Arc<str>, u32>,
    /// Served without SNI or for a name without a certificate.
    default: Option<u32>,
    /// The default certificate's file name, as configured.
    default_name: Option<String>,
    /// Files of the folder refused (kept until they change).
    refused: Vec<Arc<CertError>>,
}

impl CertIndex {
    /// Indexes every `*.pem` file of `dir`, reusing the entries of
    /// `previous` for files whose stamp has not changed; `default` names
    /// the file served without SNI or for an unknown name. The files
    /// refused are in [`CertIndex::refused`]; only an unreadable folder
    /// fails.
    pub fn scan(
        dir: &Path,
        default: Option<&str>,
        previous: Option<&CertIndex>,
    ) -> Result<CertIndex, CertError> {
        let read = |source| CertError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_certificate(p))
            .collect();
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        let mut refused = Vec::new();
        for path in paths {
            let old = previous.and_then(|p| p.file_at(&path));
            match visit(path, old) {
                Some(Ok(f)) => files.push(f),
                Some(Err(e)) => refused.push(Arc::new(e)),
                None => {}
            }
        }
        Ok(CertIndex::assemble(dir, files, refused, default))
    }

    /// This index with the files of `changed` looked at again (the others,
    /// and the refusals of the others, kept without a look): a reload
    /// after a renewal costs the renewed files, not the folder. A path
    /// outside the folder, or not a `*.pem` file, is ignored; a path gone
    /// removes its certificate.
    pub fn update(&self, changed: &BTreeSet<PathBuf>, default: Option<&str>) -> CertIndex {
        let mut files = self.files.clone();
        let mut refused = self.refused.clone();
        for path in changed {
            if path.parent() != Some(self.dir.as_path()) || !is_certificate(path) {
                continue;
            }
            refused.retain(|e| e.path() != path);
            let at = files.binary_search_by(|f| f.path.as_path().cmp(path));
            let old = at.ok().map(|i| &files[i]);
            match (visit(path.clone(), old), at) {
                (Some(Ok(f)), Ok(i)) => files[i] = f,
                (Some(Ok(f)), Err(i)) => files.insert(i, f),
                (found, Ok(i)) => {
                    files.remove(i);
                    if let Some(Err(e)) = found {
                        refused.push(Arc::new(e));
                    }
                }
                (Some(Err(e)), Err(_)) => refused.push(Arc::new(e)),
                (None, Err(_)) => {}
            }
        }
        refused.sort_by(|a, b| a.path().cmp(b.path()));
        CertIndex::assemble(&self.dir, files, refused, default)
    }

    /// Whether every file of `changed` is as this index holds it: indexed
    /// with the same (settled) stamp, or absent and never seen. A refused
    /// file is always looked at again.
    pub fn holds(&self, changed: &BTreeSet<PathBuf>) -> bool {
        changed.iter().all(|path| {
            if path.parent() != Some(self.dir.as_path()) || !is_certificate(path) {
                return true;
            }
            if self.refused.iter().any(|e| e.path() == path) {
                return false;
            }
            let stamp = FileStamp::of(path);
            match self.file_at(path) {
                Some(f) => stamp.is_some_and(|s| f.stamp == Some(s) && !s.is_recent()),
                None => stamp.is_none(),
            }
        })
    }

    /// The entry of the file at `path`.
    fn file_at(&self, path: &Path) -> Option<&Arc<CertFile>> {
        let i = self
            .files
            .binary_search_by(|f| f.path.as_path().cmp(path))
            .ok()?;
        Some(&self.files[i])
    }

    /// The index of `files` (sorted by path).
    fn assemble(
        dir: &Path,
        files: Vec<Arc<CertFile>>,
        refused: Vec<Arc<CertError>>,
        default: Option<&str>,
    ) -> CertIndex {
        let names: usize = files.iter().map(|f| f.names.len()).sum();
        let mut index = CertIndex {
            dir: dir.to_path_buf(),
            exact: HashMap::with_capacity(names),
            refused,
            default_name: default.map(str::to_string),
            ..CertIndex::default()
        };
        for (i, file) in files.iter().enumerate() {
            index.add(&files, i as u32, file);
        }
        index.files = files;
        index.default = default.and_then(|name| {
            let path = dir.join(name);
            let i = index.files.binary_search_by(|f| f.path.cmp(&path)).ok()?;
            Some(i as u32)
        });
        index
    }

    /// Indexes `file` (number `i` of `files`) by its names: of two
    /// certificates for a name, the one valid longest wins (then the first
    /// by path).
    fn add(&mut self, files: &[Arc<CertFile>], i: u32, file: &CertFile) {
        for name in &file.names {
            let map = match name.wildcard {
                true => &mut self.wildcards,
                false => &mut self.exact,
            };
            map.entry(Arc::clone(&name.domain))
                .and_modify(|cur| {
                    if file.not_after > files[*cur as usize].not_after {
                        *cur = i;
                    }
                })
                .or_insert(i);
        }
    }

    /// The certificate for a server name (as sent in SNI, any case).
    pub fn lookup(&self, name: &str) -> Option<&Arc<CertFile>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let found = self.exact.get(name.as_str()).or_else(|| {
            let (_, parent) = name.split_once('.')?;
            self.wildcards.get(parent)
        });
        found.map(|&i| &self.files[i as usize])
    }

    /// The certificate stored in `file` (a name in the folder).
    pub fn by_file(&self, file: &str) -> Option<&Arc<CertFile>> {
        self.file_at(&self.dir.join(file))
    }

    /// The certificate for a handshake: its SNI name's, else the default.
    pub fn for_handshake(&self, sni: Option<&str>) -> Option<&Arc<CertFile>> {
        sni.and_then(|n| self.lookup(n))
            .or_else(|| self.default.map(|i| &self.files[i as usize]))
    }

    /// The default certificate's file name, as configured.
    pub fn default_name(&self) -> Option<&str> {
        self.default_name.as_deref()
    }

    /// The folder indexed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn files(&self) -> &[Arc<CertFile>] {
        &self.files
    }

    /// The files of the folder refused, and why.
    pub fn refused(&self) -> &[Arc<CertError>] {
        &self.refused
    }
}

/// Whether the folder watch should count `path` as a certificate file.
pub fn is_certificate(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "pem")
}

/// The entry for `path`: the old one when the file's stamp is unchanged
/// (and settled), else the file read again; `None` when it is gone.
fn visit(path: PathBuf, old: Option<&Arc<CertFile>>) -> Option<Result<Arc<CertFile>, CertError>> {
    let stamp = FileStamp::of(&path);
    if stamp.is_none() && !path.exists() {
        return None;
    }
    let reused = old.filter(|f| stamp.is_some_and(|s| f.stamp == Some(s) && !s.is_recent()));
    Some(match reused {
        Some(f) => Ok(Arc::clone(f)),
        None => index_file(&path, stamp).map(Arc::new),
    })
}

/// Reads one file: certificates parsed, names taken, key decoded only.
fn index_file(path: &Path, stamp: Option<FileStamp>) -> Result<CertFile, CertError> {
    let bytes = std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let leaf = CertificateDer::pem_slice_iter(&bytes)
        .next()
        .ok_or_else(|| CertError::NoCertificate {
            path: path.to_path_buf(),
        })?
        .map_err(|e| CertError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let (names, not_after) = leaf_names(&leaf).map_err(|reason| CertError::BadCertificate {
        path: path.to_path_buf(),
        reason,
    })?;
    if names.is_empty() {
        return Err(CertError::NoNames {
            path: path.to_path_buf(),
        });
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| CertError::BadKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(CertFile {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        path: path.to_path_buf(),
        stamp,
        names,
        not_after,
    })
}

/// The leaf's subjectAltName DNS names (lowercased) and its expiry.
fn leaf_names(der: &CertificateDer<'_>) -> Result<(Vec<Name>, i64), String> {
    let cert = webpki::EndEntityCert::try_from(der).map_err(|e| e.to_string())?;
    let names = cert
        .valid_dns_names()
        .map(|n| {
            let name = n.trim_end_matches('.').to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(parent) => Name {
                    wildcard: true,
                    domain: parent.into(),
                },
                None => Name {
                    wildcard: false,
                    domain: name.into(),
                },
            }
        })
        .collect();
    let not_after = super::validity::not_after(der).map_err(|e| e.to_string())?;
    Ok((names, not_after))
}
