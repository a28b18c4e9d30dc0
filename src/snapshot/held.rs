//! The reload held for confirmation: a change of the folder that would
//! move more tenants (or leave out more host names) than the serving
//! config's `[reload]` guard allows is not installed; it waits here, with
//! what it would change and a token, until an operator confirms it
//! (`predictor reload --confirm`, `POST /reload/confirm?token=T` on the
//! admin listener) or the files change again.

use std::sync::Mutex;
use std::time::SystemTime;

use super::impact::Impact;
use crate::config::ReloadGuard;

/// A reload not installed, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldReload {
    pub at: SystemTime,
    /// What confirms it (changes with every hold).
    pub token: String,
    /// What it would change, in one line.
    pub summary: String,
    pub changed_share: f64,
    pub dropped_hosts_share: f64,
}

/// Whether `guard` holds a change of `impact`.
pub fn holds(guard: &ReloadGuard, impact: &Impact) -> bool {
    let changed = impact.moved + impact.gone;
    let dropped = impact.hosts_before.saturating_sub(impact.hosts_after);
    (changed >= guard.min && guard.changed < 1.0 && impact.changed_share() > guard.changed)
        || (dropped >= guard.min
            && guard.dropped_hosts < 1.0
            && impact.dropped_hosts_share() > guard.dropped_hosts)
}

/// The held reload of one running server, and its confirmation.
#[derive(Default)]
pub struct Guard {
    held: Mutex<Option<HeldReload>>,
    /// The token an operator confirmed, taken by the reload it triggers.
    confirmed: Mutex<Option<String>>,
    confirm: tokio::sync::Notify,
}

impl Guard {
    /// The reload held now, if any.
    pub fn held(&self) -> Option<HeldReload> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Holds a reload of `impact`; returns it (with its new token).
    pub fn hold(&self, impact: &Impact) -> HeldReload {
        let at = SystemTime::now();
        let nanos = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let summary = impact.summary();
        let token = xxhash_rust::xxh3::xxh3_64_with_seed(summary.as_bytes(), nanos);
        let h = HeldReload {
            at,
            token: format!("{:08x}", token as u32),
            summary,
            changed_share: impact.changed_share(),
            dropped_hosts_share: impact.dropped_hosts_share(),
        };
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(h.clone());
        h
    }

    /// Nothing held any more (a reload was installed, or the files went
    /// back to the version serving).
    pub fn clear(&self) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Confirms the held reload whose token is `token`: the reload it
    /// wakes installs it. `false` when nothing with that token is held.
    pub fn confirm(&self, token: &str) -> bool {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.as_ref().is_none_or(|h| h.token != token) {
            return false;
        }
        *self.confirmed.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.to_string());
        self.confirm.notify_one();
        true
    }

    /// Waits for a confirmation.
    pub async fn confirmation(&self) {
        self.confirm.notified().await;
    }

    /// Takes the confirmed token: whether `token` (the held one) was.
    pub fn take_confirmed(&self, token: &str) -> bool {
        let mut c = self.confirmed.lock().unwrap_or_else(|e| e.into_inner());
        if c.as_deref() == Some(token) {
            *c = None;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn impact(before: usize, moved: usize, hosts: (usize, usize)) -> Impact {
        Impact {
            tenants_before: before,
            tenants_after: before,
            hosts_before: hosts.0,
            hosts_after: hosts.1,
            moved,
            ..Impact::default()
        }
    }

    #[test]
    fn a_normal_night_passes_and_a_disaster_is_held() {
        let g = ReloadGuard::default();
        // One filer of a hundred.
        assert!(!holds(&g, &impact(10_000, 100, (20_000, 20_000))));
        // Half of them.
        assert!(holds(&g, &impact(10_000, 5_000, (20_000, 20_000))));
        // A table cut in half, every tenant left unchanged.
        assert!(holds(&g, &impact(10_000, 0, (20_000, 10_000))));
        // Small clusters: under `min`, nothing is held.
        assert!(!holds(&g, &impact(10, 10, (10, 0))));
        // 100 % never holds.
        let off = ReloadGuard {
            changed: 1.0,
            dropped_hosts: 1.0,
            min: 0,
        };
        assert!(!holds(&off, &impact(10_000, 10_000, (20_000, 0))));
    }

    #[test]
    fn only_the_held_token_confirms() {
        let g = Guard::default();
        assert!(!g.confirm("anything"), "nothing held");
        let h = g.hold(&impact(10, 10, (0, 0)));
        assert!(!g.confirm("wrong"));
        assert!(g.confirm(&h.token));
        assert!(g.take_confirmed(&h.token));
        assert!(!g.take_confirmed(&h.token), "once");
        g.clear();
        assert_eq!(g.held(), None);
    }
}
