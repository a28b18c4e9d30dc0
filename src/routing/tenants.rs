//! [`TenantTable`]: every host of the cluster and the tenant it belongs to.
//!
//! Two [`HostIndex`]es (exact names and `*.suffix` wildcards) map a host to a
//! tenant number; a tenant is a 12-byte record (tier, filer, ring point) plus
//! its name in a shared arena. A million hosts fit in about 50 MB. Immutable
//! once built; a reload builds a new one beside it.

use std::hash::BuildHasher;

use super::host::{Host, HostError};
use super::index::{Duplicate, HostIndex, HostIndexBuilder};
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
        TenantTableBuilder::default().build().table
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
    #[error("tenant {tenant} has tier {first} (line {line}), not {this}")]
    TierMismatch {
        tenant: String,
        first: TierId,
        this: TierId,
        line: u32,
    },
    #[error("tenant {tenant} is on filer {first} (line {line}), not {this}")]
    FilerMismatch {
        tenant: String,
        first: String,
        this: String,
        line: u32,
    },
    #[error("more than {MAX_FILERS} filers")]
    TooManyFilers,
    #[error("more than {} tenants", u32::MAX)]
    TooManyTenants,
    #[error("tenant names and hosts exceed 4 GiB")]
    TooLarge,
}

/// A host listed twice, as found by [`TenantTableBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateHost {
    /// The host as written in the table (`*.` included for wildcards).
    pub host: String,
    pub first_line: u32,
    pub line: u32,
    pub first_tenant: String,
    pub tenant: String,
}

/// The result of a build: the table, the hosts listed twice, and the lines
/// whose tenant disagrees with its first line (tier or filer), with the
/// line they were found on.
pub struct Built {
    pub table: TenantTable,
    pub duplicates: Vec<DuplicateHost>,
    pub mismatches: Vec<(u32, AddError)>,
}

/// Consecutive lines of one tenant (aliases usually follow their tenant).
#[derive(Debug, Clone, Copy)]
struct Run {
    name_offset: u32,
    line: u32,
    filer: FilerIdx,
    tier: TierId,
    name_len: u8,
}

/// Collects tenant table lines.
///
/// Building is sequential work over arrays, not a million hash-table
/// probes: hosts are normalised straight into their index's key arena, a
/// tenant's consecutive lines share one run, and runs of the same tenant
/// are grouped by sorting at build time.
pub struct TenantTableBuilder {
    exact: HostIndexBuilder,
    wildcards: HostIndexBuilder,
    runs: Vec<Run>,
    names: Vec<u8>,
    filers: Vec<String>,
    filer_ids: std::collections::HashMap<Box<[u8]>, FilerIdx, foldhash::fast::RandomState>,
}

impl Default for TenantTableBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl TenantTableBuilder {
    /// A builder expecting about `hosts` lines.
    pub fn with_capacity(hosts: usize) -> Self {
        TenantTableBuilder {
            exact: HostIndexBuilder::with_capacity(hosts, hosts * 20),
            wildcards: HostIndexBuilder::default(),
            runs: Vec::with_capacity(hosts),
            names: Vec::with_capacity(hosts * 8),
            filers: Vec::new(),
            filer_ids: Default::default(),
        }
    }

    /// Adds one line: `host` as written, without its `*.` when `wildcard`,
    /// belongs to `tenant` (a valid name), of `tier`, on `filer`.
    pub fn add(
        &mut self,
        host: &[u8],
        wildcard: bool,
        tenant: &[u8],
        tier: TierId,
        filer: &[u8],
        line: u32,
    ) -> Result<(), AddError> {
        if wildcard && host.first() == Some(&b'[') {
            return Err(AddError::WildcardIp);
        }
        let filer = self.filer(filer)?;
        let run = self.run(tenant, tier, filer, line)?;
        let index = if wildcard {
            &mut self.wildcards
        } else {
            &mut self.exact
        };
        match index.push_with(run, line, |keys| super::host::normalize_into(host, keys)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(AddError::TooLarge),
            Err(e) => Err(AddError::Host(e)),
        }
    }

    fn filer(&mut self, name: &[u8]) -> Result<FilerIdx, AddError> {
        if let Some(&f) = self.filer_ids.get(name) {
            return Ok(f);
        }
        let f = FilerIdx::try_from(self.filers.len()).map_err(|_| AddError::TooManyFilers)?;
        self.filers.push(String::from_utf8_lossy(name).into_owned());
        self.filer_ids.insert(name.into(), f);
        Ok(f)
    }

    fn run_name(&self, r: &Run) -> &[u8] {
        let start = r.name_offset as usize;
        &self.names[start..start + usize::from(r.name_len)]
    }

    /// The run for this line: the previous one if it is the same tenant.
    fn run(
        &mut self,
        name: &[u8],
        tier: TierId,
        filer: FilerIdx,
        line: u32,
    ) -> Result<u32, AddError> {
        if let Some(last) = self.runs.last() {
            if self.run_name(last) == name {
                let last = *last;
                check_same(name, &last, tier, filer, &self.filers)?;
                return Ok((self.runs.len() - 1) as u32);
            }
        }
        let r = u32::try_from(self.runs.len()).map_err(|_| AddError::TooManyTenants)?;
        let name_offset = u32::try_from(self.names.len()).map_err(|_| AddError::TooLarge)?;
        let name_len = u8::try_from(name.len()).map_err(|_| AddError::TooLarge)?;
        self.names.extend_from_slice(name);
        self.runs.push(Run {
            name_offset,
            line,
            filer,
            tier,
            name_len,
        });
        Ok(r)
    }

    /// Builds the table. The host indexes and the grouping of tenants are
    /// independent until the final renumbering, so the exact-host index is
    /// built on a second thread.
    pub fn build(self) -> Built {
        let TenantTableBuilder {
            exact,
            wildcards,
            runs,
            names,
            filers,
            ..
        } = self;
        let (exact, wildcards, grouped) = std::thread::scope(|s| {
            let exact = s.spawn(move || exact.build());
            let grouped = group_runs(&runs, &names, &filers);
            let wildcards = wildcards.build();
            let exact = exact
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (exact, wildcards, grouped)
        });
        drop(runs);
        drop(names);
        let Grouped {
            records,
            names: tenant_names,
            tenant_of,
            mismatches,
        } = grouped;
        let renumber = |r: u32| tenant_of[r as usize];
        let ((mut exact, dup_exact), (mut wildcards, dup_wild)) = (exact, wildcards);
        exact.map_values(renumber);
        wildcards.map_values(renumber);
        let table = TenantTable {
            exact,
            wildcards,
            records: records.into_boxed_slice(),
            names: tenant_names.into_boxed_slice(),
            filers: filers.into_boxed_slice(),
        };
        let mut duplicates: Vec<DuplicateHost> = dup_exact
            .into_iter()
            .map(|d| duplicate(&table, d, "", &renumber))
            .chain(
                dup_wild
                    .into_iter()
                    .map(|d| duplicate(&table, d, "*.", &renumber)),
            )
            .collect();
        duplicates.sort_by_key(|d| d.line);
        Built {
            table,
            duplicates,
            mismatches,
        }
    }
}

/// Tenants grouped from runs: records in order of first appearance, and
/// the tenant of every run.
struct Grouped {
    records: Vec<TenantRecord>,
    names: Vec<u8>,
    tenant_of: Vec<TenantIdx>,
    mismatches: Vec<(u32, AddError)>,
}

/// Groups the runs of each tenant: sort by name hash, compare names within
/// equal hashes; the earliest run represents the tenant, later ones must
/// agree with it on tier and filer.
fn group_runs(runs: &[Run], names: &[u8], filers: &[String]) -> Grouped {
    let name =
        |r: &Run| &names[r.name_offset as usize..r.name_offset as usize + usize::from(r.name_len)];
    // Bucket runs by the top bits of their name hash (a counting sort:
    // two sequential passes, no comparison sort), then compare names only
    // within buckets. Runs keep push order inside a bucket, so the first
    // run of a name represents its tenant.
    let hasher = foldhash::fast::RandomState::default();
    let hashes: Vec<u64> = runs.iter().map(|r| hasher.hash_one(name(r))).collect();
    let bits = (usize::BITS - runs.len().max(2).saturating_sub(1).leading_zeros()).min(32);
    let bucket = |h: u64| (h >> (64 - bits)) as usize;
    let mut start = vec![0u32; (1 << bits) + 1];
    for &h in &hashes {
        start[bucket(h) + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut next = start.clone();
    let mut order = vec![0u32; runs.len()];
    for (i, &h) in hashes.iter().enumerate() {
        let b = bucket(h);
        order[next[b] as usize] = i as u32;
        next[b] += 1;
    }
    drop(next);
    let mut rep: Vec<u32> = (0..runs.len() as u32).collect();
    for b in start.windows(2) {
        let members = &order[b[0] as usize..b[1] as usize];
        if members.len() < 2 {
            continue;
        }
        for (a, &ra) in members.iter().enumerate() {
            let ra = ra as usize;
            if rep[ra] as usize != ra {
                continue;
            }
            for &rb in &members[a + 1..] {
                let rb = rb as usize;
                if rep[rb] as usize == rb
                    && hashes[ra] == hashes[rb]
                    && name(&runs[ra]) == name(&runs[rb])
                {
                    rep[rb] = ra as u32;
                }
            }
        }
    }
    drop((order, start, hashes));

    let tenants = rep
        .iter()
        .enumerate()
        .filter(|&(r, &p)| r == p as usize)
        .count();
    let mut g = Grouped {
        records: Vec::with_capacity(tenants),
        names: Vec::with_capacity(tenants * 8),
        tenant_of: vec![0; runs.len()],
        mismatches: Vec::new(),
    };
    for (r, run) in runs.iter().enumerate() {
        let p = rep[r] as usize;
        if p == r {
            g.tenant_of[r] = g.records.len() as TenantIdx;
            let n = name(run);
            g.records.push(TenantRecord {
                ring_point: crate::placement::ring_point(
                    std::str::from_utf8(n).unwrap_or_default(),
                ),
                name_offset: g.names.len() as u32,
                name_len: run.name_len,
                tier: run.tier,
                filer: run.filer,
            });
            g.names.extend_from_slice(n);
        } else {
            g.tenant_of[r] = g.tenant_of[p];
            if let Err(e) = check_same(name(run), &runs[p], run.tier, run.filer, filers) {
                g.mismatches.push((run.line, e));
            }
        }
    }
    g
}

/// A later line of a tenant must name the tier and filer of its first.
fn check_same(
    tenant: &[u8],
    first: &Run,
    tier: TierId,
    filer: FilerIdx,
    filers: &[String],
) -> Result<(), AddError> {
    let tenant = || String::from_utf8_lossy(tenant).into_owned();
    if first.tier != tier {
        return Err(AddError::TierMismatch {
            tenant: tenant(),
            first: first.tier,
            this: tier,
            line: first.line,
        });
    }
    if first.filer != filer {
        return Err(AddError::FilerMismatch {
            tenant: tenant(),
            first: filers[usize::from(first.filer)].clone(),
            this: filers[usize::from(filer)].clone(),
            line: first.line,
        });
    }
    Ok(())
}

fn duplicate(
    table: &TenantTable,
    d: Duplicate,
    prefix: &str,
    renumber: &impl Fn(u32) -> u32,
) -> DuplicateHost {
    DuplicateHost {
        host: format!("{prefix}{}", String::from_utf8_lossy(&d.key)),
        first_line: d.first,
        line: d.again,
        first_tenant: table.name(renumber(d.first_value)).to_string(),
        tenant: table.name(renumber(d.again_value)).to_string(),
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
        line: u32,
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
            line,
        )
    }

    fn host(s: &str) -> Host {
        crate::routing::host::normalize(s.as_bytes()).unwrap()
    }

    #[test]
    fn a_tenant_costs_twelve_bytes() {
        assert_eq!(std::mem::size_of::<TenantRecord>(), 12);
    }

    #[test]
    fn exact_then_longest_wildcard() {
        let mut b = TenantTableBuilder::default();
        add(&mut b, "example.com", "t1", 0, "f1", 1).unwrap();
        add(&mut b, "www.example.com", "t1", 0, "f1", 2).unwrap();
        add(&mut b, "*.example.com", "t2", 1, "f2", 3).unwrap();
        add(&mut b, "*.shop.example.com", "t3", 0, "f1", 4).unwrap();
        let Built {
            table, duplicates, ..
        } = b.build();
        assert!(duplicates.is_empty());
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
        add(&mut b, "a.example", "t1", 0, "f1", 1).unwrap();
        assert_eq!(
            add(&mut b, "b.example", "t1", 1, "f1", 7).unwrap_err(),
            AddError::TierMismatch {
                tenant: "t1".into(),
                first: 0,
                this: 1,
                line: 1
            }
        );
        assert!(matches!(
            add(&mut b, "c.example", "t1", 0, "f2", 8).unwrap_err(),
            AddError::FilerMismatch { line: 1, .. }
        ));
    }

    #[test]
    fn lines_of_a_tenant_far_apart_must_agree_too() {
        let mut b = TenantTableBuilder::default();
        add(&mut b, "a.example", "t1", 0, "f1", 1).unwrap();
        add(&mut b, "b.example", "t2", 0, "f1", 2).unwrap();
        add(&mut b, "c.example", "t1", 1, "f1", 3).unwrap();
        add(&mut b, "x.example", "t2", 0, "f1", 4).unwrap();
        add(&mut b, "d.example", "t1", 0, "f2", 5).unwrap();
        add(&mut b, "y.example", "t2", 0, "f1", 6).unwrap();
        add(&mut b, "e.example", "t1", 0, "f1", 7).unwrap();
        let built = b.build();
        assert_eq!(built.table.tenant_count(), 2);
        let lines: Vec<u32> = built.mismatches.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [3, 5]);
        assert!(matches!(
            built.mismatches[0].1,
            AddError::TierMismatch { line: 1, .. }
        ));
        assert!(matches!(
            built.mismatches[1].1,
            AddError::FilerMismatch { line: 1, .. }
        ));
        let t = &built.table;
        let e = t.lookup(&host("e.example")).unwrap();
        assert_eq!(t.name(e.tenant), "t1");
        assert_eq!(t.lookup(&host("a.example")).unwrap().tenant, e.tenant);
    }

    #[test]
    fn malformed_hosts_are_refused_and_leave_nothing_behind() {
        let mut b = TenantTableBuilder::default();
        assert_eq!(
            add(&mut b, "bad host", "t1", 0, "f1", 1),
            Err(AddError::Host(HostError::BadChar(' ')))
        );
        assert_eq!(
            add(&mut b, "*.[::1]", "t1", 0, "f1", 2),
            Err(AddError::WildcardIp)
        );
        assert_eq!(
            add(&mut b, "a.example:80", "t1", 0, "f1", 3),
            Err(AddError::Host(HostError::PortNotAllowed))
        );
        add(&mut b, "A.Example.", "t1", 0, "f1", 4).unwrap();
        let t = b.build().table;
        assert_eq!(t.host_count(), 1);
        assert!(t.lookup(&host("a.example")).is_some());
    }

    #[test]
    fn duplicate_hosts_name_both_lines_and_tenants() {
        let mut b = TenantTableBuilder::default();
        add(&mut b, "a.example", "t1", 0, "f1", 1).unwrap();
        add(&mut b, "a.example", "t2", 0, "f1", 2).unwrap();
        add(&mut b, "*.a.example", "t1", 0, "f1", 3).unwrap();
        add(&mut b, "*.a.example", "t1", 0, "f1", 4).unwrap();
        let built = b.build();
        assert_eq!(
            built.duplicates,
            vec![
                DuplicateHost {
                    host: "a.example".into(),
                    first_line: 1,
                    line: 2,
                    first_tenant: "t1".into(),
                    tenant: "t2".into()
                },
                DuplicateHost {
                    host: "*.a.example".into(),
                    first_line: 3,
                    line: 4,
                    first_tenant: "t1".into(),
                    tenant: "t1".into()
                },
            ]
        );
    }
}
