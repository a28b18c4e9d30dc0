//! Shadow verification: the verdict on a filer's new copy before the
//! flip. Sites in the `shadow` state are served by the legacy balancer;
//! a sample of their safe requests is also sent to their pool here
//! (`proxy::shadow`) and each pair of answers lands here: matched, or
//! mismatched by kind (the one that matters most first: legacy answered
//! 2xx/3xx and the new copy 5xx). Counts by filer and by tenant, a few
//! examples per tenant, memory bounded ([`MAX_TENANTS`] tenants, then by
//! filer only). Read by `GET /verify` and `predictor verify`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;

use serde_json::json;

use crate::config::Shadow;

/// Tenants followed one by one; more are counted by filer only.
pub const MAX_TENANTS: usize = 10_000;
/// Examples kept per tenant.
const EXAMPLES: usize = 3;

/// What one side answered (its head, and the body length when known).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub location: Option<String>,
    pub length: Option<u64>,
    /// A digest of a small body (`[shadow] digest_max`).
    pub digest: Option<u64>,
}

/// How two answers differ, the gravest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Legacy answered 2xx or 3xx, the new copy 5xx.
    Broken,
    /// Another status.
    Status,
    /// Another redirect target.
    Location,
    ContentType,
    /// Body lengths further apart than the tolerance.
    Length,
    /// Small bodies of other content.
    Body,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Broken,
        Kind::Status,
        Kind::Location,
        Kind::ContentType,
        Kind::Length,
        Kind::Body,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Broken => "new_5xx",
            Kind::Status => "status",
            Kind::Location => "location",
            Kind::ContentType => "content_type",
            Kind::Length => "length",
            Kind::Body => "body",
        }
    }
}

/// How `new` differs from `live`, if it does (`tolerance`: a share of the
/// longer body).
pub fn compare(live: &Answer, new: &Answer, tolerance: f64) -> Option<Kind> {
    if live.status != new.status {
        let ok = (200..400).contains(&live.status);
        return Some(if ok && new.status >= 500 {
            Kind::Broken
        } else {
            Kind::Status
        });
    }
    if (300..400).contains(&live.status) && live.location != new.location {
        return Some(Kind::Location);
    }
    let media = |a: &Answer| {
        a.content_type.as_deref().map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    };
    if media(live) != media(new) {
        return Some(Kind::ContentType);
    }
    if let (Some(a), Some(b)) = (live.length, new.length) {
        let (lo, hi) = (a.min(b), a.max(b));
        if (hi - lo) as f64 > tolerance * hi as f64 {
            return Some(Kind::Length);
        }
    }
    if let (Some(a), Some(b)) = (live.digest, new.digest) {
        if a != b {
            return Some(Kind::Body);
        }
    }
    None
}

/// Counts of one filer or tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub sampled: u64,
    pub matched: u64,
    pub mismatched: HashMap<Kind, u64>,
    /// The copy got no answer (connect error, timeout).
    pub failed: u64,
}

impl Counts {
    pub fn mismatches(&self) -> u64 {
        self.mismatched.values().sum()
    }

    fn add(&mut self, outcome: Outcome) {
        self.sampled += 1;
        match outcome {
            Outcome::Matched => self.matched += 1,
            Outcome::Mismatched(k) => *self.mismatched.entry(k).or_default() += 1,
            Outcome::Failed => self.failed += 1,
        }
    }
}

/// One pair of answers, compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Matched,
    Mismatched(Kind),
    Failed,
}

/// An example of a mismatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub host: String,
    pub path: String,
    pub live: u16,
    /// 0: the copy got no answer.
    pub new: u16,
    pub kind: &'static str,
}

#[derive(Default)]
struct TenantBook {
    filer: String,
    counts: Counts,
    examples: Vec<Example>,
}

#[derive(Default)]
struct Book {
    filers: HashMap<String, Counts>,
    tenants: HashMap<String, TenantBook>,
    /// Each filer's copy rate bucket (GCRA arrival time).
    rates: HashMap<String, std::sync::atomic::AtomicU64>,
}

/// The verdicts of one running server.
#[derive(Default)]
pub struct Verify {
    book: Mutex<Book>,
}

/// One comparison to record.
pub struct Sample<'a> {
    pub tenant: &'a str,
    pub filer: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub live: u16,
    pub new: u16,
    pub outcome: Outcome,
}

impl Verify {
    pub fn record(&self, s: Sample<'_>) {
        let mut b = self.book.lock().unwrap_or_else(|e| e.into_inner());
        match b.filers.get_mut(s.filer) {
            Some(c) => c.add(s.outcome),
            None => b
                .filers
                .entry(s.filer.to_string())
                .or_default()
                .add(s.outcome),
        }
        let room = b.tenants.len() < MAX_TENANTS;
        let t = match b.tenants.get_mut(s.tenant) {
            Some(t) => t,
            None if room => b
                .tenants
                .entry(s.tenant.to_string())
                .or_insert_with(|| TenantBook {
                    filer: s.filer.to_string(),
                    ..TenantBook::default()
                }),
            None => return,
        };
        t.counts.add(s.outcome);
        let kind = match s.outcome {
            Outcome::Matched => return,
            Outcome::Mismatched(k) => k.as_str(),
            Outcome::Failed => "no_answer",
        };
        if t.examples.len() < EXAMPLES {
            t.examples.push(Example {
                host: s.host.to_string(),
                path: s.path.chars().take(200).collect(),
                live: s.live,
                new: s.new,
                kind,
            });
        }
    }

    /// Takes one copy of `filer`'s from its bucket of `rate` per second
    /// (bursts of one second's worth) at `now_ns`.
    pub fn take_rate(&self, filer: &str, rate: u32, now_ns: u64) -> bool {
        let Some(r) = crate::isolation::rate::Rate::new(rate, rate) else {
            return true;
        };
        let mut b = self.book.lock().unwrap_or_else(|e| e.into_inner());
        if !b.rates.contains_key(filer) {
            b.rates.insert(filer.to_string(), Default::default());
        }
        b.rates
            .get(filer)
            .is_some_and(|cell| r.take(cell, now_ns).is_ok())
    }

    /// Forgets the samples of `filer` (all filers: `None`), e.g. once the
    /// differences found are fixed.
    pub fn reset(&self, filer: Option<&str>) {
        let mut b = self.book.lock().unwrap_or_else(|e| e.into_inner());
        match filer {
            Some(f) => {
                b.filers.remove(f);
                b.tenants.retain(|_, t| t.filer != f);
            }
            None => *b = Book::default(),
        }
    }

    /// Every filer's counts and verdict, and the worst tenants (of
    /// `filer` only when given), as JSON.
    pub fn json(&self, policy: &Shadow, filer: Option<&str>) -> serde_json::Value {
        let b = self.book.lock().unwrap_or_else(|e| e.into_inner());
        let counts = |c: &Counts| {
            let kinds: serde_json::Map<String, serde_json::Value> = Kind::ALL
                .iter()
                .map(|k| {
                    (
                        k.as_str().to_string(),
                        c.mismatched.get(k).copied().unwrap_or(0).into(),
                    )
                })
                .collect();
            json!({"sampled": c.sampled, "matched": c.matched, "mismatched": kinds, "failed": c.failed})
        };
        let mut filers: Vec<_> = b
            .filers
            .iter()
            .filter(|(f, _)| filer.is_none_or(|x| x == *f))
            .collect();
        filers.sort_by(|a, b| a.0.cmp(b.0));
        let filers: Vec<_> = filers
            .into_iter()
            .map(|(f, c)| {
                let (ready, why) = verdict(c, policy);
                json!({"filer": f, "ready": ready, "why": why, "counts": counts(c)})
            })
            .collect();
        let mut worst: Vec<_> = b
            .tenants
            .iter()
            .filter(|(_, t)| {
                filer.is_none_or(|x| x == t.filer) && t.counts.mismatches() + t.counts.failed > 0
            })
            .collect();
        worst.sort_by(|a, b| {
            let key = |t: &TenantBook| {
                (
                    t.counts.mismatched.get(&Kind::Broken).copied().unwrap_or(0),
                    t.counts.mismatches() + t.counts.failed,
                )
            };
            key(b.1).cmp(&key(a.1)).then(a.0.cmp(b.0))
        });
        let worst: Vec<_> = worst
            .into_iter()
            .take(20)
            .map(|(name, t)| {
                json!({
                    "tenant": name,
                    "filer": t.filer,
                    "counts": counts(&t.counts),
                    "examples": t.examples.iter().map(|e| json!({"host": e.host, "path": e.path, "legacy": e.live, "new": e.new, "kind": e.kind})).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({"filers": filers, "worst_tenants": worst})
    }

    /// The same as a text report.
    pub fn text(&self, policy: &Shadow, filer: Option<&str>) -> String {
        let j = self.json(policy, filer);
        let mut out = String::new();
        let filers = j["filers"].as_array().cloned().unwrap_or_default();
        if filers.is_empty() {
            out.push_str("no shadow samples yet (a filer in the \"shadow\" state, and requests to its sites)\n");
        }
        for f in &filers {
            let c = &f["counts"];
            let mism: u64 = c["mismatched"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
            let _ = writeln!(
                out,
                "{:<16} {:<9} sampled {}, matched {}, mismatched {}, no answer {}{}",
                f["filer"].as_str().unwrap_or(""),
                if f["ready"] == true {
                    "READY"
                } else {
                    "NOT READY"
                },
                c["sampled"],
                c["matched"],
                mism,
                c["failed"],
                f["why"]
                    .as_str()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default()
            );
        }
        let worst = j["worst_tenants"].as_array().cloned().unwrap_or_default();
        if !worst.is_empty() {
            out.push_str("worst tenants:\n");
            for t in &worst {
                let c = &t["counts"];
                let _ = writeln!(
                    out,
                    "  {} (filer {}): {} new 5xx of {} sampled",
                    t["tenant"].as_str().unwrap_or(""),
                    t["filer"].as_str().unwrap_or(""),
                    c["mismatched"]["new_5xx"],
                    c["sampled"]
                );
                for e in t["examples"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "    {} {}{}: legacy {}, new {}",
                        e["kind"].as_str().unwrap_or(""),
                        e["host"].as_str().unwrap_or(""),
                        e["path"].as_str().unwrap_or(""),
                        e["legacy"],
                        e["new"]
                    );
                }
            }
        }
        out
    }
}

/// Whether a filer's copy is ready, and why not.
pub fn verdict(c: &Counts, p: &Shadow) -> (bool, Option<String>) {
    if c.sampled < p.min_samples {
        return (
            false,
            Some(format!(
                "{} samples of the {} needed",
                c.sampled, p.min_samples
            )),
        );
    }
    let bad = c.mismatches() + c.failed;
    let share = bad as f64 / c.sampled as f64;
    if share > p.max_mismatch {
        let broken = c.mismatched.get(&Kind::Broken).copied().unwrap_or(0);
        return (
            false,
            Some(format!(
                "{:.1} % differ ({broken} new 5xx), over {:.1} %",
                share * 100.0,
                p.max_mismatch * 100.0
            )),
        );
    }
    (true, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, ct: &str, len: u64) -> Answer {
        Answer {
            status,
            content_type: Some(ct.into()),
            location: None,
            length: Some(len),
            digest: None,
        }
    }

    #[test]
    fn answers_compare_gravest_first() {
        let live = answer(200, "text/html; charset=utf-8", 1000);
        assert_eq!(compare(&live, &answer(200, "text/html", 1050), 0.1), None);
        assert_eq!(
            compare(&live, &answer(500, "text/html", 10), 0.1),
            Some(Kind::Broken)
        );
        assert_eq!(
            compare(&live, &answer(404, "text/html", 10), 0.1),
            Some(Kind::Status)
        );
        assert_eq!(
            compare(&live, &answer(200, "application/json", 1000), 0.1),
            Some(Kind::ContentType)
        );
        assert_eq!(
            compare(&live, &answer(200, "text/html", 500), 0.1),
            Some(Kind::Length)
        );
        let mut r = answer(302, "text/html", 0);
        r.location = Some("/a".into());
        let mut other = r.clone();
        other.location = Some("/b".into());
        assert_eq!(compare(&r, &other, 0.1), Some(Kind::Location));
        let (mut a, mut b) = (answer(200, "text/plain", 5), answer(200, "text/plain", 5));
        (a.digest, b.digest) = (Some(1), Some(2));
        assert_eq!(compare(&a, &b, 0.1), Some(Kind::Body));
        b.digest = None;
        assert_eq!(compare(&a, &b, 0.1), None, "a body too big to digest");
    }

    #[test]
    fn a_filer_s_copies_keep_to_its_rate() {
        let v = Verify::default();
        let s = 1_000_000_000;
        let taken = (0..100).filter(|_| v.take_rate("f1", 10, s)).count();
        assert_eq!(taken, 10, "a second's worth at once");
        assert!(v.take_rate("f2", 10, s), "another filer has its own");
        assert!(
            v.take_rate("f1", 10, s + s / 10),
            "a tenth of a second later"
        );
        assert!(v.take_rate("f1", 0, s), "0: no bound");
    }

    #[test]
    fn a_filer_is_ready_with_enough_matching_samples() {
        let c = crate::config::tests_support::two_tiers();
        let p = Shadow {
            min_samples: 10,
            ..c.shadow
        };
        let v = Verify::default();
        let sample = |tenant, outcome| Sample {
            tenant,
            filer: "f1",
            host: "a.example",
            path: "/",
            live: 200,
            new: 500,
            outcome,
        };
        for _ in 0..9 {
            v.record(sample("t1", Outcome::Matched));
        }
        assert_eq!(v.json(&p, None)["filers"][0]["ready"], false);
        v.record(sample("t1", Outcome::Matched));
        assert_eq!(v.json(&p, None)["filers"][0]["ready"], true);
        for _ in 0..5 {
            v.record(sample("t2", Outcome::Mismatched(Kind::Broken)));
        }
        let j = v.json(&p, Some("f1"));
        assert_eq!(j["filers"][0]["ready"], false);
        assert_eq!(j["worst_tenants"][0]["tenant"], "t2");
        assert_eq!(
            j["worst_tenants"][0]["examples"].as_array().unwrap().len(),
            3
        );
        assert!(v.text(&p, None).contains("NOT READY"));
        assert!(
            v.json(&p, Some("f9"))["filers"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
}
