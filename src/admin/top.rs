//! `GET /top`: the tenants taking the most right now, by requests,
//! requests in flight, limited or queued requests, over the last seconds
//! or minutes (from [`crate::isolation::top`]'s scans), as JSON or a text
//! table (`?format=text`, what `predictor top` shows).
//!
//! Query: `window` (seconds, or `30s`, `5m`; default 10), `by`
//! (`requests`, `in_flight`, `limited`, `queued`; default `requests`),
//! `n` (rows, default 20, at most 1000), `format` (`json`, `text`).

use std::fmt::Write;

use serde_json::json;

use crate::isolation::top::{By, HISTORY, Top};
use crate::snapshot::Snapshot;

/// What `/top` was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub window: usize,
    pub by: By,
    pub n: usize,
    pub text: bool,
}

impl Query {
    /// Parses a query string; `Err` says what is wrong.
    pub fn parse(q: Option<&str>) -> Result<Query, String> {
        let mut out = Query {
            window: 10,
            by: By::Requests,
            n: 20,
            text: false,
        };
        for kv in q.unwrap_or_default().split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "window" => {
                    let secs = v
                        .parse::<u64>()
                        .ok()
                        .or_else(|| humantime::parse_duration(v).ok().map(|d| d.as_secs()))
                        .filter(|&s| s > 0)
                        .ok_or_else(|| {
                            format!(
                                "window: expected seconds or a duration like 30s or 5m, found {v:?}"
                            )
                        })?;
                    out.window = (secs as usize).min(HISTORY);
                }
                "by" => {
                    out.by = By::parse(v).ok_or_else(|| {
                        format!("by: expected requests, in_flight, limited or queued, found {v:?}")
                    })?
                }
                "n" => {
                    out.n = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| format!("n: expected 1 to 1000, found {v:?}"))?
                }
                "format" => {
                    out.text = match v {
                        "text" => true,
                        "json" => false,
                        _ => return Err(format!("format: expected json or text, found {v:?}")),
                    }
                }
                _ => return Err(format!("unknown parameter {k:?} (window, by, n, format)")),
            }
        }
        Ok(out)
    }
}

fn by_name(b: By) -> &'static str {
    match b {
        By::Requests => "requests",
        By::InFlight => "in_flight",
        By::Limited => "limited",
        By::Queued => "queued",
    }
}

/// The answer to `q` (JSON or text).
pub fn render(snap: &Snapshot, top: &Top, q: Query) -> String {
    let rows = top.rank(&snap.tenants_live, q.window, q.by, q.n);
    let scanned = top.seconds();
    let window = q.window.min(scanned.max(1));
    let tier_of = |t: u32| {
        let r = snap.tenants.record(t);
        let name = snap.config.tier(r.tier).name.as_str();
        let limits = snap
            .config
            .isolation
            .tiers
            .get(usize::from(r.tier))
            .copied();
        (name, limits)
    };
    if q.text {
        let mut out = format!(
            "predictor top: last {window} s ({scanned} s scanned), by {}, generation {}\n",
            by_name(q.by),
            snap.generation
        );
        let _ = writeln!(
            out,
            "{:<32} {:<12} {:>10} {:>9} {:>10} {:>9} {:>12}",
            "TENANT", "TIER", "REQ/S", "IN FLIGHT", "LIMITED/S", "QUEUED/S", "CONCURRENT"
        );
        for a in &rows {
            let (tier, limits) = tier_of(a.tenant);
            let concurrent = match limits.map_or(0, |l| l.concurrent) {
                0 => "none".to_string(),
                c => c.to_string(),
            };
            let _ = writeln!(
                out,
                "{:<32} {:<12} {:>10.1} {:>9} {:>10.1} {:>9.1} {:>12}",
                snap.tenants.name(a.tenant),
                tier,
                a.requests,
                a.in_flight,
                a.limited,
                a.queued,
                concurrent
            );
        }
        if rows.is_empty() {
            out.push_str("(no tenant with traffic in the window)\n");
        }
        return out;
    }
    let tenants: Vec<_> = rows
        .iter()
        .map(|a| {
            let (tier, limits) = tier_of(a.tenant);
            json!({
                "tenant": snap.tenants.name(a.tenant),
                "tier": tier,
                "requests_per_s": a.requests,
                "in_flight": a.in_flight,
                "limited_per_s": a.limited,
                "queued_per_s": a.queued,
                "limit_concurrent": limits.map(|l| l.concurrent),
                "limit_rate": limits.map(|l| l.rate),
            })
        })
        .collect();
    let body = json!({
        "generation": snap.generation,
        "window_s": window,
        "scanned_s": scanned,
        "by": by_name(q.by),
        "tenants": tenants,
    });
    serde_json::to_string_pretty(&body).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_refuse_clearly() {
        let q = Query::parse(Some("window=5m&by=limited&n=3&format=text")).unwrap();
        assert_eq!(
            q,
            Query {
                window: 300,
                by: By::Limited,
                n: 3,
                text: true
            }
        );
        assert_eq!(Query::parse(None).unwrap().window, 10);
        assert_eq!(Query::parse(Some("window=30")).unwrap().window, 30);
        assert!(Query::parse(Some("by=host")).unwrap_err().contains("by:"));
        assert!(Query::parse(Some("n=0")).is_err());
        assert!(
            Query::parse(Some("tenant=x"))
                .unwrap_err()
                .contains("unknown")
        );
    }
}
