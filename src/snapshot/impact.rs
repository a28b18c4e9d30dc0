//! What a change of the config folder moves: two snapshots compared
//! tenant by tenant. A tenant's route is its migration state, and for a
//! migrated one the pool it is served from; a tenant *moves* when that
//! changes, or *goes* when the new table no longer has it. Tenants are
//! matched by name (the same number first: a table that only changed its
//! states or gained lines at the end matches without a lookup).
//!
//! Read by the reload guard (a change that moves too much is held:
//! `reload`) and by `predictor diff`. One pass over both tables: a few
//! tens of milliseconds for a million tenants.

use std::collections::{BTreeMap, HashMap};

use super::Snapshot;
use crate::routing::migration::MigrationState;
use crate::routing::tenants::TenantIdx;

/// Where a tenant's requests go: its state, and its pool when migrated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub state: MigrationState,
    /// The pool's name (migrated only).
    pub pool: Option<String>,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.pool {
            Some(p) => write!(f, "{} ({p})", self.state),
            None => write!(f, "{}", self.state),
        }
    }
}

/// A move: from a route (`None`: a new tenant) to a route (`None`: gone).
pub type Move = (Option<Route>, Option<Route>);

/// What a change moves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impact {
    pub tenants_before: usize,
    pub tenants_after: usize,
    /// Host names (exact and wildcard) of each table.
    pub hosts_before: usize,
    pub hosts_after: usize,
    /// Tenants in both whose route changes.
    pub moved: usize,
    /// Tenants of the old table the new one does not have.
    pub gone: usize,
    /// Tenants of the new table the old one did not have.
    pub new: usize,
    /// Tenants moved by (from, to) route: `to` is `None` for tenants gone,
    /// `from` `None` for new ones.
    pub moves: BTreeMap<Move, usize>,
    /// The same by filer.
    pub by_filer: BTreeMap<String, BTreeMap<Move, usize>>,
}

impl Impact {
    /// What replacing `before` by `after` moves.
    pub fn of(before: &Snapshot, after: &Snapshot) -> Impact {
        let (old, new) = (&*before.tenants, &*after.tenants);
        let mut i = Impact {
            tenants_before: old.tenant_count(),
            tenants_after: new.tenant_count(),
            hosts_before: old.host_count() + old.wildcard_count(),
            hosts_after: new.host_count() + new.wildcard_count(),
            ..Impact::default()
        };
        let same_table = std::ptr::eq(old, new);
        // New tenants matched by an old one, and old ones left to find.
        let mut matched = vec![false; new.tenant_count()];
        let mut unmatched: HashMap<u32, Vec<TenantIdx>> = HashMap::new();
        for t in 0..old.tenant_count() as TenantIdx {
            let same =
                same_table || ((t as usize) < new.tenant_count() && old.name(t) == new.name(t));
            if same {
                matched[t as usize] = true;
                i.count(before, after, t, Some(t));
            } else {
                unmatched
                    .entry(old.record(t).ring_point)
                    .or_default()
                    .push(t);
            }
        }
        if !unmatched.is_empty() {
            for (j, r) in new.tenants() {
                if matched[j as usize] {
                    continue;
                }
                let Some(olds) = unmatched.get_mut(&r.ring_point) else {
                    continue;
                };
                if let Some(k) = olds.iter().position(|&t| old.name(t) == new.name(j)) {
                    let t = olds.swap_remove(k);
                    matched[j as usize] = true;
                    i.count(before, after, t, Some(j));
                }
            }
            for t in unmatched.into_values().flatten() {
                i.count(before, after, t, None);
            }
        }
        for (j, m) in matched.iter().enumerate() {
            if !m {
                i.new += 1;
                let to = route(after, j as TenantIdx);
                let filer = new.filer_name(new.record(j as TenantIdx).filer).to_string();
                *i.moves.entry((None, Some(to.clone()))).or_default() += 1;
                *i.by_filer
                    .entry(filer)
                    .or_default()
                    .entry((None, Some(to)))
                    .or_default() += 1;
            }
        }
        i
    }

    /// Old tenant `t`, found again as `now` in the new table (or gone).
    fn count(&mut self, before: &Snapshot, after: &Snapshot, t: TenantIdx, now: Option<TenantIdx>) {
        if now.is_some_and(|j| key(before, t) == key(after, j)) {
            return; // (compared without building names: most do not move)
        }
        let from = route(before, t);
        let to = now.map(|j| route(after, j));
        if to.is_some() {
            self.moved += 1;
        } else {
            self.gone += 1;
        }
        let filer = match now {
            Some(j) => after.tenants.filer_name(after.tenants.record(j).filer),
            None => before.tenants.filer_name(before.tenants.record(t).filer),
        };
        let key = (Some(from), to);
        *self.moves.entry(key.clone()).or_default() += 1;
        *self
            .by_filer
            .entry(filer.to_string())
            .or_default()
            .entry(key)
            .or_default() += 1;
    }

    /// The share of the old tenants that move or go (0 to 1).
    pub fn changed_share(&self) -> f64 {
        (self.moved + self.gone) as f64 / self.tenants_before.max(1) as f64
    }

    /// The share of the old table's host names the new one lacks, by
    /// count (0 to 1).
    pub fn dropped_hosts_share(&self) -> f64 {
        self.hosts_before.saturating_sub(self.hosts_after) as f64 / self.hosts_before.max(1) as f64
    }

    /// One line for logs and `/status`.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} tenants change route ({:.1} %: {} moved, {} gone), {} new; hosts {} -> {} ({:.1} % fewer)",
            self.moved + self.gone,
            self.tenants_before,
            self.changed_share() * 100.0,
            self.moved,
            self.gone,
            self.new,
            self.hosts_before,
            self.hosts_after,
            self.dropped_hosts_share() * 100.0
        )
    }
}

/// Tenant `t`'s route in `snap`, borrowed.
fn key(snap: &Snapshot, t: TenantIdx) -> (MigrationState, Option<&str>) {
    let r = snap.tenants.record(t);
    let (state, _) = snap.migration.of(t, r.filer);
    let pool = (state == MigrationState::Migrated).then(|| {
        snap.config
            .pool(snap.config.tier(r.tier).pool)
            .name
            .as_str()
    });
    (state, pool)
}

/// Tenant `t`'s route in `snap`.
pub fn route(snap: &Snapshot, t: TenantIdx) -> Route {
    let (state, pool) = key(snap, t);
    Route {
        state,
        pool: pool.map(str::to_string),
    }
}

/// A `(from, to)` move in words.
pub fn move_words(from: &Option<Route>, to: &Option<Route>) -> String {
    let side =
        |r: &Option<Route>, none: &str| r.as_ref().map_or(none.to_string(), |r| r.to_string());
    format!("{} -> {}", side(from, "(new)"), side(to, "(gone)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(tenants: &str, migration: &str) -> Snapshot {
        let dir = tempfile::tempdir().unwrap();
        let w = |n: &str, t: &str| std::fs::write(dir.path().join(n), t).unwrap();
        w(
            "predictor.toml",
            "tenants = \"t.tsv\"\nmigration = \"m.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n\
             [legacy]\naddress = \"127.0.0.1:9\"\n\
             [tiers.web]\npool = \"p\"\n[tiers.gold]\npool = \"q\"\n\
             [pools.p]\nservers = [{ id = \"a\", address = \"127.0.0.1:9\" }]\n\
             [pools.q]\nservers = [{ id = \"b\", address = \"127.0.0.1:9\" }]\n",
        );
        w("t.tsv", tenants);
        w("m.toml", migration);
        Snapshot::load(dir.path()).unwrap()
    }

    const TABLE: &str = "a.example\ta\tweb\tf1\nb.example\tb\tweb\tf1\nc.example\tc\tgold\tf2\nd.example\td\tweb\tf2\n";

    #[test]
    fn moves_are_counted_by_route_and_filer() {
        let before = snap(TABLE, "default = \"legacy\"\n[filers]\nf2 = \"migrated\"\n");
        let after = snap(TABLE, "default = \"legacy\"\n[filers]\nf1 = \"migrated\"\n");
        let i = Impact::of(&before, &after);
        assert_eq!((i.moved, i.gone, i.new), (4, 0, 0));
        assert_eq!(i.changed_share(), 1.0);
        let legacy = Route {
            state: MigrationState::Legacy,
            pool: None,
        };
        let on = |p: &str| Route {
            state: MigrationState::Migrated,
            pool: Some(p.into()),
        };
        assert_eq!(i.moves[&(Some(legacy.clone()), Some(on("p")))], 2);
        assert_eq!(i.moves[&(Some(on("q")), Some(legacy.clone()))], 1);
        assert_eq!(i.by_filer["f2"].values().sum::<usize>(), 2);
        assert_eq!(
            move_words(&Some(legacy), &Some(on("p"))),
            "legacy -> migrated (p)"
        );
        // The same folder: nothing moves.
        assert_eq!(Impact::of(&after, &after).moved, 0);
    }

    #[test]
    fn tenants_are_matched_by_name_in_a_new_table() {
        let m = "default = \"migrated\"\n";
        let before = snap(TABLE, m);
        // Reordered, one gone, one new, one moved to another tier's pool.
        let after = snap(
            "e.example\te\tweb\tf1\nd.example\td\tweb\tf2\nc.example\tc\tweb\tf2\na.example\ta\tweb\tf1\n",
            m,
        );
        let i = Impact::of(&before, &after);
        assert_eq!((i.moved, i.gone, i.new), (1, 1, 1), "{i:?}");
        assert_eq!((i.hosts_before, i.hosts_after), (4, 4));
        assert!(
            i.summary()
                .starts_with("2 of 4 tenants change route (50.0 %: 1 moved, 1 gone), 1 new")
        );
    }
}
