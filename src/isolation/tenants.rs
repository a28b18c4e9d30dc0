//! Every tenant's live counters, by its number in the tenant table: its
//! requests in flight (for the concurrency limit and `/top`), its rate
//! bucket ([`super::rate`]), the requests it made (scanned by
//! [`super::top`]); and a small table of per-client buckets.
//!
//! 16 bytes per tenant in zeroed memory (a tenant that never takes a
//! request costs no resident page of its own): 16 MB of address space per
//! million tenants, resident only where tenants are busy. The per-client
//! table is fixed: [`CLIENT_SLOTS`] entries, 12 bytes each.
//!
//! A [`TenantsLive`] is bound to one tenant table; the
//! [`TenantRegistry`] carries it across reloads (the same one while the
//! table is kept; the rate buckets copied by tenant name when the table
//! changes; a tier whose rates change starts its tenants' buckets afresh).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::rate::{Rate, retry_after_secs};
use crate::config::Config;
use crate::config::isolation::TierLimits;
use crate::routing::tenants::{TenantIdx, TenantTable};

/// Entries of the per-client bucket table (a power of two).
pub const CLIENT_SLOTS: usize = 1 << 16;

/// Why a request was refused by its tenant's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Over the tenant's rate: retry after this many seconds.
    Rate(u32),
    /// Over the rate of one client address within the tenant.
    ClientRate(u32),
    /// The tenant has its limit of requests in flight.
    Concurrency,
}

impl Limited {
    /// The reason as metrics and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Limited::Rate(_) => "rate",
            Limited::ClientRate(_) => "client_rate",
            Limited::Concurrency => "concurrency",
        }
    }

    /// `Retry-After` in seconds.
    pub fn retry_after(self) -> u32 {
        match self {
            Limited::Rate(s) | Limited::ClientRate(s) => s,
            Limited::Concurrency => 1,
        }
    }
}

/// The live counters of every tenant of one table.
pub struct TenantsLive {
    tat: Box<[AtomicU64]>,
    in_flight: Box<[AtomicU32]>,
    requests: Box<[AtomicU32]>,
    /// Requests refused by a limit, and requests that waited in a queue
    /// (wrapping; written on those slow paths only).
    limited: Box<[AtomicU32]>,
    queued: Box<[AtomicU32]>,
    clients: ClientRates,
}

/// One tenant's counters as read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantNow {
    pub in_flight: u32,
    /// Requests since start (wrapping).
    pub requests: u32,
    /// Whether its rate bucket is empty now.
    pub rate_limited: bool,
}

impl TenantsLive {
    pub fn new(tenants: usize) -> TenantsLive {
        TenantsLive {
            tat: crate::mem::zeroed_atomics(tenants),
            in_flight: crate::mem::zeroed_atomics(tenants),
            requests: crate::mem::zeroed_atomics(tenants),
            limited: crate::mem::zeroed_atomics(tenants),
            queued: crate::mem::zeroed_atomics(tenants),
            clients: ClientRates::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Counts a request of tenant `t` and checks its limits at `now_ns`:
    /// the hold counts it in flight until dropped.
    #[inline]
    pub fn admit(
        self: &Arc<Self>,
        t: TenantIdx,
        limits: &TierLimits,
        client: IpAddr,
        now_ns: u64,
    ) -> Result<TenantHold, Limited> {
        let i = t as usize;
        let (Some(in_flight), Some(tat)) = (self.in_flight.get(i), self.tat.get(i)) else {
            // Not of this table (cannot happen: the snapshot binds both).
            return Err(Limited::Concurrency);
        };
        self.requests[i].fetch_add(1, Relaxed);
        let limited = |l: Limited| {
            self.limited[i].fetch_add(1, Relaxed);
            l
        };
        if let Some(rate) = Rate::new(limits.rate, limits.burst) {
            rate.take(tat, now_ns)
                .map_err(|w| limited(Limited::Rate(retry_after_secs(w))))?;
        }
        if let Some(rate) = Rate::new(limits.client_rate, limits.client_burst) {
            self.clients
                .take(t, client, rate, now_ns)
                .map_err(|w| limited(Limited::ClientRate(retry_after_secs(w))))?;
        }
        let n = in_flight.fetch_add(1, Relaxed);
        if limits.concurrent > 0 && n >= limits.concurrent {
            in_flight.fetch_sub(1, Relaxed);
            return Err(limited(Limited::Concurrency));
        }
        Ok(TenantHold {
            live: self.clone(),
            tenant: t,
        })
    }

    /// Tenant `t`'s counters now (`now_ns` for its bucket).
    pub fn now(&self, t: TenantIdx, limits: &TierLimits, now_ns: u64) -> TenantNow {
        let i = t as usize;
        let get = |v: &[AtomicU32]| v.get(i).map_or(0, |x| x.load(Relaxed));
        let rate_limited = Rate::new(limits.rate, limits.burst).is_some_and(|r| {
            // Would one more be refused? (Read only: a copy of the cell.)
            let cell = AtomicU64::new(self.tat.get(i).map_or(0, |x| x.load(Relaxed)));
            r.take(&cell, now_ns).is_err()
        });
        TenantNow {
            in_flight: get(&self.in_flight),
            requests: get(&self.requests),
            rate_limited,
        }
    }

    /// Counts a request of tenant `t` that waited in a queue.
    pub fn queued(&self, t: TenantIdx) {
        if let Some(q) = self.queued.get(t as usize) {
            q.fetch_add(1, Relaxed);
        }
    }

    /// The counters the `/top` scan reads: in flight, requests, limited,
    /// queued (the last three wrapping counts).
    pub fn counters(&self) -> [&[AtomicU32]; 4] {
        [&self.in_flight, &self.requests, &self.limited, &self.queued]
    }
}

/// A request counted in flight for its tenant until dropped (held with
/// the response body, like the server's count).
pub struct TenantHold {
    live: Arc<TenantsLive>,
    tenant: TenantIdx,
}

impl TenantHold {
    pub fn tenant(&self) -> TenantIdx {
        self.tenant
    }
}

impl std::fmt::Debug for TenantHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantHold")
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl Drop for TenantHold {
    fn drop(&mut self) {
        self.live.in_flight[self.tenant as usize].fetch_sub(1, Relaxed);
    }
}

/// Per-client buckets: a fixed table indexed by a hash of (tenant, client
/// address). Two pairs on one slot share a bucket until the older one's
/// bucket has refilled (then the slot changes hands): bounded memory, and
/// a flood from one address is limited whatever else is in the table.
struct ClientRates {
    keys: Box<[AtomicU32]>,
    tat: Box<[AtomicU64]>,
}

impl ClientRates {
    fn new() -> ClientRates {
        ClientRates {
            keys: crate::mem::zeroed_atomics(CLIENT_SLOTS),
            tat: crate::mem::zeroed_atomics(CLIENT_SLOTS),
        }
    }

    fn take(&self, t: TenantIdx, client: IpAddr, rate: Rate, now_ns: u64) -> Result<(), u64> {
        let h = client_hash(t, client);
        let slot = (h as usize) & (CLIENT_SLOTS - 1);
        // The key's high bits tell pairs of a slot apart (never 0: empty).
        let key = (h >> 16) as u32 | 1;
        let (k, tat) = (&self.keys[slot], &self.tat[slot]);
        if k.load(Relaxed) != key {
            // Another pair's slot: taken over once its bucket is full
            // again (it has been quiet), shared until then.
            if tat.load(Relaxed) <= now_ns {
                k.store(key, Relaxed);
            }
        }
        rate.take(tat, now_ns)
    }

    fn clear(&self) {
        for (k, t) in self.keys.iter().zip(self.tat.iter()) {
            if k.load(Relaxed) != 0 {
                k.store(0, Relaxed);
                t.store(0, Relaxed);
            }
        }
    }
}

/// A 48-bit hash of a tenant and a client address (FxHash-like mixing:
/// no secret is needed, the table only spreads load).
fn client_hash(t: TenantIdx, client: IpAddr) -> u64 {
    let bits: u128 = match client {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let mut h = u64::from(t).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for part in [bits as u64, (bits >> 64) as u64] {
        h = (h.rotate_left(5) ^ part).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
    h ^ (h >> 29)
}

/// Carries tenants' live counters across snapshots.
#[derive(Default)]
pub struct TenantRegistry {
    last: Mutex<Option<Bound>>,
}

struct Bound {
    table: Arc<TenantTable>,
    live: Arc<TenantsLive>,
    /// Each tier's limits by name, as bound.
    limits: Vec<(String, TierLimits)>,
}

impl TenantRegistry {
    /// The live counters for `table` under `config`'s limits at `now_ns`.
    /// The same table keeps its counters (a tier whose rates changed
    /// starts its tenants' buckets afresh); a new table gets new counters
    /// with the buckets of the tenants it shares with the old one. (The
    /// requests in flight at the swap stay counted on the old counters
    /// until they end: a tenant's concurrency limit is loose by that many
    /// for as long.)
    pub fn bind(&self, table: &Arc<TenantTable>, config: &Config, now_ns: u64) -> Arc<TenantsLive> {
        let limits: Vec<(String, TierLimits)> = config
            .tiers
            .iter()
            .zip(&config.isolation.tiers)
            .map(|(t, l)| (t.name.clone(), *l))
            .collect();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let live = match last.take() {
            Some(old) if Arc::ptr_eq(&old.table, table) => {
                reset_changed(&old.live, table, &old.limits, &limits);
                old.live
            }
            Some(old) => Arc::new(carry(&old, table, &limits, now_ns)),
            None => Arc::new(TenantsLive::new(table.tenant_count())),
        };
        *last = Some(Bound {
            table: table.clone(),
            live: live.clone(),
            limits,
        });
        live
    }
}

/// Whether tier `name`'s rates are the same in `old` as `new`.
fn same_rates(old: &[(String, TierLimits)], name: &str, new: &TierLimits) -> bool {
    old.iter()
        .find(|(n, _)| n == name)
        .is_some_and(|(_, l)| !l.rates_differ(new))
}

/// Empties the buckets of the tenants of tiers whose rates changed.
fn reset_changed(
    live: &TenantsLive,
    table: &TenantTable,
    old: &[(String, TierLimits)],
    new: &[(String, TierLimits)],
) {
    let changed: Vec<bool> = new
        .iter()
        .map(|(name, l)| !same_rates(old, name, l))
        .collect();
    if !changed.iter().any(|&c| c) {
        return;
    }
    for (i, r) in table.records().iter().enumerate() {
        if changed.get(usize::from(r.tier)).copied().unwrap_or(true) {
            live.tat[i].store(0, Relaxed);
        }
    }
    live.clients.clear();
}

/// New counters for `table`, with the old table's non-empty buckets of
/// the same tenants (by name; the same index first) whose tier's rates
/// did not change.
fn carry(
    old: &Bound,
    table: &TenantTable,
    limits: &[(String, TierLimits)],
    now_ns: u64,
) -> TenantsLive {
    let live = TenantsLive::new(table.tenant_count());
    let keep = |j: usize| {
        let tier = usize::from(table.records()[j].tier);
        limits
            .get(tier)
            .is_some_and(|(name, l)| same_rates(&old.limits, name, l))
    };
    let mut elsewhere: std::collections::HashMap<u32, Vec<usize>> = Default::default();
    for (i, tat) in old.live.tat.iter().enumerate() {
        let v = tat.load(Relaxed);
        if v <= now_ns {
            continue; // a full bucket: nothing to carry
        }
        let name = old.table.name(i as TenantIdx);
        if i < table.tenant_count() && table.name(i as TenantIdx) == name {
            if keep(i) {
                live.tat[i].store(v, Relaxed);
            }
        } else {
            let point = old.table.record(i as TenantIdx).ring_point;
            elsewhere.entry(point).or_default().push(i);
        }
    }
    if !elsewhere.is_empty() {
        for (j, r) in table.records().iter().enumerate() {
            let Some(olds) = elsewhere.get(&r.ring_point) else {
                continue;
            };
            for &i in olds {
                if old.table.name(i as TenantIdx) == table.name(j as TenantIdx) && keep(j) {
                    live.tat[j].store(old.live.tat[i].load(Relaxed), Relaxed);
                }
            }
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tenants::TenantTableBuilder;

    const S: u64 = 1_000_000_000;

    fn table(names: &[&str]) -> Arc<TenantTable> {
        let mut b = TenantTableBuilder::default();
        for n in names {
            b.add_line(&format!("{n}.example"), n, 0, "f").unwrap();
        }
        Arc::new(b.build())
    }

    /// Tier `basic` (0) with `rate` per second, bursts of 2, 3 at once.
    fn config(rate: u32) -> Config {
        let mut c = crate::config::tests_support::two_tiers();
        let l = &mut c.isolation.tiers[0];
        (l.rate, l.burst, l.concurrent) = (rate, 2, 3);
        c
    }

    fn idx(t: &TenantTable, name: &str) -> TenantIdx {
        (0..t.tenant_count() as TenantIdx)
            .find(|&i| t.name(i) == name)
            .unwrap()
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn concurrency_is_counted_until_the_hold_drops() {
        let live = Arc::new(TenantsLive::new(4));
        let l = config(0).isolation.tiers[0];
        let holds: Vec<_> = (0..3).map(|_| live.admit(1, &l, IP, S).unwrap()).collect();
        assert_eq!(live.admit(1, &l, IP, S).unwrap_err(), Limited::Concurrency);
        assert!(
            live.admit(2, &l, IP, S).is_ok(),
            "another tenant is not limited"
        );
        assert_eq!(live.now(1, &l, S).in_flight, 3);
        drop(holds);
        assert_eq!(live.now(1, &l, S).in_flight, 0, "no leak");
        assert_eq!(live.now(1, &l, S).requests, 4);
        assert_eq!(live.counters()[2][1].load(Relaxed), 1, "one limited");
    }

    #[test]
    fn rates_are_kept_across_reloads_and_reset_when_the_tier_changes() {
        let r = TenantRegistry::default();
        let a = table(&["one", "two"]);
        let c = config(1);
        let live = r.bind(&a, &c, S);
        let one = idx(&a, "one");
        let l = c.isolation.tiers[0];
        for _ in 0..2 {
            drop(live.admit(one, &l, IP, S).unwrap());
        }
        assert_eq!(live.admit(one, &l, IP, S).unwrap_err(), Limited::Rate(1));
        // A reload that keeps the table and the tier's limits: the same
        // counters, the bucket still empty.
        let again = r.bind(&a, &c, S);
        assert!(Arc::ptr_eq(&live, &again));
        assert!(again.admit(one, &l, IP, S).is_err());
        // A new table (reordered, one more tenant): the bucket follows the
        // tenant by name.
        let b = table(&["three", "two", "one"]);
        let moved = r.bind(&b, &c, S);
        assert!(moved.admit(idx(&b, "one"), &l, IP, S).is_err());
        assert!(moved.admit(idx(&b, "three"), &l, IP, S).is_ok());
        // The tier's rate changes: its tenants' buckets start afresh.
        let faster = config(5);
        let reset = r.bind(&b, &faster, S);
        assert!(Arc::ptr_eq(&moved, &reset), "same table, same counters");
        let l5 = faster.isolation.tiers[0];
        assert!(reset.admit(idx(&b, "one"), &l5, IP, S).is_ok());
    }

    #[test]
    fn one_client_is_limited_within_its_tenant() {
        let live = Arc::new(TenantsLive::new(2));
        let mut l = config(0).isolation.tiers[0];
        (l.client_rate, l.client_burst, l.concurrent) = (1, 3, 0);
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));
        for _ in 0..3 {
            drop(live.admit(0, &l, IP, S).unwrap());
        }
        assert_eq!(
            live.admit(0, &l, IP, S).unwrap_err(),
            Limited::ClientRate(1)
        );
        assert!(
            live.admit(0, &l, other, S).is_ok(),
            "another address is not"
        );
        assert!(
            live.admit(1, &l, IP, S).is_ok(),
            "nor the same address on another tenant"
        );
        assert!(
            live.admit(0, &l, IP, 2 * S).is_ok(),
            "a second later, one more"
        );
    }
}
