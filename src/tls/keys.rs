//! Keys on first use: [`KeyCache`] turns a certificate file into a
//! `CertifiedKey` (chain plus signing key) the first time a handshake
//! needs it and keeps it in a bounded cache shared by every worker, and
//! [`Resolver`] answers rustls' "which certificate for this SNI".
//!
//! Turning a key into a signing key is the slow part of loading a
//! certificate (an RSA key is checked for consistency); done lazily, a
//! folder of 50,000 certificates starts as fast as one of ten, and only
//! the sites that get traffic pay, once. The connection's task asks for
//! the key before the handshake ([`KeyCache::prepare`]), which parses a
//! missing one on a blocking thread: a worker never stalls on a parse
//! while its other connections wait (the resolver parses inline only if
//! the key was evicted in between). A file rewritten gets a new id in the
//! index, so its old key is never served again.

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
    /// Hits and misses (`predictor_tls_key_cache_total`), counted by
    /// [`KeyCache::prepare`]: one per handshake.
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

    /// The chain and signing key of `file`, loaded on first use (inline:
    /// see [`KeyCache::prepare`]).
    pub fn get(&self, file: &CertFile) -> Result<Arc<CertifiedKey>, CertError> {
        self.cache.get_or_insert_with(&file.id, || self.load(file))
    }

    /// Makes sure the key of `file` is parsed before its handshake: a key
    /// not in the cache is parsed on a blocking thread, not on the
    /// worker. Counts a hit or a miss. A key refused is logged by the
    /// resolver when the handshake asks for it.
    pub async fn prepare(self: &Arc<Self>, file: Arc<CertFile>) {
        let hit = self.contains(&file);
        if let Some((hits, misses)) = &self.counts {
            if hit { hits } else { misses }.increment(1);
        }
        if !hit {
            let keys = Arc::clone(self);
            let _ = tokio::task::spawn_blocking(move || keys.get(&file)).await;
        }
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
