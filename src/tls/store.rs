//! [`CertIndex`]: every DNS name of every certificate in a folder, mapped
//! to its file.
//!
//! A folder holds one PEM file (`*.pem`) per certificate: the chain, leaf
//! first, and its private key. Indexing reads each file's certificates and
//! takes the leaf's subjectAltName DNS names (`*.example.com` is indexed as
//! a wildcard); the key is only checked to be there and decodable, not
//! turned into a signing key (the slow part, done on first use by
//! [`super::keys`]). A file that cannot be indexed is refused with its
//! path and why; the others are indexed. Rescanning reuses the entries of
//! files whose stamp (size, mtime, inode) is unchanged, so a reload costs
//! the files that changed.
//!
//! Matching follows RFC 6125: exact name first, then a wildcard covering
//! exactly one more label (`*.example.com` matches `a.example.com`, not
//! `example.com` nor `a.b.example.com`). Two certificates for one name:
//! the one valid longest wins (a rotation overlaps the old certificate).

use std::collections::HashMap;
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
    /// The leaf's DNS names, lowercased (`*.` kept on wildcards).
    pub names: Vec<String>,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
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

/// The certificates of a folder, by name.
#[derive(Debug, Default)]
pub struct CertIndex {
    dir: PathBuf,
    files: Vec<Arc<CertFile>>,
    exact: HashMap<String, u32>,
    /// `example.com` for `*.example.com`.
    wildcards: HashMap<String, u32>,
    /// Served without SNI or for a name without a certificate.
    default: Option<u32>,
    /// Files of the folder refused by the scan that built this index.
    refused: usize,
}

impl CertIndex {
    /// Indexes `dir`, reusing the entries of `previous` for files whose
    /// stamp has not changed; `default` names the file served without SNI
    /// or for an unknown name. Returns the index and the files refused.
    pub fn scan(
        dir: &Path,
        default: Option<&str>,
        previous: Option<&CertIndex>,
    ) -> Result<(CertIndex, Vec<CertError>), CertError> {
        let read = |source| CertError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem"))
            .collect();
        paths.sort();
        let old: HashMap<&Path, &Arc<CertFile>> = previous
            .map(|p| p.files.iter().map(|f| (f.path.as_path(), f)).collect())
            .unwrap_or_default();
        let mut index = CertIndex {
            dir: dir.to_path_buf(),
            ..CertIndex::default()
        };
        let mut refused = Vec::new();
        for path in paths {
            let stamp = FileStamp::of(&path);
            let reused = old.get(path.as_path()).filter(|f| {
                stamp.is_some() && f.stamp == stamp && !stamp.is_some_and(|s| s.is_recent())
            });
            let file = match reused {
                Some(f) => Arc::clone(f),
                None => match index_file(&path, stamp) {
                    Ok(f) => Arc::new(f),
                    Err(e) => {
                        refused.push(e);
                        continue;
                    }
                },
            };
            index.add(file);
        }
        index.refused = refused.len();
        index.default = default.and_then(|name| {
            let path = dir.join(name);
            index
                .files
                .iter()
                .position(|f| f.path == path)
                .map(|i| i as u32)
        });
        Ok((index, refused))
    }

    fn add(&mut self, file: Arc<CertFile>) {
        let i = self.files.len() as u32;
        for name in &file.names {
            let (map, key) = match name.strip_prefix("*.") {
                Some(parent) => (&mut self.wildcards, parent),
                None => (&mut self.exact, name.as_str()),
            };
            let files = &self.files;
            map.entry(key.to_string())
                .and_modify(|cur| {
                    if file.not_after > files[*cur as usize].not_after {
                        *cur = i;
                    }
                })
                .or_insert(i);
        }
        self.files.push(file);
    }

    /// The certificate for a server name (as sent in SNI, any case).
    pub fn lookup(&self, name: &str) -> Option<&Arc<CertFile>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let found = self.exact.get(&name).or_else(|| {
            let (_, parent) = name.split_once('.')?;
            self.wildcards.get(parent)
        });
        found.map(|&i| &self.files[i as usize])
    }

    /// The certificate stored in `file` (a name in the folder).
    pub fn by_file(&self, file: &str) -> Option<&Arc<CertFile>> {
        let path = self.dir.join(file);
        self.files.iter().find(|f| f.path == path)
    }

    /// The certificate for a handshake: its SNI name's, else the default.
    pub fn for_handshake(&self, sni: Option<&str>) -> Option<&Arc<CertFile>> {
        sni.and_then(|n| self.lookup(n))
            .or_else(|| self.default.map(|i| &self.files[i as usize]))
    }

    pub fn files(&self) -> &[Arc<CertFile>] {
        &self.files
    }

    /// How many files of the folder were refused.
    pub fn refused(&self) -> usize {
        self.refused
    }
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
fn leaf_names(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}
