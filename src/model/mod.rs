//! The shared vocabulary: what several layers name and none of them owns.
//! A leaf: it imports nothing of the crate, so every module may use it
//! without an import cycle.
//!
//! Owns: host normalisation ([`host`]: what a request's `Host`, a table's
//! line and a config's address all go through), the headers predictor
//! manages ([`headers`]), a tenant's point on
//! the placement rings ([`ring_point`], which the tenant table computes
//! when loaded and placement walks), and the bound of attempts per request
//! ([`MAX_ATTEMPTS`], which the config validates and placement fills).

pub mod headers;
pub mod host;

use std::hash::BuildHasher;

use hashring::DefaultHashBuilder;

/// Most servers a request tries (the bound of `limits.upstream_attempts`
/// and of a tier's `k_max`).
pub const MAX_ATTEMPTS: usize = 8;

/// A tenant's point on every ring: the top 32 bits of the hash `hashring`
/// gives the tenant's name as a key (kept in 4 bytes per tenant, so a
/// million tenants cost 4 MB less). A tenant lands where `hashring` puts it
/// unless a ring point falls between the truncated and the full hash,
/// about 2 tenants in a million; either way the same on every instance.
pub fn ring_point(tenant: &str) -> u32 {
    (DefaultHashBuilder.hash_one(tenant) >> 32) as u32
}
