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

mod pipeline;
mod report;

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::config::stamp::FileStamp;

use crate::config::{Config, ConfigError, Problem, Problems, is_valid_name};
use crate::routing::tenants::{AddError, TenantTable, TenantsBuilder};
use pipeline::{Batch, Front, add_hosts};
use report::{FirstLines, describe_mismatch};

/// Reads the tenant table named by `config`.
pub fn load(config: &Config) -> Result<TenantTable, ConfigError> {
    load_read(config).map(|(table, _)| table)
}

/// The content of a tenant file as a load read it: its length and a
/// 128-bit xxh3 hash, taken in the counting pass (no extra read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    len: u64,
    hash: u128,
}

/// What a load knows of the tenant file it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFile {
    /// The file's stamp, when it did not change while being read and was
    /// last written well before (git's "racily clean" rule): a later
    /// reload that finds the same stamp keeps the table without reading.
    pub stamp: Option<FileStamp>,
    /// The content read, when the file did not change while being read:
    /// a later reload that finds other stamps (a file written just before
    /// the start, touched, or written again as it was) compares it before
    /// parsing again.
    pub digest: Option<Digest>,
}

/// What [`load_unless`] found.
pub enum Loaded {
    /// The file holds the content of the digest given: not parsed.
    Same(TableFile),
    Table(TenantTable, TableFile),
}

/// Reads the tenant table named by `config`, with what is known of the
/// file read.
pub fn load_read(config: &Config) -> Result<(TenantTable, TableFile), ConfigError> {
    Counted::open(config)?.parse(config)
}

/// [`load_read`], unless the file's content is the one of `known`: then
/// it is read once, to compare, and not parsed.
pub fn load_unless(config: &Config, known: Digest) -> Result<Loaded, ConfigError> {
    let counted = Counted::open(config)?;
    if counted.digest == known {
        Ok(Loaded::Same(counted.finish()))
    } else {
        counted.parse(config).map(|(t, f)| Loaded::Table(t, f))
    }
}

/// A tenant file after the first pass: its lines and digest.
struct Counted<'a> {
    path: &'a Path,
    file: std::fs::File,
    before: Option<FileStamp>,
    lines: usize,
    digest: Digest,
}

impl<'a> Counted<'a> {
    fn open(config: &'a Config) -> Result<Counted<'a>, ConfigError> {
        let path = config.tenants_file.as_path();
        let mut file = std::fs::File::open(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let before = file.metadata().ok();
        let before = before.as_ref().and_then(FileStamp::from_metadata);
        let (lines, digest) = count(path, &mut file)?;
        Ok(Counted {
            path,
            file,
            before,
            lines,
            digest,
        })
    }

    fn parse(mut self, config: &Config) -> Result<(TenantTable, TableFile), ConfigError> {
        let tiers: Vec<&str> = config.tiers.iter().map(|t| t.name.as_str()).collect();
        let table = parse_counted(
            self.path,
            &mut self.file,
            Some(&tiers),
            self.lines,
            self.digest,
        )?;
        Ok((table, self.finish()))
    }

    /// What is known of the file once read.
    fn finish(self) -> TableFile {
        let after = self.file.metadata().ok();
        let after = after.as_ref().and_then(FileStamp::from_metadata);
        // Still the file at that path, and not written while read.
        let steady = self
            .before
            .filter(|b| after == Some(*b) && FileStamp::of(self.path) == Some(*b));
        TableFile {
            // Not written so recently that a write within the same
            // timestamp tick could follow unseen.
            stamp: steady.filter(|b| !b.is_recent()),
            digest: steady.map(|_| self.digest),
        }
    }
}

/// Lines handed from the reading thread to the host thread at a time.
pub(super) const BATCH: usize = 4096;
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
    reader: R,
    config: &Config,
) -> Result<TenantTable, ConfigError> {
    let tiers: Vec<&str> = config.tiers.iter().map(|t| t.name.as_str()).collect();
    parse_with_tiers(file, reader, Some(&tiers))
}

/// [`parse`] against a list of tier names, or, with `None` (the tiers of a
/// `predictor.toml` that could not be read), taking any well-formed tier
/// name: every other check still runs.
pub fn parse_with_tiers<R: Read + Seek>(
    file: &Path,
    mut reader: R,
    tiers: Option<&[&str]>,
) -> Result<TenantTable, ConfigError> {
    let (lines, digest) = count(file, &mut reader)?;
    parse_counted(file, reader, tiers, lines, digest)
}

/// The first pass: lines and digest of `reader`.
fn count<R: Read>(file: &Path, reader: &mut R) -> Result<(usize, Digest), ConfigError> {
    count_lines(reader).map_err(|source| ConfigError::Read {
        path: file.to_path_buf(),
        source,
    })
}

/// The parse, after the first pass found `lines` and `digest`.
fn parse_counted<R: Read + Seek>(
    file: &Path,
    mut reader: R,
    tiers: Option<&[&str]>,
    lines: usize,
    digest: Digest,
) -> Result<TenantTable, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: file.to_path_buf(),
        source,
    };
    let bytes = digest.len as usize;
    reader.seek(SeekFrom::Start(0)).map_err(read_error)?;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(2);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Batch>();
    let mut front = Front::new(
        file,
        tiers,
        TenantsBuilder::with_capacity(lines, bytes),
        full_tx,
        empty_rx,
    );
    let (read, back) = std::thread::scope(|s| {
        let back = std::thread::Builder::new()
            .name("tenant-hosts".into())
            .spawn_scoped(s, move || add_hosts(full_rx, empty_tx, lines))
            .map_err(read_error)?;
        let read = for_each_line(&mut reader, |line, number| front.line(line, number));
        // The host thread ends once the last batch is in.
        front.finish_sending();
        let back = back
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok::<_, ConfigError>((read, back))
    })?;
    let (number, tail) = read.map_err(read_error)?;
    let tier_names = front.tier_names();
    let tiers: Vec<&str> = tier_names.iter().map(String::as_str).collect();
    let (tenants, mut problems, mismatches) = front.into_parts();
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

/// Lines of the input (a last line without `\n` counts), and the digest
/// of its bytes.
fn count_lines<R: Read>(reader: &mut R) -> std::io::Result<(usize, Digest)> {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    let (mut lines, mut bytes) = (1, 0u64);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => {
                let hash = hash.digest128();
                return Ok((lines, Digest { len: bytes, hash }));
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count();
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
}

/// Calls `f` with every line, without its `\n`, and its number. Lines are
/// handed out where they were read; only a line split across two reads
/// is copied. Returns the number of the last complete line and what
/// follows it (a last line without a line end).
pub(super) fn for_each_line<R: Read>(
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
pub(super) struct Fields<'a> {
    pub(super) host: &'a [u8],
    pub(super) wildcard: bool,
    pub(super) tenant: &'a [u8],
    pub(super) tier: &'a [u8],
    pub(super) filer: &'a [u8],
}

/// `Ok(None)` for a blank or comment line.
pub(super) fn fields(line: &[u8]) -> Result<Option<Fields<'_>>, String> {
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

pub(super) fn problem(problems: &mut Problems, file: &Path, line: u32, message: String) {
    problems.push(Problem {
        file: file.to_path_buf(),
        line: Some(line as usize),
        key: None,
        message,
    });
}

pub(super) fn name_field<'a>(field: &'a [u8], what: &str) -> Result<&'a [u8], String> {
    if is_valid_name(field) {
        Ok(field)
    } else {
        Err(format!(
            "bad {what} {:?}: expected 1-64 of A-Z a-z 0-9 _ . - :",
            String::from_utf8_lossy(field)
        ))
    }
}
