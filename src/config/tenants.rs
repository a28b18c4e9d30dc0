//! The tenant table file: one host per line, `host TAB tenant TAB tier TAB
//! filer`. `#` starts a comment line; blank lines are skipped; a CRLF line
//! end is accepted. Aliases are more lines for the same tenant (which must
//! then name the same tier and filer); `*.example.com` covers every name
//! below `example.com` (not `example.com` itself).
//!
//! Read as a stream, so a million-line file never sits in memory as text.
//! Every bad line is reported (bad host, wrong field count, unknown tier,
//! a host claimed twice, a tenant with two tiers or filers); one bad line
//! refuses the whole file.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, SyncSender};

use super::stamp::FileStamp;

use super::{Config, ConfigError, MAX_REPORTED, Problem, Problems, is_valid_name};
use crate::config::TierId;
use crate::routing::host::HostError;
use crate::routing::tenants::{
    AddError, FilerIdx, HostLine, HostsBuilder, TenantIdx, TenantLine, TenantTable, TenantsBuilder,
    same,
};

/// Reads the tenant table named by `config`.
pub fn load(config: &Config) -> Result<TenantTable, ConfigError> {
    load_stamped(config).map(|(table, _)| table)
}

/// [`load`], and the stamp of the file read when it did not change while
/// being read (so that a later reload can tell the table is still good).
pub fn load_stamped(config: &Config) -> Result<(TenantTable, Option<FileStamp>), ConfigError> {
    let path = &config.tenants_file;
    let file = std::fs::File::open(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let before = file.metadata().ok();
    let before = before.as_ref().and_then(FileStamp::from_metadata);
    let table = parse(path, &file, config)?;
    let after = file.metadata().ok();
    let after = after.as_ref().and_then(FileStamp::from_metadata);
    // Still the file at that path, not written meanwhile, and not written
    // so recently that a write within the same timestamp tick could follow
    // unseen (git's "racily clean" rule).
    let stamp =
        before.filter(|b| after == Some(*b) && FileStamp::of(path) == Some(*b) && !b.is_recent());
    Ok((table, stamp))
}

/// Lines handed from the reading thread to the host thread at a time.
const BATCH: usize = 4096;
/// Bytes read at a time.
const READ_BUFFER: usize = 256 << 10;

/// Parses a tenant table from `reader`; `file` names it in problems.
///
/// Two passes over the input: the first counts lines, so that every array
/// of the table is allocated once at its final size; the second parses.
/// Parsing runs on two threads: this one splits lines, checks fields and
/// finds each line's tenant; a second one normalises hosts and puts them
/// straight into their index. Nothing else is held: the memory a load
/// needs is the finished table plus a few batches of lines in flight
/// (`benches/reload.rs` measures it). Refused lines are reported with
/// their number; a host or tenant repeated against its first line sends
/// a third pass looking for that first line (only when the file is bad).
pub fn parse<R: Read + Seek>(
    file: &Path,
    mut reader: R,
    config: &Config,
) -> Result<TenantTable, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: file.to_path_buf(),
        source,
    };
    let (lines, bytes) = count_lines(&mut reader).map_err(read_error)?;
    reader.seek(SeekFrom::Start(0)).map_err(read_error)?;
    let tiers: Vec<&str> = config.tiers.iter().map(|t| t.name.as_str()).collect();
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(2);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Batch>();
    let mut front = Front {
        file,
        tiers: &tiers,
        tenants: TenantsBuilder::with_capacity(lines, bytes),
        last_tier: None,
        batch: Batch::default(),
        full: Some(full_tx),
        empty: empty_rx,
        problems: Problems::default(),
        mismatches: Kept::default(),
    };
    let (read, back) = std::thread::scope(|s| {
        let back = std::thread::Builder::new()
            .name("tenant-hosts".into())
            .spawn_scoped(s, move || add_hosts(full_rx, empty_tx, lines))
            .map_err(read_error)?;
        let read = for_each_line(&mut reader, |line, number| front.line(line, number));
        front.flush();
        // The host thread ends once the last batch is in.
        front.full = None;
        let back = back
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok::<_, ConfigError>((read, back))
    })?;
    let (number, tail) = read.map_err(read_error)?;
    let Front {
        tenants,
        mut problems,
        mismatches,
        ..
    } = front;
    if !tail.is_empty() {
        let text = tail.strip_suffix(b"\r").unwrap_or(&tail);
        if !text.iter().all(u8::is_ascii_whitespace) && !text.starts_with(b"#") {
            // A file caught while being written ends in the middle of a
            // line: refuse it rather than serve a truncated table.
            problem(
                &mut problems,
                file,
                number + 1,
                "the last line has no line end (file truncated while written?)".into(),
            );
        }
    }
    let (hosts, bad_hosts) = back;
    if !mismatches.list.is_empty() || !bad_hosts.list.is_empty() {
        let firsts = if mismatches.list.is_empty()
            && bad_hosts
                .list
                .iter()
                .all(|h| !matches!(h.error, AddError::DuplicateHost { .. }))
        {
            FirstLines::default()
        } else {
            reader.seek(SeekFrom::Start(0)).map_err(read_error)?;
            FirstLines::find(&mut reader, &tenants, &mismatches.list, &bad_hosts.list)
                .map_err(read_error)?
        };
        let mut late = Problems::default();
        for (line, e) in &mismatches.list {
            let message = describe_mismatch(e, &tenants, &tiers, &firsts);
            problem(&mut late, file, *line, message);
        }
        for h in &bad_hosts.list {
            problem(&mut late, file, h.line, h.describe(&tenants, &firsts));
        }
        late.omit(mismatches.omitted + bad_hosts.omitted);
        problems = problems.merge(late);
    }
    problems.sort();
    problems.into_result()?;
    Ok(TenantTable::assemble(tenants, hosts))
}

/// Lines and bytes of the input (a last line without `\n` counts).
fn count_lines<R: Read>(reader: &mut R) -> std::io::Result<(usize, usize)> {
    let mut buf = vec![0u8; READ_BUFFER];
    let (mut lines, mut bytes) = (1, 0);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok((lines, bytes)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count();
        bytes += n;
    }
}

/// Calls `f` with every line, without its `\n`, and its number. Lines are
/// handed out where they were read; only a line split across two reads
/// is copied. Returns the number of the last complete line and what
/// follows it (a last line without a line end).
fn for_each_line<R: Read>(
    reader: R,
    mut f: impl FnMut(&[u8], u32),
) -> std::io::Result<(u32, Vec<u8>)> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::with_capacity(READ_BUFFER, reader);
    let mut number: u32 = 0;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok((number, carry));
        }
        let consumed = chunk.len();
        let mut rest = chunk;
        if !carry.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    carry.extend_from_slice(&rest[..i]);
                    number = number.saturating_add(1);
                    f(&carry, number);
                    carry.clear();
                    rest = &rest[i + 1..];
                }
                None => {
                    carry.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        while let Some(i) = memchr::memchr(b'\n', rest) {
            number = number.saturating_add(1);
            f(&rest[..i], number);
            rest = &rest[i + 1..];
        }
        carry.extend_from_slice(rest);
        reader.consume(consumed);
    }
}

/// The fields of a line that is not blank or a comment: host as written
/// (without `*.`), whether it is a wildcard, tenant, tier, filer.
struct Fields<'a> {
    host: &'a [u8],
    wildcard: bool,
    tenant: &'a [u8],
    tier: &'a [u8],
    filer: &'a [u8],
}

/// `Ok(None)` for a blank or comment line.
fn fields(line: &[u8]) -> Result<Option<Fields<'_>>, String> {
    let text = line.strip_suffix(b"\r").unwrap_or(line);
    if text.first() == Some(&b'#') || text.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut fields = text.splitn(5, |&b| b == b'\t');
    let (Some(host), Some(tenant), Some(tier), Some(filer), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        let found = text.split(|&b| b == b'\t').count();
        return Err(format!(
            "expected 4 tab-separated fields (host, tenant, tier, filer), found {found}"
        ));
    };
    let (wildcard, host) = match host.strip_prefix(b"*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    Ok(Some(Fields {
        host,
        wildcard,
        tenant,
        tier,
        filer,
    }))
}

/// Lines on their way to the host thread: hosts as written and tenant
/// names, each end to end.
#[derive(Default)]
struct Batch {
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
struct Kept<T> {
    list: Vec<T>,
    omitted: usize,
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
    fn push(&mut self, t: T) {
        if self.list.len() < MAX_REPORTED {
            self.list.push(t);
        } else {
            self.omitted += 1;
        }
    }
}

/// The reading thread's side of a parse.
struct Front<'a> {
    file: &'a Path,
    tiers: &'a [&'a str],
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
    fn line(&mut self, line: &[u8], number: u32) {
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
        let found = self.tiers.iter().position(|t| t.as_bytes() == name);
        match found {
            Some(i) => {
                let id = i as TierId;
                self.last_tier = Some((self.tiers[i].as_bytes(), id));
                Ok(id)
            }
            None => Err(format!(
                "unknown tier {:?} (expected one of: {})",
                String::from_utf8_lossy(name),
                self.tiers.join(", ")
            )),
        }
    }
}

/// A host the host thread refused.
struct BadHost {
    line: u32,
    error: AddError,
    /// As written (without `*.`).
    host: Vec<u8>,
    /// Normalised (for a duplicate).
    key: Vec<u8>,
    wildcard: bool,
    tenant: TenantIdx,
}

impl BadHost {
    fn describe(&self, tenants: &TenantsBuilder, firsts: &FirstLines) -> String {
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

/// The host thread: every host into its index.
fn add_hosts(
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

/// The first line of tenants and hosts that were listed again.
#[derive(Default)]
struct FirstLines {
    tenants: std::collections::HashMap<Vec<u8>, u32>,
    hosts: std::collections::HashMap<(bool, Vec<u8>), u32>,
}

impl FirstLines {
    /// Reads the input again for the first lines of the tenants of
    /// `mismatches` and the hosts of the duplicates in `bad`.
    fn find<R: Read>(
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

fn describe_mismatch(
    e: &AddError,
    tenants: &TenantsBuilder,
    tiers: &[&str],
    firsts: &FirstLines,
) -> String {
    match *e {
        AddError::TierMismatch {
            tenant,
            first,
            this,
        } => {
            let name = tenants.name(tenant);
            format!(
                "tenant {} is tier {} {} but {} here; all lines of a tenant name the same tier",
                String::from_utf8_lossy(name),
                tiers[usize::from(first)],
                firsts.tenant(name),
                tiers[usize::from(this)]
            )
        }
        AddError::FilerMismatch {
            tenant,
            first,
            this,
        } => {
            let name = tenants.name(tenant);
            format!(
                "tenant {} is on filer {} {} but {} here; all lines of a tenant name the same filer",
                String::from_utf8_lossy(name),
                tenants.filer_name(first),
                firsts.tenant(name),
                tenants.filer_name(this)
            )
        }
        ref other => other.to_string(),
    }
}

fn problem(problems: &mut Problems, file: &Path, line: u32, message: String) {
    problems.push(Problem {
        file: file.to_path_buf(),
        line: Some(line as usize),
        key: None,
        message,
    });
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

fn name_field<'a>(field: &'a [u8], what: &str) -> Result<&'a [u8], String> {
    if is_valid_name(field) {
        Ok(field)
    } else {
        Err(format!(
            "bad {what} {:?}: expected 1-64 of A-Z a-z 0-9 _ . - :",
            String::from_utf8_lossy(field)
        ))
    }
}
