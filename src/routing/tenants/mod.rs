//! [`TenantTable`]: every host of the cluster and the tenant it belongs to.
//!
//! Two [`HostIndex`]es (exact names and `*.suffix` wildcards) map a host to a
//! tenant number; a tenant is a 12-byte record (tier, filer, ring point) plus
//! its name in a shared arena. A million hosts fit in about 50 MB. Immutable
//! once built; a reload builds a new one beside it, straight into its final
//! arrays ([`TenantsBuilder`] for tenants, [`HostsBuilder`] for hosts; the
//! two can run on two threads).

mod build;
mod hosts;
#[cfg(test)]
mod tests;

use super::host::{Host, HostError};
use super::index::HostIndex;
use crate::config::TierId;
pub use build::{MAX_TENANTS, TenantLine, TenantsBuilder, same};
pub use hosts::{HostLine, HostsBuilder};

/// Index of a tenant in its table.
pub type TenantIdx = u32;
/// Index of a filer in its table.
pub type FilerIdx = u16;

/// Most filers a table can name.
pub const MAX_FILERS: usize = FilerIdx::MAX as usize + 1;

/// What routing needs to know of a tenant, in 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantRecord {
    /// The tenant's point on placement rings ([`crate::model::ring_point`]).
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

    /// [`TenantTableBuilder::add`] with the host as written in a table
    /// (`*.` for a wildcard), for tests.
    #[cfg(test)]
    pub(crate) fn add_line(
        &mut self,
        host: &str,
        tenant: &str,
        tier: TierId,
        filer: &str,
    ) -> Result<(), AddError> {
        let (wild, name) = host.strip_prefix("*.").map_or((false, host), |r| (true, r));
        self.add(
            name.as_bytes(),
            wild,
            tenant.as_bytes(),
            tier,
            filer.as_bytes(),
        )
    }

    pub fn build(self) -> TenantTable {
        TenantTable::assemble(self.tenants, self.hosts)
    }
}
