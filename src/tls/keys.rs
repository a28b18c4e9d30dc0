//! Keys on first use: [`KeyCache`] turns a certificate file into a
//! `CertifiedKey` (chain plus signing key) the first time a handshake
//! needs it and keeps it in a bounded cache shared by every worker, and
//! [`Resolver`] answers rustls' "which certificate for this SNI".
//!
//! Turning a key into a signing key is the slow part of loading a
//! certificate (an RSA key is checked for consistency); done lazily, a
//! folder of 50,000 certificates starts as fast as one of ten, and only
//! the sites that get traffic pay, once. A file rewritten gets a new id in
//! the index, so its old key is never served again.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::store::{CertError, CertFile, CertIndex};

/// Parsed keys, by certificate file id, at most `capacity` of them.
pub struct KeyCache {
    cache: quick_cache::sync::Cache<u64, Arc<CertifiedKey>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// Hits and misses (`predictor_tls_key_cache_total`).
    counts: Option<(metrics::Counter, metrics::Counter)>,
}

impl KeyCache {
    pub fn new(capacity: usize, provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        KeyCache {
            cache: quick_cache::sync::Cache::new(capacity.max(1)),
            provider,
            counts: None,
        }
    }

    /// Counts hits and misses on these counters.
    pub fn counting(mut self, hits: metrics::Counter, misses: metrics::Counter) -> Self {
        self.counts = Some((hits, misses));
        self
    }

    /// The chain and signing key of `file`, loaded on first use.
    pub fn get(&self, file: &CertFile) -> Result<Arc<CertifiedKey>, CertError> {
        if let Some(k) = self.cache.get(&file.id) {
            if let Some((hits, _)) = &self.counts {
                hits.increment(1);
            }
            return Ok(k);
        }
        if let Some((_, misses)) = &self.counts {
            misses.increment(1);
        }
        self.cache.get_or_insert_with(&file.id, || self.load(file))
    }

    /// Whether `file`'s key is in the cache (for tests and metrics).
    pub fn contains(&self, file: &CertFile) -> bool {
        self.cache.get(&file.id).is_some()
    }

    fn load(&self, file: &CertFile) -> Result<Arc<CertifiedKey>, CertError> {
        let path = || file.path.clone();
        let bytes = std::fs::read(&file.path).map_err(|source| CertError::Read {
            path: path(),
            source,
        })?;
        let chain = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertError::BadCertificate {
                path: path(),
                reason: e.to_string(),
            })?;
        let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| CertError::BadKey {
            path: path(),
            reason: e.to_string(),
        })?;
        let key = self
            .provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| CertError::BadKey {
                path: path(),
                reason: e.to_string(),
            })?;
        let certified = CertifiedKey::new(chain, key);
        certified
            .keys_match()
            .map_err(|_| CertError::KeyMismatch { path: path() })?;
        Ok(Arc::new(certified))
    }
}

/// Picks the certificate of a handshake from the current index: the SNI
/// name (exact, then wildcard), else the index's default certificate.
pub struct Resolver {
    index: Box<dyn Fn() -> Arc<CertIndex> + Send + Sync>,
    keys: Arc<KeyCache>,
}

impl Resolver {
    pub fn new(
        index: impl Fn() -> Arc<CertIndex> + Send + Sync + 'static,
        keys: Arc<KeyCache>,
    ) -> Self {
        Resolver {
            index: Box::new(index),
            keys,
        }
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = (self.index)();
        let file = index.for_handshake(hello.server_name())?;
        match self.keys.get(file) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(error = %e, "certificate refused at first use");
                None
            }
        }
    }
}
