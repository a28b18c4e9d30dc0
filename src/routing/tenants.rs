//! [`TenantTable`]: every host of the cluster and the tenant it belongs to.
//!
//! Two [`HostIndex`]es (exact names and `*.suffix` wildcards) map a host to a
//! tenant number; a tenant is a 12-byte record (tier, filer, ring point) plus
//! its name in a shared arena. A million hosts fit in about 50 MB. Immutable
//! once built; a reload builds a new one beside it, straight into its final
//! arrays ([`TenantsBuilder`] for tenants, [`HostsBuilder`] for hosts; the
//! two can run on two threads).

use super::host::{Host, HostError};
use super::index::{HostIndex, HostIndexBuilder, Insert};
use crate::config::TierId;

/// Index of a tenant in its table.
pub type TenantIdx = u32;
/// Index of a filer in its table.
pub type FilerIdx = u16;

/// Most filers a table can name.
pub const MAX_FILERS: usize = FilerIdx::MAX as usize + 1;

/// What routing needs to know of a tenant, in 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantRecord {
    /// The tenant's point on placement rings ([`crate::placement::ring_point`]).
    pub ring_point: u32,
    name_offset: u32,
    name_len: u8,
    pub tier: TierId,
    pub filer: FilerIdx,
}

/// How a host matched its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Exact,
    /// Through `*.` + this many trailing bytes of the host.
    Wildcard {
        suffix_len: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantMatch {
    pub tenant: TenantIdx,
    pub kind: MatchKind,
}

/// The tenant table of one snapshot.
pub struct TenantTable {
    exact: HostIndex,
    wildcards: HostIndex,
    records: Box<[TenantRecord]>,
    names: Box<[u8]>,
    filers: Box<[String]>,
}

impl TenantTable {
    /// A table without hosts.
    pub fn empty() -> Self {
        TenantTableBuilder::default().build()
    }

    /// The tenant of a host: exact name first, then the longest wildcard.
    #[inline]
    pub fn lookup(&self, host: &Host) -> Option<TenantMatch> {
        if let Some(t) = self.exact.get(host.as_bytes()) {
            return Some(TenantMatch {
                tenant: t,
                kind: MatchKind::Exact,
            });
        }
        if self.wildcards.is_empty() {
            return None;
        }
        host.wildcard_suffixes().find_map(|suffix| {
            self.wildcards.get(suffix).map(|t| TenantMatch {
                tenant: t,
                kind: MatchKind::Wildcard {
                    suffix_len: suffix.len() as u8,
                },
            })
        })
    }

    pub fn record(&self, t: TenantIdx) -> &TenantRecord {
        &self.records[t as usize]
    }

    pub fn name(&self, t: TenantIdx) -> &str {
        let r = self.record(t);
        let start = r.name_offset as usize;
        std::str::from_utf8(&self.names[start..start + usize::from(r.name_len)]).unwrap_or_default()
    }

    pub fn filer_name(&self, f: FilerIdx) -> &str {
        &self.filers[usize::from(f)]
    }

    pub fn filer_by_name(&self, name: &str) -> Option<FilerIdx> {
        self.filers
            .iter()
            .position(|f| f == name)
            .map(|i| i as FilerIdx)
    }

    pub fn filers(&self) -> &[String] {
        &self.filers
    }

    pub fn tenant_count(&self) -> usize {
        self.records.len()
    }

    /// Exact host names.
    pub fn host_count(&self) -> usize {
        self.exact.len()
    }

    pub fn wildcard_count(&self) -> usize {
        self.wildcards.len()
    }

    /// Every tenant's record, by tenant number.
    pub fn records(&self) -> &[TenantRecord] {
        &self.records
    }

    /// Every tenant number with its record, in table order.
    pub fn tenants(&self) -> impl Iterator<Item = (TenantIdx, &TenantRecord)> {
        self.records
            .iter()
            .enumerate()
            .map(|(i, r)| (i as TenantIdx, r))
    }

    /// Every host (exact and wildcard, the latter as `*.suffix` without the
    /// `*.`), with its tenant; for statistics, not the request path.
    pub fn hosts(&self) -> impl Iterator<Item = (&[u8], TenantIdx)> {
        self.exact.iter().chain(self.wildcards.iter())
    }

    /// Heap bytes held by the table.
    pub fn heap_bytes(&self) -> usize {
        self.exact.heap_bytes()
            + self.wildcards.heap_bytes()
            + std::mem::size_of_val(&*self.records)
            + self.names.len()
            + self.filers.iter().map(|f| f.len() + 24).sum::<usize>()
    }
}

/// Why a line could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    #[error("{0}")]
    Host(#[from] HostError),
    #[error("a wildcard needs a domain name, not an IP address")]
    WildcardIp,
    /// The tenant's first line named another tier.
    #[error("the tenant was listed with tier {first} before, not {this}")]
    TierMismatch {
        tenant: TenantIdx,
        first: TierId,
        this: TierId,
    },
    /// The tenant's first line named another filer.
    #[error("the tenant was listed on another filer before")]
    FilerMismatch {
        tenant: TenantIdx,
        first: FilerIdx,
        this: FilerIdx,
    },
    /// The host was listed before (for this tenant); the first line stays.
    #[error("the host was listed before")]
    DuplicateHost { first: TenantIdx },
    #[error("more than {MAX_FILERS} filers")]
    TooManyFilers,
    #[error("more than {MAX_TENANTS} tenants")]
    TooManyTenants,
    #[error("tenant names and hosts exceed 4 GiB")]
    TooLarge,
}

/// How many keys ahead a batch brings slots into cache: enough misses in
/// flight to cover the memory latency, few enough to stay in cache.
const PREFETCH_AHEAD: usize = 32;

/// A line as [`TenantsBuilder::tenant_batch`] takes it.
pub struct TenantLine<'a> {
    pub name: &'a [u8],
    pub tier: TierId,
    pub filer: FilerIdx,
}

/// A line as [`HostsBuilder::add_batch`] takes it: the host as written
/// (without `*.` when `wildcard`).
pub struct HostLine<'a> {
    pub host: &'a [u8],
    pub wildcard: bool,
    pub tenant: TenantIdx,
}

/// Most tenants a table can hold: a name-table entry is the tenant number
/// plus one in the low 24 bits and 8 bits of its ring point above them (0
/// is an empty slot), so that a probe reads the records only for 1 in 256
/// other tenants.
pub const MAX_TENANTS: usize = (1 << 24) - 1;
const TENANT_BITS: u32 = 24;

/// Collects the tenants of a table: records in order of first appearance,
/// names in one arena, and a name table to find a tenant listed again.
///
/// Lines of a tenant usually follow each other, so the previous line's
/// tenant is checked first; otherwise the name table (open addressing on
/// the tenant's ring point, 4 bytes per slot, see [`MAX_TENANTS`]) finds
/// it. Records and names
/// are the table's own: nothing is copied at the end.
pub struct TenantsBuilder {
    records: Vec<TenantRecord>,
    names: Vec<u8>,
    filers: Vec<String>,
    filer_ids: std::collections::HashMap<Box<[u8]>, FilerIdx, foldhash::fast::RandomState>,
    by_name: Vec<u32>,
    last: Option<TenantIdx>,
    last_filer: Option<FilerIdx>,
}

impl Default for TenantsBuilder {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl TenantsBuilder {
    /// Room for `tenants` records and `name_bytes` of names (reserved
    /// address space: pages never written are never resident).
    pub fn with_capacity(tenants: usize, name_bytes: usize) -> Self {
        let records = Vec::with_capacity(tenants);
        crate::mem::huge_pages(&records);
        TenantsBuilder {
            records,
            names: Vec::with_capacity(name_bytes),
            filers: Vec::new(),
            filer_ids: Default::default(),
            by_name: crate::mem::huge_vec(name_slots(tenants), 0),
            last: None,
            last_filer: None,
        }
    }

    /// The tenant `name` (a valid name), added on its first line; a later
    /// line must name the same tier and filer.
    pub fn tenant(
        &mut self,
        name: &[u8],
        tier: TierId,
        filer: &[u8],
    ) -> Result<TenantIdx, AddError> {
        let filer = self.filer(filer)?;
        self.resolve(name, tier, filer, None)
    }

    /// [`TenantsBuilder::tenant`] for a batch of lines, in order, with
    /// the name-table slots of the next few brought into cache
    /// ([`crate::mem::prefetch`]).
    pub fn tenant_batch(&mut self, lines: &[TenantLine<'_>]) -> Vec<Result<TenantIdx, AddError>> {
        let mut points: Vec<u32> = Vec::with_capacity(lines.len());
        for (i, l) in lines.iter().enumerate() {
            let point = match i.checked_sub(1).map(|p| (&lines[p], points[p])) {
                Some((prev, point)) if same(prev.name, l.name) => point,
                _ => crate::placement::ring_point(std::str::from_utf8(l.name).unwrap_or_default()),
            };
            points.push(point);
        }
        let slots = self.by_name.len();
        lines
            .iter()
            .zip(&points)
            .enumerate()
            .map(|(i, (l, &point))| {
                if let Some(&ahead) = points.get(i + PREFETCH_AHEAD) {
                    crate::mem::prefetch(&self.by_name, name_slot(ahead, slots));
                }
                self.resolve(l.name, l.tier, l.filer, Some(point))
            })
            .collect()
    }

    fn resolve(
        &mut self,
        name: &[u8],
        tier: TierId,
        filer: FilerIdx,
        point: Option<u32>,
    ) -> Result<TenantIdx, AddError> {
        let t = match self.last {
            Some(t) if same(self.name(t), name) => t,
            _ => {
                let point = point.unwrap_or_else(|| {
                    crate::placement::ring_point(std::str::from_utf8(name).unwrap_or_default())
                });
                let t = self.find_or_add(name, tier, filer, point)?;
                self.last = Some(t);
                t
            }
        };
        let first = &self.records[t as usize];
        if first.tier != tier {
            return Err(AddError::TierMismatch {
                tenant: t,
                first: first.tier,
                this: tier,
            });
        }
        if first.filer != filer {
            return Err(AddError::FilerMismatch {
                tenant: t,
                first: first.filer,
                this: filer,
            });
        }
        Ok(t)
    }

    /// The name of a tenant added so far.
    pub fn name(&self, t: TenantIdx) -> &[u8] {
        let r = &self.records[t as usize];
        let start = r.name_offset as usize;
        &self.names[start..start + usize::from(r.name_len)]
    }

    pub fn filer_name(&self, f: FilerIdx) -> &str {
        &self.filers[usize::from(f)]
    }

    /// The number of a filer, added on its first line.
    pub fn filer(&mut self, name: &[u8]) -> Result<FilerIdx, AddError> {
        if let Some(f) = self.last_filer {
            if same(self.filers[usize::from(f)].as_bytes(), name) {
                return Ok(f);
            }
        }
        let f = match self.filer_ids.get(name) {
            Some(&f) => f,
            None => {
                let f =
                    FilerIdx::try_from(self.filers.len()).map_err(|_| AddError::TooManyFilers)?;
                self.filers.push(String::from_utf8_lossy(name).into_owned());
                self.filer_ids.insert(name.into(), f);
                f
            }
        };
        self.last_filer = Some(f);
        Ok(f)
    }

    fn find_or_add(
        &mut self,
        name: &[u8],
        tier: TierId,
        filer: FilerIdx,
        point: u32,
    ) -> Result<TenantIdx, AddError> {
        let tag = name_tag(point);
        let mut i = name_slot(point, self.by_name.len());
        loop {
            let e = self.by_name[i];
            if e == 0 {
                break;
            }
            let t = (e & ((1 << TENANT_BITS) - 1)) - 1;
            if e & !((1 << TENANT_BITS) - 1) == tag
                && self.records[t as usize].ring_point == point
                && self.name(t) == name
            {
                return Ok(t);
            }
            i = (i + 1) % self.by_name.len();
        }
        if self.records.len() >= MAX_TENANTS {
            return Err(AddError::TooManyTenants);
        }
        let t = self.records.len() as TenantIdx;
        let name_offset = u32::try_from(self.names.len()).map_err(|_| AddError::TooLarge)?;
        let name_len = u8::try_from(name.len()).map_err(|_| AddError::TooLarge)?;
        self.names.extend_from_slice(name);
        self.records.push(TenantRecord {
            ring_point: point,
            name_offset,
            name_len,
            tier,
            filer,
        });
        self.by_name[i] = tag | (t + 1);
        if self.records.len() * 8 > self.by_name.len() * 7 {
            self.grow_names();
        }
        Ok(t)
    }

    /// More tenants than announced: a name table twice as large.
    fn grow_names(&mut self) {
        let n = self.by_name.len() * 2;
        self.by_name = crate::mem::huge_vec(n, 0);
        for (t, r) in self.records.iter().enumerate() {
            let mut i = name_slot(r.ring_point, n);
            while self.by_name[i] != 0 {
                i = (i + 1) % n;
            }
            self.by_name[i] = name_tag(r.ring_point) | (t as u32 + 1);
        }
    }

    pub fn tenant_count(&self) -> usize {
        self.records.len()
    }
}

/// `a == b` for the short names of a table (most under 16 bytes) without
/// a call to `memcmp`: a parse compares each line's tenant, filer and tier
/// with the previous line's, and those calls were 5 % of a load.
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        <[u8; 8]>::try_from(&s[at..at + 8])
            .map(u64::from_ne_bytes)
            .ok()
    };
    match n {
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// Name-table slots for `tenants`: at most 80 % full. Linear probing
/// that full runs about 12 entries on a miss, but 16 entries share a cache
/// line and the tag spares reading the records: a miss costs one line,
/// sometimes two.
fn name_slots(tenants: usize) -> usize {
    (tenants * 5 / 4).max(8)
}

/// The ring point's low bits (the slot comes from its high bits), placed
/// above the tenant number.
fn name_tag(point: u32) -> u32 {
    point << TENANT_BITS
}

fn name_slot(point: u32, slots: usize) -> usize {
    ((u64::from(point) * slots as u64) >> 32) as usize
}

/// Collects the hosts of a table: exact names and wildcards, each straight
/// into its index, normalised on the way.
pub struct HostsBuilder {
    exact: HostIndexBuilder,
    wildcards: HostIndexBuilder,
    key: Vec<u8>,
}

impl Default for HostsBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl HostsBuilder {
    /// Room for `hosts` exact names (wildcards are few; their index grows).
    pub fn with_capacity(hosts: usize) -> Self {
        HostsBuilder {
            exact: HostIndexBuilder::with_capacity(hosts),
            wildcards: HostIndexBuilder::default(),
            key: Vec::with_capacity(256),
        }
    }

    /// Adds `host` as written (without its `*.` when `wildcard`) for
    /// `tenant`. After an error, [`HostsBuilder::key`] is the normalised
    /// host (the key a duplicate shares with its first line).
    pub fn add(&mut self, host: &[u8], wildcard: bool, tenant: TenantIdx) -> Result<(), AddError> {
        self.key.clear();
        if wildcard && host.first() == Some(&b'[') {
            return Err(AddError::WildcardIp);
        }
        super::host::normalize_into(host, &mut self.key)?;
        let index = if wildcard {
            &mut self.wildcards
        } else {
            &mut self.exact
        };
        match index.insert(&self.key, tenant) {
            Insert::Added => Ok(()),
            Insert::Duplicate { first_value } => {
                Err(AddError::DuplicateHost { first: first_value })
            }
            Insert::Refused => Err(AddError::TooLarge),
        }
    }

    /// [`HostsBuilder::add`] for a batch: every host normalised and hashed
    /// first, then inserted with the home slots of the next few brought
    /// into cache ([`crate::mem::prefetch`]). `refused(i, error, key)` is called
    /// for each host refused, `key` normalised (for a duplicate: the key it
    /// shares with its first line).
    pub fn add_batch<'a>(
        &mut self,
        lines: impl Iterator<Item = HostLine<'a>>,
        mut refused: impl FnMut(usize, AddError, &[u8]),
    ) {
        struct Ready {
            end: u32,
            hash: Result<u64, AddError>,
            wildcard: bool,
            tenant: TenantIdx,
        }
        self.key.clear();
        let mut ready: Vec<Ready> = Vec::with_capacity(lines.size_hint().0);
        for l in lines {
            let start = self.key.len();
            let normal = if l.wildcard && l.host.first() == Some(&b'[') {
                Err(AddError::WildcardIp)
            } else {
                super::host::normalize_into(l.host, &mut self.key).map_err(AddError::Host)
            };
            let index = if l.wildcard {
                &self.wildcards
            } else {
                &self.exact
            };
            let hash = normal.map(|()| index.hash(&self.key[start..]));
            if hash.is_err() {
                self.key.truncate(start);
            }
            ready.push(Ready {
                end: u32::try_from(self.key.len()).unwrap_or(u32::MAX),
                hash,
                wildcard: l.wildcard,
                tenant: l.tenant,
            });
        }
        let mut start = 0;
        for (i, r) in ready.iter().enumerate() {
            if let Some(Ready {
                hash: Ok(h),
                wildcard,
                ..
            }) = ready.get(i + PREFETCH_AHEAD)
            {
                let ahead = if *wildcard {
                    &self.wildcards
                } else {
                    &self.exact
                };
                ahead.prefetch(*h);
            }
            let key = &self.key[start..r.end as usize];
            start = r.end as usize;
            let h = match &r.hash {
                Ok(h) => *h,
                Err(e) => {
                    refused(i, e.clone(), key);
                    continue;
                }
            };
            let index = if r.wildcard {
                &mut self.wildcards
            } else {
                &mut self.exact
            };
            match index.insert_hashed(key, h, r.tenant) {
                Insert::Added => {}
                Insert::Duplicate { first_value } => {
                    refused(i, AddError::DuplicateHost { first: first_value }, key)
                }
                Insert::Refused => refused(i, AddError::TooLarge, key),
            }
        }
        self.key.clear();
    }

    /// The last host added, normalised.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl TenantTable {
    /// The table of what the two builders collected.
    pub fn assemble(tenants: TenantsBuilder, hosts: HostsBuilder) -> TenantTable {
        TenantTable {
            exact: hosts.exact.build(),
            wildcards: hosts.wildcards.build(),
            records: tenants.records.into_boxed_slice(),
            names: tenants.names.into_boxed_slice(),
            filers: tenants.filers.into_boxed_slice(),
        }
    }
}

/// Both builders on one thread, a line at a time (tests, small tables).
#[derive(Default)]
pub struct TenantTableBuilder {
    pub tenants: TenantsBuilder,
    pub hosts: HostsBuilder,
}

impl TenantTableBuilder {
    /// Adds one line: `host` as written, without its `*.` when `wildcard`,
    /// belongs to `tenant` (a valid name), of `tier`, on `filer`.
    pub fn add(
        &mut self,
        host: &[u8],
        wildcard: bool,
        tenant: &[u8],
        tier: TierId,
        filer: &[u8],
    ) -> Result<(), AddError> {
        let t = self.tenants.tenant(tenant, tier, filer)?;
        self.hosts.add(host, wildcard, t)
    }

    pub fn build(self) -> TenantTable {
        TenantTable::assemble(self.tenants, self.hosts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(
        b: &mut TenantTableBuilder,
        host: &str,
        tenant: &str,
        tier: TierId,
        filer: &str,
    ) -> Result<(), AddError> {
        let (wild, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        b.add(
            name.as_bytes(),
            wild,
            tenant.as_bytes(),
            tier,
            filer.as_bytes(),
        )
    }

    fn host(s: &str) -> Host {
        crate::routing::host::normalize(s.as_bytes()).unwrap()
    }

    #[test]
    fn same_is_equality() {
        let words: Vec<Vec<u8>> = (0..40)
            .flat_map(|n| {
                let a = vec![b'a'; n];
                let mut first = a.clone();
                let mut last = a.clone();
                if n > 0 {
                    first[0] = b'b';
                    last[n - 1] = b'b';
                }
                [a, first, last]
            })
            .collect();
        for a in &words {
            for b in &words {
                assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn a_tenant_costs_twelve_bytes() {
        assert_eq!(std::mem::size_of::<TenantRecord>(), 12);
    }

    #[test]
    fn exact_then_longest_wildcard() {
        let mut b = TenantTableBuilder::default();
        add(&mut b, "example.com", "t1", 0, "f1").unwrap();
        add(&mut b, "www.example.com", "t1", 0, "f1").unwrap();
        add(&mut b, "*.example.com", "t2", 1, "f2").unwrap();
        add(&mut b, "*.shop.example.com", "t3", 0, "f1").unwrap();
        let table = b.build();
        assert_eq!(
            (
                table.tenant_count(),
                table.host_count(),
                table.wildcard_count()
            ),
            (3, 2, 2)
        );

        let m = table.lookup(&host("WWW.example.com")).unwrap();
        assert_eq!((table.name(m.tenant), m.kind), ("t1", MatchKind::Exact));
        let m = table.lookup(&host("blog.example.com")).unwrap();
        assert_eq!(table.name(m.tenant), "t2");
        assert_eq!(m.kind, MatchKind::Wildcard { suffix_len: 11 });
        let m = table.lookup(&host("a.b.shop.example.com")).unwrap();
        assert_eq!(table.name(m.tenant), "t3");
        // `*.shop.example.com` does not match `shop.example.com` itself...
        let m = table.lookup(&host("shop.example.com")).unwrap();
        assert_eq!(table.name(m.tenant), "t2");
        assert!(table.lookup(&host("example.org")).is_none());
        assert!(table.lookup(&host("com")).is_none());

        let r = table.record(m.tenant);
        assert_eq!((r.tier, table.filer_name(r.filer)), (1, "f2"));
        assert_eq!(table.filer_by_name("f1"), Some(0));
        assert_eq!(r.ring_point, crate::placement::ring_point("t2"));
    }

    #[test]
    fn a_tenant_keeps_one_tier_and_filer() {
        let mut b = TenantTableBuilder::default();
        add(&mut b, "a.example", "t1", 0, "f1").unwrap();
        assert_eq!(
            add(&mut b, "b.example", "t1", 1, "f1").unwrap_err(),
            AddError::TierMismatch {
                tenant: 0,
                first: 0,
                this: 1,
            }
        );
        assert_eq!(
            add(&mut b, "c.example", "t1", 0, "f2").unwrap_err(),
            AddError::FilerMismatch {
                tenant: 0,
                first: 0,
                this: 1,
            }
        );
    }

    #[test]
    fn lines_of_a_tenant_far_apart_are_one_tenant_and_must_agree() {
        let mut b = TenantTableBuilder::default();
        add(&mut b, "a.example", "t1", 0, "f1").unwrap();
        add(&mut b, "b.example", "t2", 0, "f1").unwrap();
        assert!(matches!(
            add(&mut b, "c.example", "t1", 1, "f1"),
            Err(AddError::TierMismatch { tenant: 0, .. })
        ));
        add(&mut b, "x.example", "t2", 0, "f1").unwrap();
        assert!(matches!(
            add(&mut b, "d.example", "t1", 0, "f2"),
            Err(AddError::FilerMismatch { tenant: 0, .. })
        ));
        add(&mut b, "y.example", "t2", 0, "f1").unwrap();
        add(&mut b, "e.example", "t1", 0, "f1").unwrap();
        let t = b.build();
        assert_eq!(t.tenant_count(), 2);
        let e = t.lookup(&host("e.example")).unwrap();
        assert_eq!(t.name(e.tenant), "t1");
        assert_eq!(t.lookup(&host("a.example")).unwrap().tenant, e.tenant);
        assert_eq!(t.lookup(&host("y.example")).unwrap().tenant, 1);
    }

    #[test]
    fn many_tenants_past_the_announced_size_are_found_again() {
        let mut b = TenantsBuilder::with_capacity(4, 0);
        let names: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            assert_eq!(b.tenant(n.as_bytes(), 0, b"f").unwrap(), i as TenantIdx);
        }
        for (i, n) in names.iter().enumerate().rev() {
            assert_eq!(b.tenant(n.as_bytes(), 0, b"f").unwrap(), i as TenantIdx);
            assert_eq!(b.name(i as TenantIdx), n.as_bytes());
        }
        assert_eq!(b.tenant_count(), 10_000);
    }

    #[test]
    fn malformed_hosts_are_refused_and_leave_nothing_behind() {
        let mut b = TenantTableBuilder::default();
        assert_eq!(
            add(&mut b, "bad host", "t1", 0, "f1"),
            Err(AddError::Host(HostError::BadChar(' ')))
        );
        assert_eq!(
            add(&mut b, "*.[::1]", "t1", 0, "f1"),
            Err(AddError::WildcardIp)
        );
        assert_eq!(
            add(&mut b, "a.example:80", "t1", 0, "f1"),
            Err(AddError::Host(HostError::PortNotAllowed))
        );
        add(&mut b, "A.Example.", "t1", 0, "f1").unwrap();
        let t = b.build();
        assert_eq!(t.host_count(), 1);
        assert!(t.lookup(&host("a.example")).is_some());
    }

    #[test]
    fn duplicate_hosts_name_the_first_tenant_and_the_key() {
        let mut b = TenantTableBuilder::default();
        add(&mut b, "a.example", "t1", 0, "f1").unwrap();
        assert_eq!(
            add(&mut b, "A.example.", "t2", 0, "f1"),
            Err(AddError::DuplicateHost { first: 0 })
        );
        assert_eq!(b.hosts.key(), b"a.example");
        add(&mut b, "*.a.example", "t1", 0, "f1").unwrap();
        assert_eq!(
            add(&mut b, "*.a.example", "t1", 0, "f1"),
            Err(AddError::DuplicateHost { first: 0 })
        );
        let t = b.build();
        assert_eq!(t.lookup(&host("a.example")).unwrap().tenant, 0);
        assert_eq!((t.host_count(), t.wildcard_count()), (1, 1));
    }
}
