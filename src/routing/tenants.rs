//! [`TenantTable`]: every host of the cluster and the tenant it belongs to.
//!
//! Two [`HostIndex`]es (exact names and `*.suffix` wildcards) map a host to a
//! tenant number; a tenant is a 16-byte record (tier, filer, ring point) plus
//! its name in a shared arena. A million hosts fit in about 50 MB. Immutable
//! once built; a reload builds a new one beside it.

use std::hash::BuildHasher;

use super::host::Host;
use super::index::{Duplicate, HostIndex, HostIndexBuilder};
use crate::config::TierId;

/// Index of a tenant in its table.
pub type TenantIdx = u32;
/// Index of a filer in its table.
pub type FilerIdx = u16;

/// Most filers a table can name.
pub const MAX_FILERS: usize = FilerIdx::MAX as usize + 1;

/// What routing needs to know of a tenant, in 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantRecord {
    /// The tenant's point on placement rings ([`crate::placement::ring_point`]).
    pub ring_point: u64,
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

/// The result of a build: the table and the hosts that were listed twice.
pub struct Built {
    pub table: TenantTable,
    pub duplicates: Vec<DuplicateHost>,
}

/// Collects tenant table lines.
pub struct TenantTableBuilder {
    exact: HostIndexBuilder,
    wildcards: HostIndexBuilder,
    records: Vec<TenantRecord>,
    first_line: Vec<u32>,
    names: Vec<u8>,
    by_name: hashbrown::HashTable<TenantIdx>,
    name_hasher: foldhash::fast::RandomState,
    filers: Vec<String>,
    filer_ids: std::collections::HashMap<String, FilerIdx>,
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
            records: Vec::with_capacity(hosts),
            first_line: Vec::with_capacity(hosts),
            names: Vec::with_capacity(hosts * 8),
            by_name: hashbrown::HashTable::with_capacity(hosts),
            name_hasher: foldhash::fast::RandomState::default(),
            filers: Vec::new(),
            filer_ids: Default::default(),
        }
    }

    /// Adds one line: `host` (a wildcard's suffix when `wildcard`) belongs
    /// to `tenant`, of `tier`, on `filer`. `line` is reported in errors.
    pub fn add(
        &mut self,
        host: &Host,
        wildcard: bool,
        tenant: &str,
        tier: TierId,
        filer: &str,
        line: u32,
    ) -> Result<(), AddError> {
        let filer = self.filer(filer)?;
        let t = self.tenant(tenant, tier, filer, line)?;
        let index = if wildcard {
            &mut self.wildcards
        } else {
            &mut self.exact
        };
        if index.push(host.as_bytes(), t, line) {
            Ok(())
        } else {
            Err(AddError::TooLarge)
        }
    }

    fn filer(&mut self, name: &str) -> Result<FilerIdx, AddError> {
        if let Some(&f) = self.filer_ids.get(name) {
            return Ok(f);
        }
        let f = FilerIdx::try_from(self.filers.len()).map_err(|_| AddError::TooManyFilers)?;
        self.filers.push(name.to_string());
        self.filer_ids.insert(name.to_string(), f);
        Ok(f)
    }

    fn tenant(
        &mut self,
        name: &str,
        tier: TierId,
        filer: FilerIdx,
        line: u32,
    ) -> Result<TenantIdx, AddError> {
        let hash = self.name_hasher.hash_one(name.as_bytes());
        let (records, names) = (&self.records, &self.names);
        let found = self.by_name.find(hash, |&t| {
            let r = &records[t as usize];
            let start = r.name_offset as usize;
            &names[start..start + usize::from(r.name_len)] == name.as_bytes()
        });
        if let Some(&t) = found {
            let r = self.records[t as usize];
            let first = self.first_line[t as usize];
            if r.tier != tier {
                return Err(AddError::TierMismatch {
                    tenant: name.to_string(),
                    first: r.tier,
                    this: tier,
                    line: first,
                });
            }
            if r.filer != filer {
                return Err(AddError::FilerMismatch {
                    tenant: name.to_string(),
                    first: self.filers[usize::from(r.filer)].clone(),
                    this: self.filers[usize::from(filer)].clone(),
                    line: first,
                });
            }
            return Ok(t);
        }
        let t = TenantIdx::try_from(self.records.len()).map_err(|_| AddError::TooManyTenants)?;
        let name_offset = u32::try_from(self.names.len()).map_err(|_| AddError::TooLarge)?;
        let name_len = u8::try_from(name.len()).map_err(|_| AddError::TooLarge)?;
        self.names.extend_from_slice(name.as_bytes());
        self.records.push(TenantRecord {
            ring_point: crate::placement::ring_point(name),
            name_offset,
            name_len,
            tier,
            filer,
        });
        self.first_line.push(line);
        let hasher = &self.name_hasher;
        let (records, names) = (&self.records, &self.names);
        self.by_name.insert_unique(hash, t, |&u| {
            let r = &records[u as usize];
            let start = r.name_offset as usize;
            hasher.hash_one(&names[start..start + usize::from(r.name_len)])
        });
        Ok(t)
    }

    pub fn build(self) -> Built {
        let TenantTableBuilder {
            exact,
            wildcards,
            records,
            names,
            filers,
            ..
        } = self;
        let (exact, dup_exact) = exact.build();
        let (wildcards, dup_wild) = wildcards.build();
        let table = TenantTable {
            exact,
            wildcards,
            records: records.into_boxed_slice(),
            names: names.into_boxed_slice(),
            filers: filers.into_boxed_slice(),
        };
        let mut duplicates: Vec<DuplicateHost> = dup_exact
            .into_iter()
            .map(|d| duplicate(&table, d, ""))
            .chain(dup_wild.into_iter().map(|d| duplicate(&table, d, "*.")))
            .collect();
        duplicates.sort_by_key(|d| d.line);
        // A tenant seen only on duplicate lines stays in `records`: harmless,
        // since a table with duplicates is refused as a whole.
        Built { table, duplicates }
    }
}

fn duplicate(table: &TenantTable, d: Duplicate, prefix: &str) -> DuplicateHost {
    DuplicateHost {
        host: format!("{prefix}{}", String::from_utf8_lossy(&d.key)),
        first_line: d.first,
        line: d.again,
        first_tenant: table.name(d.first_value).to_string(),
        tenant: table.name(d.again_value).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::host::normalize_without_port;

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
            &normalize_without_port(name.as_bytes()).unwrap(),
            wild,
            tenant,
            tier,
            filer,
            line,
        )
    }

    fn host(s: &str) -> Host {
        crate::routing::host::normalize(s.as_bytes()).unwrap()
    }

    #[test]
    fn exact_then_longest_wildcard() {
        let mut b = TenantTableBuilder::default();
        add(&mut b, "example.com", "t1", 0, "f1", 1).unwrap();
        add(&mut b, "www.example.com", "t1", 0, "f1", 2).unwrap();
        add(&mut b, "*.example.com", "t2", 1, "f2", 3).unwrap();
        add(&mut b, "*.shop.example.com", "t3", 0, "f1", 4).unwrap();
        let Built { table, duplicates } = b.build();
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
