//! "Where would this host go, and why": the routing decision of a snapshot
//! spelled out for an operator (`predictor route`, `GET /route`). On the
//! admin side: it reads the snapshot and the servers' live state, which
//! the pure routing layer below must not name.

use std::fmt;
use std::net::SocketAddr;

use crate::config::isolation::TierLimits;
use crate::health;
use crate::isolation::top::Top;
use crate::placement::choose::{self, Admission};
use crate::routing::host::{HostError, normalize};
use crate::routing::migration::{MigrationState, StateSource};
use crate::routing::tenants::MatchKind;
use crate::routing::{Action, RouteKind};
use crate::snapshot::Snapshot;

/// A routing decision with everything that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The host as given.
    pub input: String,
    /// The normalised host, or why it is malformed (answered 400).
    pub host: Result<String, HostError>,
    pub tenant: Option<TenantFacts>,
    pub route: RouteKind,
    /// What the proxy does, in words.
    pub action: String,
    pub pool: Option<String>,
    /// The whole preference list: home first, then the ring walk.
    pub servers: Vec<ServerFacts>,
    /// The affinity set's size now (`k`), and the tier's bounds.
    pub k: Option<(usize, usize, usize)>,
    /// Where a legacy request is forwarded.
    pub legacy: Option<SocketAddr>,
    /// The tenant's limits and how it stands against them (a request
    /// forwarded: local or legacy).
    pub limits: Option<LimitFacts>,
    pub generation: u64,
}

/// A tenant's limits (its tier's) and its live counts.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitFacts {
    pub limits: TierLimits,
    pub in_flight: u32,
    /// Its rate bucket is empty now: the next request gets 429.
    pub rate_limited: bool,
    /// Requests waiting in its pool's queue now (all tenants).
    pub pool_queued: Option<usize>,
    /// Over the last 10 seconds, per second (from the running
    /// instance's `/top` scans): requests, limited, queued.
    pub recent: Option<(f64, f64, f64)>,
}

impl Eq for LimitFacts {}

/// One server of a tenant's preference list, with its live state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    pub id: String,
    pub address: SocketAddr,
    /// In the tenant's affinity set now.
    pub member: bool,
    pub admission: Admission,
    /// Why it is down or draining, in words.
    pub why: String,
    pub in_flight: u32,
    /// Its in-flight ceiling now (0: none).
    pub ceiling: u32,
    pub latency_us: u32,
    /// Effective weight, percent of the configured one.
    pub weight_percent: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantFacts {
    pub name: String,
    /// `exact` or the wildcard entry that matched (`*.example.com`).
    pub matched: String,
    pub tier: String,
    pub filer: String,
    pub state: MigrationState,
    /// Which line of the state file decided it.
    pub state_from: String,
}

/// Explains where a request for `input` goes under `snap`.
pub fn explain(snap: &Snapshot, input: &str) -> Explanation {
    explain_live(snap, input, None)
}

/// [`explain`], with the recent activity of the tenant from a running
/// instance's scans.
pub fn explain_live(snap: &Snapshot, input: &str, top: Option<&Top>) -> Explanation {
    let mut e = Explanation {
        input: input.to_string(),
        host: Err(HostError::Empty),
        tenant: None,
        route: RouteKind::Rejected,
        action: String::new(),
        pool: None,
        servers: Vec::new(),
        k: None,
        legacy: None,
        limits: None,
        generation: snap.generation,
    };
    let host = match normalize(input.as_bytes()) {
        Ok(h) => h,
        Err(err) => {
            e.host = Err(err);
            e.action = format!("answer 400 Bad Request ({err})");
            return e;
        }
    };
    e.host = Ok(host.as_str().to_string());
    let d = snap.route(&host);
    e.route = d.kind();
    if let (Some(m), Some((state, source))) = (d.tenant, d.state) {
        let t = &snap.tenants;
        let r = t.record(m.tenant);
        let filer = t.filer_name(r.filer).to_string();
        e.tenant = Some(TenantFacts {
            name: t.name(m.tenant).to_string(),
            matched: match m.kind {
                MatchKind::Exact => "exact".into(),
                MatchKind::Wildcard { suffix_len } => {
                    let h = host.as_str();
                    format!("wildcard *.{}", &h[h.len() - usize::from(suffix_len)..])
                }
            },
            tier: snap.config.tier(r.tier).name.clone(),
            state,
            state_from: match source {
                StateSource::TenantOverride => "tenant override in the state file".into(),
                StateSource::Filer => format!("filer {filer} in the state file"),
                StateSource::Default => "default of the state file".into(),
            },
            filer,
        });
    }
    e.action = match d.action {
        Action::Local { tier, pool, point } => {
            let p = snap.config.pool(pool);
            e.pool = Some(p.name.clone());
            let tenant = d.tenant.map_or(u32::MAX, |m| m.tenant);
            let t = snap.config.tier(tier);
            let live = snap.live.pool(pool);
            let k = live.state().hot_k(point, t.k_min, t.k_max);
            e.k = Some((k, t.k_min, t.k_max));
            let now = health::now_ms();
            let mut members = 0;
            e.servers = snap
                .placement
                .preference(tenant, pool, point)
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    let conf = &p.servers[usize::from(s)];
                    let state = live.server(s);
                    let h = state.health(now);
                    let member = choose::is_member(i, h.admission, members, k);
                    members += usize::from(member);
                    let mut why = Vec::new();
                    if h.check_down {
                        why.push("health checks fail".to_string());
                    }
                    if h.agent_down {
                        why.push("agent says down".into());
                    }
                    if h.agent != health::agent::AdminState::Ready {
                        why.push(format!("agent says {:?}", h.agent).to_lowercase());
                    }
                    if h.ejected_for_ms > 0 {
                        why.push(format!(
                            "ejected for {:.1} s more (ejection {} in a row)",
                            h.ejected_for_ms as f64 / 1000.0,
                            h.ejections
                        ));
                    }
                    ServerFacts {
                        id: conf.id.clone(),
                        address: conf.address,
                        member,
                        admission: h.admission,
                        why: why.join(", "),
                        in_flight: state.in_flight(),
                        ceiling: state.ceiling(),
                        latency_us: state.latency(now),
                        weight_percent: (state.weight_ratio() * 100.0).round() as u32,
                    }
                })
                .collect();
            let attempts = snap.config.limits.upstream_attempts.min(e.servers.len());
            format!(
                "forward to pool {} (the affinity set by live load, then the next servers; at most {attempts} tried)",
                p.name
            )
        }
        Action::Legacy => {
            e.legacy = snap.config.legacy.as_ref().map(|l| l.address);
            let why = if d.tenant.is_some() {
                "not migrated yet"
            } else {
                "unknown host"
            };
            match e.legacy {
                Some(a) => format!("forward to the legacy balancer at {a} ({why})"),
                None => "no legacy balancer configured".into(),
            }
        }
        Action::Maintenance => format!(
            "answer 503 Service Unavailable with the maintenance page, Retry-After: {}{}",
            snap.retry_after.to_str().unwrap_or_default(),
            if snap.config.preview.is_some() {
                " (a request with the preview credential goes to the site's new pool)"
            } else {
                ""
            }
        ),
        Action::Reject(status) => format!("answer {status} (unknown host)"),
    };
    if let (Some(m), Action::Local { .. } | Action::Legacy) = (d.tenant, d.action) {
        let tier = snap.tenants.record(m.tenant).tier;
        if let Some(limits) = snap.config.isolation.tiers.get(usize::from(tier)) {
            let now = snap.tenants_live.now(m.tenant, limits, health::now_ns());
            let pool_queued = match d.action {
                Action::Local { pool, .. } => Some(snap.live.pool(pool).queued()),
                _ => None,
            };
            let recent = top.map(|t| t.of(&snap.tenants_live, m.tenant, 10));
            e.limits = Some(LimitFacts {
                limits: *limits,
                in_flight: now.in_flight,
                rate_limited: now.rate_limited,
                pool_queued,
                recent: recent.map(|a| (a.requests, a.limited, a.queued)),
            });
        }
    }
    e
}

impl fmt::Display for LimitFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.limits;
        let off = |n: u32| {
            if n == 0 {
                "none".to_string()
            } else {
                n.to_string()
            }
        };
        write!(f, "limits:    concurrent {}", off(l.concurrent))?;
        match l.rate {
            0 => write!(f, ", rate none")?,
            r => write!(f, ", rate {r}/s (burst {})", l.burst)?,
        }
        match l.client_rate {
            0 => write!(f, ", per client none")?,
            r => write!(f, ", per client {r}/s (burst {})", l.client_burst)?,
        }
        writeln!(f, "; queue share {}, priority {}", l.share, l.priority)?;
        let mut now = format!("{} in flight", self.in_flight);
        if let Some(q) = self.pool_queued {
            now.push_str(&format!(", {q} waiting in its pool's queue"));
        }
        if let Some((r, lim, q)) = self.recent {
            now.push_str(&format!(
                "; last 10 s: {r:.1} req/s, {lim:.1} limited/s, {q:.1} queued/s"
            ));
        }
        writeln!(f, "now:       {now}")?;
        let mut limited = Vec::new();
        if l.concurrent > 0 && self.in_flight >= l.concurrent {
            limited.push("at its concurrency limit");
        }
        if self.rate_limited {
            limited.push("over its rate");
        }
        if self.recent.is_some_and(|(_, lim, _)| lim > 0.0) {
            limited.push("limited in the last 10 s");
        }
        if !limited.is_empty() {
            writeln!(f, "limited:   yes ({})", limited.join(", "))?;
        }
        Ok(())
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Ok(h) if *h == self.input => writeln!(f, "host:      {h}")?,
            Ok(h) => writeln!(f, "host:      {h} (from {:?})", self.input)?,
            Err(e) => writeln!(f, "host:      {:?} is malformed: {e}", self.input)?,
        }
        match &self.tenant {
            Some(t) => {
                writeln!(f, "tenant:    {} ({} match)", t.name, t.matched)?;
                writeln!(f, "tier:      {}", t.tier)?;
                writeln!(f, "filer:     {}", t.filer)?;
                writeln!(f, "state:     {} (from the {})", t.state, t.state_from)?;
            }
            None if self.host.is_ok() => {
                writeln!(f, "tenant:    none (host not in the tenant table)")?
            }
            None => {}
        }
        writeln!(f, "route:     {}", self.route.as_str())?;
        writeln!(f, "action:    {}", self.action)?;
        if let Some(p) = &self.pool {
            writeln!(f, "pool:      {p}")?;
            if let Some((k, k_min, k_max)) = self.k {
                let hot = if k > k_min {
                    " (grown: a hot site)"
                } else {
                    ""
                };
                writeln!(
                    f,
                    "affinity:  {k} server(s){hot}; tier k_min {k_min}, k_max {k_max}"
                )?;
            }
            writeln!(
                f,
                "servers:   (preference order: home first, then the ring; * = affinity set)"
            )?;
            for (i, s) in self.servers.iter().enumerate() {
                let state = s.admission.as_str();
                let mark = if s.member { '*' } else { ' ' };
                if self.generation == 0 {
                    // From a config folder: no live state to show.
                    writeln!(f, "  {mark}{:>3}. {} {}", i + 1, s.id, s.address)?;
                    continue;
                }
                let ceiling = match s.ceiling {
                    0 => String::new(),
                    c => format!(" of {c}"),
                };
                write!(
                    f,
                    "  {mark}{:>3}. {} {}  {state}, {}{ceiling} in flight, latency {:.2} ms, weight {}%",
                    i + 1,
                    s.id,
                    s.address,
                    s.in_flight,
                    f64::from(s.latency_us) / 1000.0,
                    s.weight_percent
                )?;
                if !s.why.is_empty() {
                    write!(f, " ({})", s.why)?;
                }
                writeln!(f)?;
            }
        }

        if let Some(l) = &self.limits {
            if self.generation == 0 {
                // From a config folder: the limits, no live counts.
                let mut only = l.clone();
                only.recent = None;
                let text = only.to_string();
                if let Some(first) = text.lines().next() {
                    writeln!(f, "{first}")?;
                }
            } else {
                write!(f, "{l}")?;
            }
        }
        if self.generation > 0 {
            writeln!(f, "snapshot:  generation {}", self.generation)?;
        }
        Ok(())
    }
}
