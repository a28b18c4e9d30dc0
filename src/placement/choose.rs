//! The per-request choice among a tenant's servers by live load, with
//! HAProxy's bounded-load rule.
//!
//! Pure: the caller reads the live signals (in-flight counters, latency
//! averages, reported weight, health) and passes them in as [`Live`]
//! values, one per server of the preference list's head; this module only
//! orders servers. The order tried for a request:
//!
//! 1. the tenant's affinity set (the first `k` servers of its preference
//!    list that are not down; a draining server only where it is among the
//!    first `k` anyway) whose in-flight count stays within the cap,
//!    cheapest first (cost: in-flight × Peak-EWMA latency ÷ weight);
//! 2. spill: the next servers of the preference list (not down, not
//!    draining) within the cap, in ring order;
//! 3. the affinity members over the cap, cheapest first;
//! 4. everything else not down (draining servers last), in ring order.
//!
//! The cap of server `s` is `ceil(c * w_s / W * (in_flight_total + 1))`
//! (HAProxy's `hash-balance-factor`, with `c` as a ratio): a server may take
//! the request if its in-flight count, this request included, stays within.
//! Weights are effective weights: the configured weight scaled by what the
//! server's agent reports (`75%`), so a busy server gets a lower cap and a
//! higher cost.

use crate::config::ServerIdx;
use crate::placement::MAX_ATTEMPTS;

/// Whether a server takes requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Up,
    /// Serves the tenants whose affinity set it is in, but takes no spill
    /// (an agent said `drain`).
    Drain,
    /// Skipped (health checks, ejection, or an agent's `maint`/`down`).
    Down,
}

/// The live signals of one server at the moment of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub admission: Admission,
    /// Effective weight (any unit, the same for the whole pool); 0 takes
    /// nothing within the cap.
    pub weight: u32,
    /// Requests sent and not finished (counted until the body ends).
    pub in_flight: u32,
    /// Peak-EWMA of response latency in microseconds; 0 when unknown.
    pub latency_us: u32,
}

impl Admission {
    /// `up`, `draining` or `down`, for operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Admission::Up => "up",
            Admission::Drain => "draining",
            Admission::Down => "down",
        }
    }
}

impl Live {
    pub const IDLE: Live = Live {
        admission: Admission::Up,
        weight: 1,
        in_flight: 0,
        latency_us: 0,
    };
}

/// Whether the server at position `i` of a preference list, with
/// `admission`, is in the affinity set of size `k` when `members` servers
/// before it are: the first `k` not down, a draining one only where it
/// stands among the first `k` anyway (it takes no down server's sites).
#[inline]
pub fn is_member(i: usize, admission: Admission, members: usize, k: usize) -> bool {
    let down = admission == Admission::Down;
    let drain = admission == Admission::Drain;
    (members < k) & !down & (!drain | (i < k))
}

/// The in-flight cap of a server of `weight` out of `total_weight`, with
/// `total_in_flight` requests in flight in the pool.
pub fn cap(c: f64, weight: u32, total_weight: u32, total_in_flight: u32) -> u32 {
    let share = f64::from(weight) / f64::from(total_weight.max(1));
    (c * share * (f64::from(total_in_flight) + 1.0)).ceil() as u32
}

/// The cost of sending one more request to a server: lower is better
/// (positive, finite).
fn cost(l: &Live) -> f32 {
    (l.in_flight as f32 + 1.0) * (l.latency_us.max(1) as f32) / (l.weight.max(1) as f32)
}

/// Pool-wide sums the cap needs (kept as counters by the caller, not
/// summed per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Sum of the effective weights of the servers not down.
    pub weight: u32,
    pub in_flight: u32,
}

/// How the tenant's affinity set stood at this request: what lets a hot
/// tenant's set grow and shrink back ([`super::hot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    /// Every member was over its cap: the request spilled (or queued on
    /// an overloaded member).
    Over,
    /// Every member had at most half its cap in flight.
    Calm,
    Normal,
}

/// The outcome of [`order`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ordered {
    /// Servers written to `out`.
    pub n: usize,
    /// Members of the affinity set (the first of them, in `out`'s order,
    /// are those within the cap).
    pub affinity: usize,
    pub pressure: Pressure,
}

/// Orders the servers of `prefs` (the head of a tenant's preference list,
/// home first, at most [`MAX_ATTEMPTS`]) for one request into `out`.
/// `live[i]` are the signals of `prefs[i]`; `k` is the tenant's affinity
/// set size.
///
/// Each server gets one sort key (its class in the order above, then its
/// cost or its ring position) and the keys go through a sorting network:
/// no data-dependent branches, which matter more than the arithmetic when
/// every request sees different loads.
pub fn order(
    prefs: &[ServerIdx],
    live: &[Live],
    totals: Totals,
    k: usize,
    c: f64,
    out: &mut [ServerIdx],
) -> Ordered {
    const MEMBER_WITHIN: u64 = 0;
    const SPILL: u64 = 1;
    const MEMBER_OVER: u64 = 2;
    const REST: u64 = 3;
    const DRAINING: u64 = 4;
    const DOWN: u64 = 7;
    let len = prefs.len().min(live.len()).min(MAX_ATTEMPTS);
    // in_flight < ceil(x) exactly when in_flight < x: no rounding needed.
    let per_weight = c * (f64::from(totals.in_flight) + 1.0) / f64::from(totals.weight.max(1));
    let mut keys = [u64::MAX; MAX_ATTEMPTS];
    let (mut a, mut any_within, mut calm) = (0usize, false, true);
    for (i, l) in live[..len].iter().enumerate() {
        let cap = per_weight * f64::from(l.weight);
        let in_flight = f64::from(l.in_flight);
        let within = in_flight < cap;
        let down = l.admission == Admission::Down;
        let member = is_member(i, l.admission, a, k);
        a += usize::from(member);
        any_within |= member & within;
        calm &= !member | (in_flight * 2.0 <= cap);
        // The class, in arithmetic rather than branches (see above).
        let (d, m, w) = (u64::from(down), u64::from(member), u64::from(within));
        let dr = u64::from(l.admission == Admission::Drain);
        let member_class = MEMBER_WITHIN + (MEMBER_OVER - MEMBER_WITHIN) * (1 - w);
        let other_class = dr * DRAINING + (1 - dr) * (SPILL + (REST - SPILL) * (1 - w));
        let class = d * DOWN + (1 - d) * (m * member_class + (1 - m) * other_class);
        // Members by cost (a positive f32's bits order like the number),
        // the others by ring position.
        let tie = m * u64::from(cost(l).to_bits());
        keys[i] = class << 56 | tie << 8 | i as u64;
    }
    sort8(&mut keys);
    let mut n = 0;
    for &key in keys.iter().take(out.len()) {
        if key >> 56 >= DOWN {
            break;
        }
        out[n] = prefs[(key & 0xff) as usize];
        n += 1;
    }
    let pressure = if a > 0 && !any_within {
        Pressure::Over
    } else if calm {
        Pressure::Calm
    } else {
        Pressure::Normal
    };
    Ordered {
        n,
        affinity: a,
        pressure,
    }
}

/// Sorts 8 keys with the optimal 19-comparator network: branch-free
/// compare-exchanges on locals (unrolled, so the keys stay in registers).
#[inline]
fn sort8(v: &mut [u64; MAX_ATTEMPTS]) {
    let [
        mut a0,
        mut a1,
        mut a2,
        mut a3,
        mut a4,
        mut a5,
        mut a6,
        mut a7,
    ] = *v;
    macro_rules! cx {
        ($x:ident, $y:ident) => {
            let (lo, hi) = ($x.min($y), $x.max($y));
            $x = lo;
            $y = hi;
        };
    }
    cx!(a0, a1);
    cx!(a2, a3);
    cx!(a4, a5);
    cx!(a6, a7);
    cx!(a0, a2);
    cx!(a1, a3);
    cx!(a4, a6);
    cx!(a5, a7);
    cx!(a1, a2);
    cx!(a5, a6);
    cx!(a0, a4);
    cx!(a3, a7);
    cx!(a1, a5);
    cx!(a2, a6);
    cx!(a1, a4);
    cx!(a3, a6);
    cx!(a2, a4);
    cx!(a3, a5);
    cx!(a3, a4);
    *v = [a0, a1, a2, a3, a4, a5, a6, a7];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(in_flight: u32) -> Live {
        Live {
            admission: Admission::Up,
            weight: 1,
            in_flight,
            latency_us: 1000,
        }
    }

    fn run(prefs: &[ServerIdx], live: &[Live], k: usize) -> Vec<ServerIdx> {
        let totals = Totals {
            weight: live.iter().map(|l| l.weight).sum(),
            in_flight: live.iter().map(|l| l.in_flight).sum(),
        };
        let head: Vec<Live> = prefs.iter().map(|&s| live[usize::from(s)]).collect();
        let mut out = [0; 8];
        let o = order(prefs, &head, totals, k, 1.25, &mut out);
        out[..o.n].to_vec()
    }

    fn pressure(live: &[Live], k: usize) -> Pressure {
        let prefs: Vec<ServerIdx> = (0..live.len() as ServerIdx).collect();
        let totals = Totals {
            weight: live.iter().map(|l| l.weight).sum(),
            in_flight: live.iter().map(|l| l.in_flight).sum(),
        };
        order(&prefs, live, totals, k, 1.25, &mut [0; 8]).pressure
    }

    #[test]
    fn the_cap_is_haproxys_hash_balance_factor() {
        // 4 equal servers, 40 in flight: ceil(1.25 * 1/4 * 41) = 13.
        assert_eq!(cap(1.25, 1, 4, 40), 13);
        // Nothing in flight: one request fits anywhere.
        assert_eq!(cap(1.25, 1, 100, 0), 1);
        // A double-weight server takes twice the share.
        assert_eq!(cap(1.25, 2, 4, 40), 26);
    }

    #[test]
    fn an_idle_pool_follows_the_preference_list() {
        let live = [up(0), up(0), up(0), up(0)];
        assert_eq!(run(&[2, 0, 3, 1], &live, 1), [2, 0, 3, 1]);
    }

    #[test]
    fn inside_the_affinity_set_the_least_loaded_goes_first() {
        // 13 in flight: cap = ceil(1.25 * 1/4 * 14) = 5, all within.
        let live = [up(3), up(2), up(4), up(4)];
        // k = 2: {0, 1}; 1 is cheaper.
        assert_eq!(run(&[0, 1, 2, 3], &live, 2)[..2], [1, 0]);
        // A slower server costs more at equal in-flight.
        let mut slow = [up(2), up(2), up(3), up(3)];
        slow[0].latency_us = 5000;
        assert_eq!(run(&[0, 1, 2, 3], &slow, 2)[0], 1);
    }

    #[test]
    fn a_server_over_the_cap_spills_to_the_next_on_the_ring() {
        // 20 in flight: cap = ceil(1.25 * 1/4 * 21) = 7; server 0 has 10.
        let live = [up(10), up(4), up(3), up(3)];
        let got = run(&[0, 2, 1, 3], &live, 1);
        assert_eq!(got[0], 2, "the next server on the ring within the cap");
        assert!(got.contains(&0), "still tried last");
    }

    #[test]
    fn down_servers_are_skipped_and_draining_ones_take_no_spill() {
        let mut live = [up(10), up(0), up(0), up(0)];
        live[1].admission = Admission::Down;
        live[2].admission = Admission::Drain;
        let got = run(&[0, 1, 2, 3], &live, 1);
        assert!(!got.contains(&1));
        assert_eq!(got[0], 3, "spill skips the draining server");
        // A draining server in the affinity set still serves it.
        let got = run(&[2, 3], &[up(0), up(0), live[2], up(0)], 1);
        assert_eq!(got[0], 2);
        // The affinity set is the first k servers that are not down.
        let got = run(&[1, 0, 3], &[up(0), live[1], up(0), up(0)], 1);
        assert_eq!(got[0], 0);
        // ... but a draining server does not take a down one's sites.
        let got = run(&[1, 2, 3], &[up(0), live[1], live[2], up(0)], 1);
        assert_eq!(got, [3, 2]);
    }

    #[test]
    fn when_everything_is_over_the_cap_the_cheapest_member_goes_first() {
        let live = [up(50), up(40), up(60)];
        // cap = ceil(1.25 / 3 * 151) = 63: all within, the cheaper of the
        // affinity set {0, 1} first.
        let got = run(&[0, 1, 2], &live, 2);
        assert_eq!(got[0], 1);
        let tight = [up(50), up(40), up(0)];
        // total 90: cap = ceil(1.25/3*91) = 38; 0 and 1 over, 2 within.
        let got = run(&[0, 1, 2], &tight, 2);
        assert_eq!(got, [2, 1, 0]);
    }

    #[test]
    fn effective_weight_weighs_in() {
        // An agent's "25%": a quarter of the weight, four times the cost.
        let mut live = [up(3), up(3)];
        live[0].weight = 25;
        live[1].weight = 100;
        assert_eq!(run(&[0, 1], &live, 2)[0], 1);
        let mut heavy = [up(3), up(4)];
        heavy[1].weight = 3;
        assert_eq!(run(&[0, 1], &heavy, 2)[0], 1);
    }

    #[test]
    fn pressure_says_whether_the_affinity_set_is_full() {
        // 4 servers, 40 in flight: cap 13.
        assert_eq!(pressure(&[up(13), up(14), up(7), up(6)], 2), Pressure::Over);
        assert_eq!(
            pressure(&[up(12), up(14), up(7), up(7)], 2),
            Pressure::Normal
        );
        // 16 in flight: 1.25 / 4 * 17 = 5.3; members at 2 are calm, at 3 not.
        assert_eq!(pressure(&[up(2), up(2), up(7), up(5)], 2), Pressure::Calm);
        assert_eq!(pressure(&[up(3), up(2), up(6), up(5)], 2), Pressure::Normal);
        // A down member is not a member: the next one is.
        let mut live = [up(1), up(13), up(1), up(1)];
        live[0].admission = Admission::Down;
        assert_eq!(pressure(&live, 1), Pressure::Over);
    }

    #[test]
    fn the_sorting_network_sorts_every_input() {
        // The 0-1 principle: a network sorting every 0/1 input sorts all.
        for bits in 0u32..256 {
            let mut v = [0u64; 8];
            for (i, x) in v.iter_mut().enumerate() {
                *x = u64::from(bits >> i & 1);
            }
            let mut want = v;
            want.sort_unstable();
            sort8(&mut v);
            assert_eq!(v, want, "input {bits:08b}");
        }
    }
}
