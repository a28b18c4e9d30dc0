//! Who is hot: the tenants with the most requests, requests in flight,
//! limited and queued requests over the last seconds or minutes, without
//! a metric label per tenant.
//!
//! Once a second [`Top::tick`] scans every tenant's counters
//! ([`super::TenantsLive::counters`]) against the previous scan and keeps
//! that second's leaders ([`KEEP`] by each count): a scan reads 16 bytes
//! per tenant (a few milliseconds per million tenants, on the control
//! thread) and writes only where a count moved. [`HISTORY`] seconds are
//! kept; a window's rates are summed from them, so a tenant that was
//! never among a second's leaders counts 0 there (the ranking is exact for
//! tenants that lead, a lower bound for the rest). A new tenant table
//! (its numbers change) starts the history afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};

use super::TenantsLive;
use crate::routing::tenants::TenantIdx;

/// Leaders kept per second, by each count.
pub const KEEP: usize = 64;
/// Seconds of history.
pub const HISTORY: usize = 900;

/// What one tenant did in one second (or, ranked, per second over a
/// window).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Activity {
    pub tenant: TenantIdx,
    pub requests: f64,
    pub limited: f64,
    pub queued: f64,
    /// Requests in flight now.
    pub in_flight: u32,
}

/// The count a ranking orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Requests,
    InFlight,
    Limited,
    Queued,
}

impl By {
    pub fn parse(s: &str) -> Option<By> {
        Some(match s {
            "requests" | "rate" => By::Requests,
            "in_flight" => By::InFlight,
            "limited" => By::Limited,
            "queued" => By::Queued,
            _ => return None,
        })
    }

    fn key(self, a: &Activity) -> f64 {
        match self {
            By::Requests => a.requests,
            By::InFlight => f64::from(a.in_flight),
            By::Limited => a.limited,
            By::Queued => a.queued,
        }
    }
}

/// The scans' history.
#[derive(Default)]
pub struct Top {
    inner: Mutex<History>,
}

#[derive(Default)]
struct History {
    /// The counters scanned (a new table starts afresh).
    live: Weak<TenantsLive>,
    /// The previous scan's requests, limited and queued counts.
    prev: [Vec<u32>; 3],
    /// Each second's leaders, newest last: (tenant, requests, limited,
    /// queued).
    seconds: VecDeque<Vec<(TenantIdx, [u32; 3])>>,
}

impl Top {
    /// Scans `live` (call once a second).
    pub fn tick(&self, live: &Arc<TenantsLive>) {
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let [_, requests, limited, queued] = live.counters();
        if !std::ptr::eq(h.live.as_ptr(), Arc::as_ptr(live)) {
            // Counters start at 0; the numbers of the old table mean
            // other tenants now.
            h.live = Arc::downgrade(live);
            h.prev = std::array::from_fn(|_| vec![0; requests.len()]);
            h.seconds.clear();
        }
        let mut moved: Vec<(TenantIdx, [u32; 3])> = Vec::new();
        let [p_req, p_lim, p_q] = &mut h.prev;
        for i in 0..requests.len() {
            let now = [
                requests[i].load(Relaxed),
                limited[i].load(Relaxed),
                queued[i].load(Relaxed),
            ];
            let before = [p_req[i], p_lim[i], p_q[i]];
            if now != before {
                moved.push((
                    i as TenantIdx,
                    std::array::from_fn(|k| now[k].wrapping_sub(before[k])),
                ));
                (p_req[i], p_lim[i], p_q[i]) = (now[0], now[1], now[2]);
            }
        }
        let second = leaders(moved);
        if h.seconds.len() == HISTORY {
            h.seconds.pop_front();
        }
        h.seconds.push_back(second);
    }

    /// The `n` leading tenants by `by` over the last `window` seconds (at
    /// most what was scanned), as rates per second; in flight as now.
    pub fn rank(&self, live: &TenantsLive, window: usize, by: By, n: usize) -> Vec<Activity> {
        let h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let [in_flight, ..] = live.counters();
        let same = std::ptr::eq(h.live.as_ptr(), live);
        let span = window.clamp(1, HISTORY).min(h.seconds.len().max(1));
        let mut sum: HashMap<TenantIdx, [u64; 3]> = HashMap::new();
        if same {
            for s in h.seconds.iter().rev().take(span) {
                for (t, c) in s {
                    let e = sum.entry(*t).or_default();
                    for k in 0..3 {
                        e[k] += u64::from(c[k]);
                    }
                }
            }
        }
        if by == By::InFlight {
            // Straight from the counters: every tenant with some.
            for (i, f) in in_flight.iter().enumerate() {
                if f.load(Relaxed) > 0 {
                    sum.entry(i as TenantIdx).or_default();
                }
            }
        }
        let per_s = |x: u64| x as f64 / span as f64;
        let mut out: Vec<Activity> = sum
            .into_iter()
            .map(|(t, c)| Activity {
                tenant: t,
                requests: per_s(c[0]),
                limited: per_s(c[1]),
                queued: per_s(c[2]),
                in_flight: in_flight.get(t as usize).map_or(0, |f| f.load(Relaxed)),
            })
            .filter(|a| by.key(a) > 0.0)
            .collect();
        out.sort_by(|a, b| {
            by.key(b)
                .total_cmp(&by.key(a))
                .then(b.requests.total_cmp(&a.requests))
                .then(a.tenant.cmp(&b.tenant))
        });
        out.truncate(n);
        out
    }

    /// Tenant `t`'s rates over the last `window` seconds.
    pub fn of(&self, live: &TenantsLive, t: TenantIdx, window: usize) -> Activity {
        let h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut a = Activity {
            tenant: t,
            in_flight: live.counters()[0]
                .get(t as usize)
                .map_or(0, |f| f.load(Relaxed)),
            ..Activity::default()
        };
        if !std::ptr::eq(h.live.as_ptr(), live) {
            return a;
        }
        let span = window.clamp(1, HISTORY).min(h.seconds.len().max(1));
        let mut c = [0u64; 3];
        for s in h.seconds.iter().rev().take(span) {
            if let Some((_, n)) = s.iter().find(|(x, _)| *x == t) {
                for k in 0..3 {
                    c[k] += u64::from(n[k]);
                }
            }
        }
        a.requests = c[0] as f64 / span as f64;
        a.limited = c[1] as f64 / span as f64;
        a.queued = c[2] as f64 / span as f64;
        a
    }

    /// Seconds of history scanned so far.
    pub fn seconds(&self) -> usize {
        let h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        h.seconds.len()
    }
}

/// The leaders of one second: the first [`KEEP`] by each count.
fn leaders(mut moved: Vec<(TenantIdx, [u32; 3])>) -> Vec<(TenantIdx, [u32; 3])> {
    if moved.len() <= KEEP {
        return moved;
    }
    let mut keep = vec![false; moved.len()];
    for k in 0..3 {
        let mut idx: Vec<usize> = (0..moved.len()).filter(|&i| moved[i].1[k] > 0).collect();
        if idx.len() > KEEP {
            idx.select_nth_unstable_by(KEEP - 1, |&a, &b| moved[b].1[k].cmp(&moved[a].1[k]));
            idx.truncate(KEEP);
        }
        for i in idx {
            keep[i] = true;
        }
    }
    let mut i = 0;
    moved.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::isolation::TierLimits;

    fn limits(concurrent: u32) -> TierLimits {
        TierLimits {
            concurrent,
            rate: 0,
            burst: 1,
            client_rate: 0,
            client_burst: 1,
            share: 1,
            priority: 0,
        }
    }

    #[test]
    fn the_busiest_tenant_leads_and_windows_average() {
        let live = Arc::new(TenantsLive::new(1_000));
        let top = Top::default();
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let hit = |t: TenantIdx, n: usize, l: &TierLimits| {
            (0..n)
                .map(|_| live.admit(t, l, ip, 1).ok())
                .collect::<Vec<_>>()
        };
        top.tick(&live);
        // Second 1: tenant 7 makes 100 requests, tenant 3 makes 10, and
        // 200 others one each.
        let _held = hit(7, 100, &limits(0));
        drop(hit(3, 10, &limits(0)));
        for t in 100..300 {
            drop(hit(t, 1, &limits(0)));
        }
        top.tick(&live);
        // Second 2: tenant 3 makes 50, 45 of them over its limit of 5.
        let _held3 = hit(3, 50, &limits(5));
        top.tick(&live);
        let last = top.rank(&live, 1, By::Requests, 2);
        assert_eq!(last[0].tenant, 3);
        assert_eq!(last[0].requests, 50.0);
        assert_eq!(last[0].limited, 45.0);
        assert_eq!(last[0].in_flight, 5);
        let two = top.rank(&live, 2, By::Requests, 2);
        assert_eq!((two[0].tenant, two[0].requests), (7, 50.0));
        assert_eq!((two[1].tenant, two[1].requests), (3, 30.0));
        let limited = top.rank(&live, 60, By::Limited, 5);
        assert_eq!(limited.len(), 1, "only tenant 3 was limited");
        let busy = top.rank(&live, 60, By::InFlight, 1);
        assert_eq!((busy[0].tenant, busy[0].in_flight), (7, 100));
        // A new table's counters start the history afresh.
        let other = Arc::new(TenantsLive::new(10));
        top.tick(&other);
        assert!(top.rank(&other, 60, By::Requests, 5).is_empty());
    }

    #[test]
    fn a_second_keeps_the_leaders_of_each_count() {
        let moved: Vec<(TenantIdx, [u32; 3])> = (0..1_000u32)
            .map(|t| (t, [t, u32::from(t == 5), 0]))
            .collect();
        let kept = leaders(moved);
        assert_eq!(kept.len(), KEEP + 1);
        assert!(kept.iter().any(|(t, _)| *t == 999));
        assert!(kept.iter().any(|(t, _)| *t == 5), "the one limited tenant");
        assert!(!kept.iter().any(|(t, _)| *t == 500));
    }
}
