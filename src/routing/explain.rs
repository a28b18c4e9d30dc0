//! "Where would this host go, and why": the routing decision of a snapshot
//! spelled out for an operator (`predictor route`).

use std::fmt;
use std::net::SocketAddr;

use super::host::{HostError, normalize};
use super::migration::{MigrationState, StateSource};
use super::tenants::MatchKind;
use super::{Action, RouteKind};
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
    /// Servers in the order they would be tried (the whole ring walk).
    pub servers: Vec<(String, SocketAddr)>,
    /// Where a legacy request is forwarded.
    pub legacy: Option<SocketAddr>,
    pub generation: u64,
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
    let mut e = Explanation {
        input: input.to_string(),
        host: Err(HostError::Empty),
        tenant: None,
        route: RouteKind::Rejected,
        action: String::new(),
        pool: None,
        servers: Vec::new(),
        legacy: None,
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
        Action::Local { pool, point, .. } => {
            let p = snap.config.pool(pool);
            e.pool = Some(p.name.clone());
            let tenant = d.tenant.map_or(u32::MAX, |m| m.tenant);
            e.servers = snap
                .placement
                .preference(tenant, pool, point)
                .into_iter()
                .map(|s| {
                    let s = &p.servers[usize::from(s)];
                    (s.id.clone(), s.address)
                })
                .collect();
            let attempts = snap.config.limits.upstream_attempts.min(e.servers.len());
            format!(
                "forward to pool {} (first {attempts} servers below are tried)",
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
            "answer 503 Service Unavailable with the maintenance page, Retry-After: {}",
            snap.retry_after.to_str().unwrap_or_default()
        ),
        Action::Reject(status) => format!("answer {status} (unknown host)"),
    };
    e
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
            writeln!(f, "servers:   (ring order)")?;
            for (i, (id, addr)) in self.servers.iter().enumerate() {
                writeln!(f, "  {:>3}. {id} {addr}", i + 1)?;
            }
        }

        if self.generation > 0 {
            writeln!(f, "snapshot:  generation {}", self.generation)?;
        }
        Ok(())
    }
}
