//! The two threads of a parse: the reading thread ([`Front`]) splits
//! lines, checks their fields and finds each line's tenant a batch at a
//! time; the host thread ([`add_hosts`]) normalises hosts and inserts them
//! into their index. Batches go one way and come back empty.

use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, SyncSender};

use super::report::BadHost;
use super::{BATCH, fields, name_field, problem};
use crate::config::{MAX_REPORTED, Problems, TierId};
use crate::routing::tenants::{
    AddError, FilerIdx, HostLine, HostsBuilder, TenantIdx, TenantLine, TenantsBuilder, same,
};

/// Lines on their way to the host thread: hosts as written and tenant
/// names, each end to end.
#[derive(Default)]
pub(super) struct Batch {
    hosts: Vec<u8>,
    names: Vec<u8>,
    items: Vec<Item>,
}

#[derive(Clone, Copy)]
struct Item {
    /// End of the host in `Batch::hosts` (it starts where the previous
    /// one ended).
    host_end: u32,
    /// End of the tenant's name in `Batch::names`.
    name_end: u32,
    line: u32,
    /// Found when the batch is complete.
    tenant: TenantIdx,
    tier: TierId,
    filer: FilerIdx,
    wildcard: bool,
    /// The tenant was refused: the host is not added.
    skip: bool,
}

/// The first problems of one kind in line order, and how many more.
pub(super) struct Kept<T> {
    pub(super) list: Vec<T>,
    pub(super) omitted: usize,
}

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept {
            list: Vec::new(),
            omitted: 0,
        }
    }
}

impl<T> Kept<T> {
    pub(super) fn push(&mut self, t: T) {
        if self.list.len() < MAX_REPORTED {
            self.list.push(t);
        } else {
            self.omitted += 1;
        }
    }
}

/// The reading thread's side of a parse.
pub(super) struct Front<'a> {
    file: &'a Path,
    /// The tiers of `predictor.toml`; `None` when it could not be read
    /// (`check` of a broken folder): any well-formed tier name is taken,
    /// numbered as first seen, so that the rest of the file is checked.
    tiers: Option<&'a [&'a str]>,
    /// The tier names seen, without a known list.
    learned: Vec<Vec<u8>>,
    tenants: TenantsBuilder,
    /// The tier of the previous line (most lines repeat a few tiers).
    last_tier: Option<(&'a [u8], TierId)>,
    batch: Batch,
    /// To the host thread; `None` once everything is sent.
    full: Option<SyncSender<Batch>>,
    empty: Receiver<Batch>,
    problems: Problems,
    /// Lines whose tenant disagrees with its first line, described once
    /// that line is known.
    mismatches: Kept<(u32, AddError)>,
}

impl<'a> Front<'a> {
    pub(super) fn new(
        file: &'a Path,
        tiers: Option<&'a [&'a str]>,
        tenants: TenantsBuilder,
        full: SyncSender<Batch>,
        empty: Receiver<Batch>,
    ) -> Self {
        Front {
            file,
            tiers,
            learned: Vec::new(),
            tenants,
            last_tier: None,
            batch: Batch::default(),
            full: Some(full),
            empty,
            problems: Problems::default(),
            mismatches: Kept::default(),
        }
    }

    /// Sends the last batch and closes the channel: the host thread ends
    /// once it has added it.
    pub(super) fn finish_sending(&mut self) {
        self.flush();
        self.full = None;
    }

    /// The tier names by number: the known list, or those seen.
    pub(super) fn tier_names(&self) -> Vec<String> {
        match self.tiers {
            Some(tiers) => tiers.iter().map(|t| t.to_string()).collect(),
            None => self
                .learned
                .iter()
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .collect(),
        }
    }

    /// The tenants found, the problems described, and the lines whose
    /// tenant disagrees with its first line (described once that line is
    /// known).
    pub(super) fn into_parts(self) -> (TenantsBuilder, Problems, Kept<(u32, AddError)>) {
        (self.tenants, self.problems, self.mismatches)
    }

    pub(super) fn line(&mut self, line: &[u8], number: u32) {
        let f = match fields(line) {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(m) => return problem(&mut self.problems, self.file, number, m),
        };
        let checked = name_field(f.tenant, "tenant").and_then(|tenant| {
            let tier = self.tier(f.tier)?;
            let filer = name_field(f.filer, "filer")?;
            let filer = self.tenants.filer(filer).map_err(|e| e.to_string())?;
            Ok((tenant, tier, filer))
        });
        let (tenant, tier, filer) = match checked {
            Ok(c) => c,
            Err(m) => return problem(&mut self.problems, self.file, number, m),
        };
        let b = &mut self.batch;
        b.hosts.extend_from_slice(f.host);
        b.names.extend_from_slice(tenant);
        b.items.push(Item {
            host_end: b.hosts.len() as u32,
            name_end: b.names.len() as u32,
            line: number,
            tenant: 0,
            tier,
            filer,
            wildcard: f.wildcard,
            skip: false,
        });
        if b.items.len() == BATCH || b.hosts.len().max(b.names.len()) > u32::MAX as usize / 2 {
            self.flush();
        }
    }

    /// Finds the tenants of the current batch and hands it to the host
    /// thread.
    fn flush(&mut self) {
        if self.batch.items.is_empty() {
            return;
        }
        let mut start = 0;
        let lines: Vec<TenantLine<'_>> = self
            .batch
            .items
            .iter()
            .map(|it| {
                let name = &self.batch.names[start..it.name_end as usize];
                start = it.name_end as usize;
                TenantLine {
                    name,
                    tier: it.tier,
                    filer: it.filer,
                }
            })
            .collect();
        let found = self.tenants.tenant_batch(&lines);
        drop(lines);
        for (it, found) in self.batch.items.iter_mut().zip(found) {
            match found {
                Ok(t) => it.tenant = t,
                Err(e @ (AddError::TierMismatch { .. } | AddError::FilerMismatch { .. })) => {
                    it.skip = true;
                    self.mismatches.push((it.line, e));
                }
                Err(e) => {
                    it.skip = true;
                    problem(&mut self.problems, self.file, it.line, e.to_string());
                }
            }
        }
        let next = self.empty.try_recv().unwrap_or_default();
        let full = std::mem::replace(&mut self.batch, next);
        // A closed channel means the host thread panicked: joining it
        // passes the panic on.
        if let Some(to) = &self.full {
            let _ = to.send(full);
        }
    }

    fn tier(&mut self, name: &[u8]) -> Result<TierId, String> {
        if let Some((last, id)) = self.last_tier {
            if same(last, name) {
                return Ok(id);
            }
        }
        let Some(tiers) = self.tiers else {
            return self.learn_tier(name);
        };
        let found = tiers.iter().position(|t| t.as_bytes() == name);
        match found {
            Some(i) => {
                let id = i as TierId;
                self.last_tier = Some((tiers[i].as_bytes(), id));
                Ok(id)
            }
            None => Err(format!(
                "unknown tier {:?} (expected one of: {})",
                String::from_utf8_lossy(name),
                tiers.join(", ")
            )),
        }
    }

    /// Without the list of tiers: the number of a well-formed name, given
    /// as first seen.
    fn learn_tier(&mut self, name: &[u8]) -> Result<TierId, String> {
        let name = name_field(name, "tier")?;
        if let Some(i) = self.learned.iter().position(|t| t == name) {
            return Ok(i as TierId);
        }
        let id = TierId::try_from(self.learned.len())
            .map_err(|_| format!("more than {} tiers", TierId::MAX))?;
        self.learned.push(name.to_vec());
        Ok(id)
    }
}

/// The host thread: every host into its index.
pub(super) fn add_hosts(
    full: Receiver<Batch>,
    empty: Sender<Batch>,
    lines: usize,
) -> (HostsBuilder, Kept<BadHost>) {
    let mut hosts = HostsBuilder::with_capacity(lines);
    let mut bad = Kept::default();
    let mut added: Vec<(usize, usize)> = Vec::new();
    for mut batch in full {
        // The host of each item added: its range in `batch.hosts`.
        added.clear();
        let mut start = 0;
        for (k, it) in batch.items.iter().enumerate() {
            if !it.skip {
                added.push((k, start));
            }
            start = it.host_end as usize;
        }
        let b = &batch;
        let host = |(k, start): (usize, usize)| &b.hosts[start..b.items[k].host_end as usize];
        hosts.add_batch(
            added.iter().map(|&(k, start)| HostLine {
                host: host((k, start)),
                wildcard: b.items[k].wildcard,
                tenant: b.items[k].tenant,
            }),
            |i, error, key| {
                let it = &b.items[added[i].0];
                bad.push(BadHost {
                    line: it.line,
                    error,
                    host: host(added[i]).to_vec(),
                    key: key.to_vec(),
                    wildcard: it.wildcard,
                    tenant: it.tenant,
                });
            },
        );
        batch.hosts.clear();
        batch.names.clear();
        batch.items.clear();
        let _ = empty.send(batch);
    }
    (hosts, bad)
}
