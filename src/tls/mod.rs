//! TLS on the cluster IPs: termination on the `https` listeners.
//!
//! Owns the certificate store for many hosts ([`store`]: a folder of PEM
//! files indexed by every DNS name of every certificate, wildcards
//! included, without parsing a single private key; part of each snapshot,
//! rescanned on reload reading only the files that changed), the lazy key
//! cache and the SNI resolver ([`keys`]: a certificate's key is parsed on
//! its first handshake and kept in a bounded cache shared by all workers),
//! and the rustls configuration ([`server_config`]: TLS 1.3 and 1.2, ALPN
//! `h2` and `http/1.1`, the crypto provider chosen explicitly: `ring`).
//! [`hello`] reads a connection's ClientHello without consuming it, so
//! that `server::https` can pass a legacy site's TLS to the legacy
//! balancer undecrypted (PROXY v2 header first) or terminate it here (the
//! bytes given back to the handshake); HTTP/2 or HTTP/1.1 follow by ALPN,
//! and the handler refuses with 421 a request whose Host belongs to
//! another tenant than the connection's SNI (`[tls] misdirected`).
//!
//! Metrics: handshakes by result, passthrough connections and bytes, key
//! cache hits and misses (`crate::metrics::TlsMetrics`), and the
//! certificate gauges rendered from the snapshot at scrape time
//! (the admin listener's `scrape::certificates`).
//!

pub mod hello;
pub mod keys;
pub mod store;
#[cfg(test)]
pub(crate) mod tests;
pub mod validity;

use std::sync::Arc;

/// What the `https` listeners of every worker share: one rustls
/// configuration, and its key cache (for [`keys::KeyCache::prepare`]).
#[derive(Clone)]
pub struct Termination {
    pub config: Arc<rustls::ServerConfig>,
    pub keys: Arc<keys::KeyCache>,
}

/// The rustls configuration of the `https` listeners: TLS 1.3 and 1.2
/// with the provider's modern suites, ALPN `h2` then `http/1.1`, and the
/// certificate of each handshake from the index `current` gives (the
/// current snapshot's; keys
/// loaded on first use into a cache of `key_cache` entries).
pub fn server_config(
    current: impl Fn() -> Arc<store::CertIndex> + Send + Sync + 'static,
    key_cache: usize,
    metrics: &crate::metrics::TlsMetrics,
) -> Result<Termination, rustls::Error> {
    let keys = Arc::new(keys::KeyCache::new(key_cache, provider()).counting(
        metrics.key_cache_hits.clone(),
        metrics.key_cache_misses.clone(),
    ));
    let resolver = keys::Resolver::new(current, keys.clone());
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Resumption: stateless tickets (keys rotated by rustls, per process),
    // and a session cache big enough for a cluster IP's clients (rustls'
    // default keeps 256).
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
    Ok(Termination {
        config: Arc::new(config),
        keys,
    })
}

/// TLS sessions remembered for stateful resumption (about 100 bytes
/// each).
const SESSION_CACHE: usize = 32_768;

/// The crypto provider of every TLS configuration: `ring`, with its
/// default (modern) cipher suites and key exchange groups only.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
