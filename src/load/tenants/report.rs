//! What a refused tenant table says: the messages for hosts and tenants
//! refused, with the first line of a host or tenant listed again (found
//! by reading the file once more, only when it is refused).

use std::io::Read;

use super::{fields, for_each_line};
use crate::routing::host::HostError;
use crate::routing::tenants::{AddError, TenantIdx, TenantsBuilder};

/// A host the host thread refused.
pub(super) struct BadHost {
    pub(super) line: u32,
    pub(super) error: AddError,
    /// As written (without `*.`).
    pub(super) host: Vec<u8>,
    /// Normalised (for a duplicate).
    pub(super) key: Vec<u8>,
    pub(super) wildcard: bool,
    pub(super) tenant: TenantIdx,
}

impl BadHost {
    pub(super) fn describe(&self, tenants: &TenantsBuilder, firsts: &FirstLines) -> String {
        let prefix = if self.wildcard { "*." } else { "" };
        match self.error {
            AddError::DuplicateHost { first } => {
                let host = format!("{prefix}{}", String::from_utf8_lossy(&self.key));
                let at = firsts.host(self.wildcard, &self.key);
                if first == self.tenant {
                    format!("host {host} is listed twice (also {at})")
                } else {
                    format!(
                        "host {host} is claimed by tenant {} here and by tenant {} {at}",
                        String::from_utf8_lossy(tenants.name(self.tenant)),
                        String::from_utf8_lossy(tenants.name(first)),
                    )
                }
            }
            ref e => {
                let mut written = prefix.as_bytes().to_vec();
                written.extend_from_slice(&self.host);
                describe(e.clone(), &written)
            }
        }
    }
}

/// The first line of tenants and hosts that were listed again.
#[derive(Default)]
pub(super) struct FirstLines {
    tenants: std::collections::HashMap<Vec<u8>, u32>,
    hosts: std::collections::HashMap<(bool, Vec<u8>), u32>,
}

impl FirstLines {
    /// Reads the input again for the first lines of the tenants of
    /// `mismatches` and the hosts of the duplicates in `bad`.
    pub(super) fn find<R: Read>(
        reader: R,
        tenants: &TenantsBuilder,
        mismatches: &[(u32, AddError)],
        bad: &[BadHost],
    ) -> std::io::Result<FirstLines> {
        let mut wanted_tenants: std::collections::HashSet<&[u8]> = mismatches
            .iter()
            .filter_map(|(_, e)| match e {
                AddError::TierMismatch { tenant, .. } | AddError::FilerMismatch { tenant, .. } => {
                    Some(tenants.name(*tenant))
                }
                _ => None,
            })
            .collect();
        // Exact hosts, then wildcards.
        let mut wanted_hosts: [std::collections::HashSet<&[u8]>; 2] = Default::default();
        for h in bad {
            if matches!(h.error, AddError::DuplicateHost { .. }) {
                wanted_hosts[usize::from(h.wildcard)].insert(&h.key);
            }
        }
        let mut found = FirstLines::default();
        let mut key = Vec::new();
        for_each_line(reader, |line, number| {
            let Ok(Some(f)) = fields(line) else { return };
            if wanted_tenants.remove(f.tenant) {
                found.tenants.insert(f.tenant.to_vec(), number);
            }
            key.clear();
            let wanted = &mut wanted_hosts[usize::from(f.wildcard)];
            if !wanted.is_empty()
                && crate::routing::host::normalize_into(f.host, &mut key).is_ok()
                && wanted.remove(key.as_slice())
            {
                found.hosts.insert((f.wildcard, key.clone()), number);
            }
        })?;
        Ok(found)
    }

    fn tenant(&self, name: &[u8]) -> String {
        at(self.tenants.get(name))
    }

    fn host(&self, wildcard: bool, key: &[u8]) -> String {
        at(self.hosts.get(&(wildcard, key.to_vec())))
    }
}

/// "on line N", or (the file changed under the second reading) "earlier".
fn at(line: Option<&u32>) -> String {
    match line {
        Some(n) => format!("on line {n}"),
        None => "on an earlier line".into(),
    }
}

pub(super) fn describe_mismatch(
    e: &AddError,
    tenants: &TenantsBuilder,
    tiers: &[&str],
    firsts: &FirstLines,
) -> String {
    // "is tier premium on line 3 but shared here; ... the same tier"
    let (tenant, is, first, this, noun) = match *e {
        AddError::TierMismatch {
            tenant,
            first,
            this,
        } => (
            tenant,
            "tier",
            tiers[usize::from(first)],
            tiers[usize::from(this)],
            "tier",
        ),
        AddError::FilerMismatch {
            tenant,
            first,
            this,
        } => (
            tenant,
            "on filer",
            tenants.filer_name(first),
            tenants.filer_name(this),
            "filer",
        ),
        ref other => return other.to_string(),
    };
    let name = tenants.name(tenant);
    format!(
        "tenant {} is {is} {first} {} but {this} here; all lines of a tenant name the same {noun}",
        String::from_utf8_lossy(name),
        firsts.tenant(name),
    )
}

/// The operator's message for a host the builder refused.
fn describe(e: AddError, host: &[u8]) -> String {
    let host = String::from_utf8_lossy(host);
    match e {
        AddError::Host(e) => {
            let hint = match e {
                HostError::BadChar(c) if !c.is_ascii() => {
                    " (internationalised names are written in punycode, xn--...)"
                }
                HostError::BadChar('*') => " (a wildcard is written *.example.com)",
                _ => "",
            };
            format!("bad host {host:?}: {e}{hint}")
        }
        AddError::WildcardIp => format!("bad host {host:?}: a wildcard needs a domain name"),
        other => other.to_string(),
    }
}
