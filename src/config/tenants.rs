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

use std::io::BufRead;
use std::path::Path;

use super::stamp::FileStamp;

use super::{Config, ConfigError, Problem, Problems, is_valid_name};
use crate::config::TierId;
use crate::routing::host::HostError;
use crate::routing::tenants::{AddError, Built, TenantTable, TenantTableBuilder};

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
    // The file size bounds how many lines there can be. Reserving for
    // short lines (16 bytes) costs address space, not memory: pages never
    // written are never resident, while growing a vector past a low guess
    // copies it and holds both copies at once (the reload's memory peak).
    let hint = before.as_ref().map_or(0, |m| (m.len() / 16) as usize);
    let before = before.as_ref().and_then(FileStamp::from_metadata);
    let reader = std::io::BufReader::with_capacity(1 << 20, &file);
    let table = parse(path, reader, config, hint)?;
    let after = file.metadata().ok();
    let after = after.as_ref().and_then(FileStamp::from_metadata);
    // Still the file at that path, not written meanwhile, and not written
    // so recently that a write within the same timestamp tick could follow
    // unseen (git's "racily clean" rule).
    let stamp =
        before.filter(|b| after == Some(*b) && FileStamp::of(path) == Some(*b) && !b.is_recent());
    Ok((table, stamp))
}

/// Parses a tenant table from `reader`; `file` names it in problems.
pub fn parse<R: BufRead>(
    file: &Path,
    mut reader: R,
    config: &Config,
    size_hint: usize,
) -> Result<TenantTable, ConfigError> {
    let tiers: Vec<&str> = config.tiers.iter().map(|t| t.name.as_str()).collect();
    let mut lines = LineParser {
        tiers: &tiers,
        builder: TenantTableBuilder::with_capacity(size_hint),
        last_tier: None,
    };
    let mut problems = Problems::default();
    let mut number: u32 = 0;
    // Lines are parsed where the reader buffered them; only a line split
    // across two buffer fills is copied.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let chunk = reader.fill_buf().map_err(|source| ConfigError::Read {
            path: file.to_path_buf(),
            source,
        })?;
        if chunk.is_empty() {
            break;
        }
        let consumed = chunk.len();
        let mut rest = chunk;
        if !carry.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    carry.extend_from_slice(&rest[..i]);
                    number = number.saturating_add(1);
                    if let Err(m) = lines.parse(&carry, number) {
                        problem(&mut problems, file, number, m);
                    }
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
            if let Err(m) = lines.parse(&rest[..i], number) {
                problem(&mut problems, file, number, m);
            }
            rest = &rest[i + 1..];
        }
        carry.extend_from_slice(rest);
        reader.consume(consumed);
    }
    if !carry.is_empty() {
        number = number.saturating_add(1);
        let text = carry.strip_suffix(b"\r").unwrap_or(&carry);
        if !text.iter().all(u8::is_ascii_whitespace) && !text.starts_with(b"#") {
            // A file caught while being written ends in the middle of a
            // line: refuse it rather than serve a truncated table.
            problem(
                &mut problems,
                file,
                number,
                "the last line has no line end (file truncated while written?)".into(),
            );
        }
    }
    let Built {
        table,
        duplicates,
        mismatches,
    } = lines.builder.build();
    for (line, e) in mismatches {
        problem(&mut problems, file, line, describe(e, b"", &tiers));
    }
    for d in duplicates {
        let message = if d.first_tenant == d.tenant {
            format!(
                "host {} is listed twice (also on line {})",
                d.host, d.first_line
            )
        } else {
            format!(
                "host {} is claimed by tenant {} here and by tenant {} on line {}",
                d.host, d.tenant, d.first_tenant, d.first_line
            )
        };
        problem(&mut problems, file, d.line, message);
    }
    problems.sort();
    problems.into_result()?;
    Ok(table)
}

struct LineParser<'a> {
    tiers: &'a [&'a str],
    builder: TenantTableBuilder,
    /// The tier of the previous line (most lines repeat a few tiers).
    last_tier: Option<(&'a [u8], TierId)>,
}

impl<'a> LineParser<'a> {
    /// One line without its `\n`; `Err` carries the message.
    fn parse(&mut self, line: &[u8], number: u32) -> Result<(), String> {
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        if text.first() == Some(&b'#') || text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
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
        let (wildcard, name) = match host.strip_prefix(b"*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        let tenant = name_field(tenant, "tenant")?;
        let tier = self.tier(tier)?;
        let filer = name_field(filer, "filer")?;
        self.builder
            .add(name, wildcard, tenant, tier, filer, number)
            .map_err(|e| describe(e, host, self.tiers))
    }

    fn tier(&mut self, name: &[u8]) -> Result<TierId, String> {
        if let Some((last, id)) = self.last_tier {
            if last == name {
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

fn problem(problems: &mut Problems, file: &Path, line: u32, message: String) {
    problems.push(Problem {
        file: file.to_path_buf(),
        line: Some(line as usize),
        key: None,
        message,
    });
}

/// The operator's message for a line the builder refused.
fn describe(e: AddError, host: &[u8], tiers: &[&str]) -> String {
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
        AddError::TierMismatch {
            tenant,
            first,
            this,
            line,
        } => format!(
            "tenant {tenant} is tier {} on line {line} but {} here; all lines of a tenant name the same tier",
            tiers[usize::from(first)],
            tiers[usize::from(this)]
        ),
        AddError::FilerMismatch {
            tenant,
            first,
            this,
            line,
        } => format!(
            "tenant {tenant} is on filer {first} on line {line} but {this} here; all lines of a tenant name the same filer"
        ),
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
