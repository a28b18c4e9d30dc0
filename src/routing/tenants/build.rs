//! [`TenantsBuilder`]: the tenants of a table, in order of first
//! appearance, found again by name when listed again.

use crate::config::TierId;

use super::{AddError, FilerIdx, TenantIdx, TenantRecord};

/// flight to cover the memory latency, few enough to stay in cache.
pub(super) const PREFETCH_AHEAD: usize = 32;

/// A line as [`TenantsBuilder::tenant_batch`] takes it.
pub struct TenantLine<'a> {
    pub name: &'a [u8],
    pub tier: TierId,
    pub filer: FilerIdx,
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
    pub(super) records: Vec<TenantRecord>,
    pub(super) names: Vec<u8>,
    pub(super) filers: Vec<String>,
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
                _ => crate::model::ring_point(std::str::from_utf8(l.name).unwrap_or_default()),
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
                    crate::model::ring_point(std::str::from_utf8(name).unwrap_or_default())
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
