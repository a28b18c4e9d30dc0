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

use super::{Config, ConfigError, Problem, Problems, is_valid_name};
use crate::config::TierId;
use crate::routing::host::{HostError, normalize_without_port};
use crate::routing::tenants::{AddError, Built, TenantTable, TenantTableBuilder};

/// Reads the tenant table named by `config`.
pub fn load(config: &Config) -> Result<TenantTable, ConfigError> {
    let path = &config.tenants_file;
    let file = std::fs::File::open(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    // The file size tells roughly how many lines to expect (~40 bytes each).
    let hint = file
        .metadata()
        .map(|m| (m.len() / 40) as usize)
        .unwrap_or(0);
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    parse(path, reader, config, hint)
}

/// Parses a tenant table from `reader`; `file` names it in problems.
pub fn parse<R: BufRead>(
    file: &Path,
    mut reader: R,
    config: &Config,
    size_hint: usize,
) -> Result<TenantTable, ConfigError> {
    let tiers: Vec<&str> = config.tiers.iter().map(|t| t.name.as_str()).collect();
    let mut builder = TenantTableBuilder::with_capacity(size_hint);
    let mut problems = Problems::default();
    let mut line = Vec::with_capacity(256);
    let mut number: u32 = 0;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| ConfigError::Read {
                path: file.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        number = number.saturating_add(1);
        let complete = line.last() == Some(&b'\n');
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if !complete && !text.is_empty() && !text.starts_with(b"#") {
            // A file caught while being written ends in the middle of a
            // line: refuse it rather than serve a truncated table.
            problem(
                &mut problems,
                file,
                number,
                "the last line has no line end (file truncated while written?)".into(),
            );
            continue;
        }
        if let Err(message) = parse_line(text, &tiers, &mut builder, number) {
            problem(&mut problems, file, number, message);
        }
    }
    let Built { table, duplicates } = builder.build();
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

fn problem(problems: &mut Problems, file: &Path, line: u32, message: String) {
    problems.push(Problem {
        file: file.to_path_buf(),
        line: Some(line as usize),
        key: None,
        message,
    });
}

/// One line; `Err` carries the message for the operator.
fn parse_line(
    text: &[u8],
    tiers: &[&str],
    builder: &mut TenantTableBuilder,
    number: u32,
) -> Result<(), String> {
    if text.iter().all(|b| b.is_ascii_whitespace()) || text.first() == Some(&b'#') {
        return Ok(());
    }
    let mut fields = text.split(|&b| b == b'\t');
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
    let normalized = normalize_without_port(name).map_err(|e| {
        let hint = match e {
            HostError::BadChar(c) if !c.is_ascii() => {
                " (internationalised names are written in punycode, xn--...)"
            }
            HostError::BadChar('*') => " (a wildcard is written *.example.com)",
            _ => "",
        };
        format!("bad host {:?}: {e}{hint}", String::from_utf8_lossy(host))
    })?;
    if wildcard && normalized.is_ip_literal() {
        return Err(format!(
            "bad host {:?}: a wildcard needs a domain name",
            String::from_utf8_lossy(host)
        ));
    }
    let tenant = name_field(tenant, "tenant")?;
    let tier_name = name_field(tier, "tier")?;
    let tier = tiers.iter().position(|&t| t == tier_name).ok_or_else(|| {
        format!(
            "unknown tier {tier_name:?} (expected one of: {})",
            tiers.join(", ")
        )
    })? as TierId;
    let filer = name_field(filer, "filer")?;
    builder
        .add(&normalized, wildcard, tenant, tier, filer, number)
        .map_err(|e| match e {
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
        })
}

fn name_field<'a>(field: &'a [u8], what: &str) -> Result<&'a str, String> {
    if is_valid_name(field) {
        // Valid names are ASCII.
        Ok(std::str::from_utf8(field).unwrap_or_default())
    } else {
        Err(format!(
            "bad {what} {:?}: expected 1-64 of A-Z a-z 0-9 _ . - :",
            String::from_utf8_lossy(field)
        ))
    }
}
