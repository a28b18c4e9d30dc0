//! Placement: which webservers of a pool serve a tenant, in the order they
//! are tried.
//!
//! Owns the consistent-hash rings, one per pool, built with the `hashring`
//! crate from virtual nodes `(server id, replica)`: a server of weight `w`
//! gets `w * VNODES_PER_WEIGHT` points. Only stable ids and explicit integers
//! are hashed, with `hashring`'s fixed-key SipHash, so every instance given
//! the same config computes the same rings, and removing a server moves only
//! the tenants it held. A tenant's preference list is the walk of the ring
//! from its point ([`ring_point`]), distinct servers only.
//!
//! Each tenant also gets a *home* ([`bounded`]): the first server of its
//! walk with room under the bounded-load cap in capacity units (its tier's
//! `cost` per site), so that no server holds more than `balance_factor`
//! times its share of the sites. The home goes first in the preference list.
//!
//! Invariants: pure (no I/O, no clock, no randomness); built once per
//! snapshot; on the request path a placement is one binary search over the
//! ring plus a copy of precomputed server numbers.

pub mod bounded;
pub mod choose;
pub mod hot;
mod ring;

pub use ring::Ring;

pub use crate::model::{MAX_ATTEMPTS, ring_point};

use crate::config::{Config, PoolId, ServerIdx};
use crate::routing::tenants::{TenantIdx, TenantRecord, TenantTable};

/// Ring points per unit of server weight.
pub const VNODES_PER_WEIGHT: u32 = 100;
/// Distinct servers precomputed per ring slot (the request path's depth).
pub const PREFIX: usize = MAX_ATTEMPTS;
/// Puts `home` first in the head of a preference list `out`; the others
/// keep their ring order (the last one drops out if `home` was not there).
#[inline]
pub fn home_first(out: &mut [ServerIdx], home: ServerIdx) {
    let n = out.len();
    if n == 0 || out[0] == home {
        return;
    }
    // Moved off its ring server by the load bound (about 1 in 1,000).
    match out.iter().position(|&s| s == home) {
        Some(i) => out[..=i].rotate_right(1),
        None => {
            out.copy_within(..n - 1, 1);
            out[0] = home;
        }
    }
}

impl From<TenantRecord> for bounded::Site {
    fn from(r: TenantRecord) -> Self {
        bounded::Site {
            ring_point: r.ring_point,
            tier: r.tier,
        }
    }
}

/// The rings of every pool of a config, and every tenant's home server.
#[derive(Debug, Clone)]
pub struct Placement {
    rings: Box<[Ring]>,
    /// Each tenant's home in its tier's pool ([`bounded`]), by tenant
    /// number.
    homes: Box<[ServerIdx]>,
}

impl Placement {
    pub fn new(config: &Config, tenants: &TenantTable) -> Placement {
        let rings: Box<[Ring]> = config.pools.iter().map(Ring::build).collect();
        let (homes, _) = bounded::assign(config, &rings, tenants.records());
        Placement { rings, homes }
    }

    pub fn ring(&self, pool: PoolId) -> &Ring {
        &self.rings[usize::from(pool)]
    }

    /// The preference list of `tenant` in `pool`: its home first, then the
    /// ring walk from its point. Fills `out`; returns how many.
    #[inline]
    pub fn servers(
        &self,
        tenant: TenantIdx,
        pool: PoolId,
        point: u32,
        out: &mut [ServerIdx],
    ) -> usize {
        let n = self.ring(pool).preference_into(point, out);
        if let Some(&home) = self.homes.get(tenant as usize) {
            home_first(&mut out[..n], home);
        }
        n
    }

    /// The home of `tenant` in its tier's pool.
    pub fn home(&self, tenant: TenantIdx) -> Option<ServerIdx> {
        self.homes.get(tenant as usize).copied()
    }

    /// The whole preference list of `tenant` (home first), for operators.
    pub fn preference(&self, tenant: TenantIdx, pool: PoolId, point: u32) -> Vec<ServerIdx> {
        let mut all = self.ring(pool).preference(point);
        if let Some(&home) = self.homes.get(tenant as usize) {
            if let Some(i) = all.iter().position(|&s| s == home) {
                all[..=i].rotate_right(1);
            }
        }
        all
    }
}
