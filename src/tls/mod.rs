//! TLS on the cluster IPs.
//!
//! So far: the certificate store for many hosts ([`store`]: a folder of
//! PEM files indexed by every DNS name of every certificate, wildcards
//! included, without parsing a single private key) and the lazy key cache
//! with the SNI resolver ([`keys`]: a certificate's key is parsed on its
//! first handshake and kept in a bounded cache). The crypto provider is
//! chosen explicitly: `ring` ([`provider`]).
//!
//! Not yet: the HTTPS listeners, SNI passthrough of legacy sites, the
//! certificate folder in the snapshot and its reload, TLS metrics.

pub mod keys;
pub mod store;
#[cfg(test)]
mod tests;

use std::sync::Arc;

/// The crypto provider of every TLS configuration: `ring`, with its
/// default (modern) cipher suites and key exchange groups only.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
