//! [`HostsBuilder`]: the hosts of a table, normalised and inserted
//! straight into their index (exact names and wildcards).

use super::build::PREFETCH_AHEAD;
use super::{AddError, TenantIdx};
use crate::routing::index::{HostIndexBuilder, Insert};

/// A line as [`HostsBuilder::add_batch`] takes it: the host as written
/// (without `*.` when `wildcard`).
pub struct HostLine<'a> {
    pub host: &'a [u8],
    pub wildcard: bool,
    pub tenant: TenantIdx,
}

/// Collects the hosts of a table: exact names and wildcards, each straight
/// into its index, normalised on the way.
pub struct HostsBuilder {
    pub(super) exact: HostIndexBuilder,
    pub(super) wildcards: HostIndexBuilder,
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
        crate::routing::host::normalize_into(host, &mut self.key)?;
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
                crate::routing::host::normalize_into(l.host, &mut self.key).map_err(AddError::Host)
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
