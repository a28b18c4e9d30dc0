//! Skewed traffic simulation (not a criterion bench: it prints a report).
//!
//!     cargo bench --bench skew
//!
//! 1,000,000 tenants over 100 equal servers; request popularity is Zipf
//! (s = 0.8: the top tenant alone is about one server's load), plus one
//! tenant sending 4 times an average server's load. Requests arrive as a
//! Poisson stream and take an exponential time (mean 1) whatever the load;
//! the mean is 20 requests in flight per server. The same request stream
//! (same seed) goes through four strategies:
//!
//! * predictor: the request path's own code — home first, the affinity set
//!   grown for hot tenants ([`PoolState::hot_k`]), the choice by load
//!   within the bounded-load cap ([`order`]);
//! * plain consistent hashing (a tenant always on its ring server);
//! * power of two choices (two random servers, the one with fewer in
//!   flight; what Envoy and nginx offer for least-request);
//! * round robin.
//!
//! Reported, for tiers with `k_min` 1 and 2: max/mean in flight per
//! server (sampled every 1,000 arrivals after a warm-up: the mean of the
//! samples and the worst), and the share of requests served inside the
//! tenant's affinity set (its first `k` servers, `k` as grown at that
//! moment; for the others, the same first `k_min` servers of its ring
//! walk): over all requests, the lowest share among tenants with at least
//! 200 requests, how many of those are under 90 %, and the hot tenant's.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use predictor::config::{Config, RawDocument, ServerIdx};
use predictor::health::PoolState;
use predictor::placement::bounded::{Site, assign};
use predictor::placement::choose::{Admission, Live, Totals, order};
use predictor::placement::{MAX_ATTEMPTS, Ring, home_first, ring_point};

const TENANTS: usize = 1_000_000;
const SERVERS: usize = 100;
const PER_SERVER: f64 = 20.0;
const REQUESTS: usize = 3_000_000;
const WARMUP: usize = 300_000;
const ZIPF_S: f64 = 0.8;
const K_MAX: usize = 8;
/// Simulated time unit (the mean request) in milliseconds, for the hot
/// tenants' hold.
const UNIT_MS: f64 = 50.0;

fn config() -> Config {
    let list = (0..SERVERS)
        .map(|i| {
            format!(
                "{{ id = \"web-{i:03}\", address = \"10.0.0.{}:80\" }}",
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let toml = format!(
        "tenants = \"t\"\nmigration = \"m\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n\
         [tiers.shared]\npool = \"p\"\nk_max = {K_MAX}\n\
         [pools.p]\nservers = [{list}]\n"
    );
    Config::try_from(RawDocument::parse("predictor.toml".into(), toml).unwrap()).unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    Predictor,
    Hashing,
    TwoChoices,
    RoundRobin,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Strategy::Predictor => "predictor (bounded load + hot k)",
            Strategy::Hashing => "plain consistent hashing",
            Strategy::TwoChoices => "power of two choices",
            Strategy::RoundRobin => "round robin",
        }
    }
}

struct World {
    ring: Ring,
    homes: Box<[ServerIdx]>,
    points: Vec<u32>,
    /// Cumulative popularity of the tenants (the hot one is the last).
    cdf: Vec<f64>,
    rate: f64,
}

impl World {
    fn new(cfg: &Config) -> World {
        let points: Vec<u32> = (0..=TENANTS)
            .map(|i| ring_point(&format!("tenant-{i}")))
            .collect();
        let ring = Ring::build(&cfg.pools[0]);
        let sites: Vec<Site> = points
            .iter()
            .map(|&ring_point| Site {
                ring_point,
                tier: 0,
            })
            .collect();
        let (homes, _) = assign(cfg, std::slice::from_ref(&ring), &sites);
        // Zipf weights for the tenants, then the hot tenant (index
        // TENANTS) with 4 servers' worth of the total.
        let total_in_flight = PER_SERVER * SERVERS as f64;
        let hot_share = 4.0 * PER_SERVER / total_in_flight;
        let h: f64 = (1..=TENANTS).map(|r| (r as f64).powf(-ZIPF_S)).sum();
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=TENANTS)
            .map(|r| {
                acc += (r as f64).powf(-ZIPF_S) / h * (1.0 - hot_share);
                acc
            })
            .collect();
        cdf.push(1.0);
        World {
            ring,
            homes,
            points,
            cdf,
            // Mean service time 1: Little's law.
            rate: total_in_flight,
        }
    }

    fn tenant(&self, u: f64) -> usize {
        self.cdf.partition_point(|&c| c < u).min(TENANTS)
    }
}

#[derive(Default)]
struct Report {
    ratio_sum: f64,
    ratio_worst: f64,
    samples: usize,
    inside: u64,
    counted: u64,
    /// Per tenant with traffic: (requests, inside the affinity set).
    per_tenant: HashMap<usize, (u32, u32)>,
}

fn simulate(w: &World, strategy: Strategy, k_min: usize, hold: Duration) -> Report {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut in_flight = vec![0u32; SERVERS];
    let mut total = 0u32;
    let mut done: BinaryHeap<(Reverse<u64>, ServerIdx)> = BinaryHeap::new();
    let pool = PoolState::default();
    let mut rr = 0usize;
    let mut now = 0.0f64;
    let mut r = Report::default();
    for i in 0..REQUESTS {
        now += -rng.f64().max(f64::MIN_POSITIVE).ln() / w.rate;
        let t_now = (now * 1e6) as u64;
        while let Some(&(Reverse(t), s)) = done.peek() {
            if t > t_now {
                break;
            }
            done.pop();
            in_flight[usize::from(s)] -= 1;
            total -= 1;
        }
        let tenant = w.tenant(rng.f64());
        let point = w.points[tenant];
        let mut prefs = [0 as ServerIdx; MAX_ATTEMPTS];
        let (server, k) = match strategy {
            Strategy::Predictor => {
                let now_ms = (now * UNIT_MS) as u64;
                let k = pool.hot_k(point, k_min, K_MAX);
                let head = (k + 2).min(MAX_ATTEMPTS);
                let n = w.ring.preference_into(point, &mut prefs[..head]);
                home_first(&mut prefs[..n], w.homes[tenant]);
                let mut live = [Live::IDLE; MAX_ATTEMPTS];
                for (l, &s) in live.iter_mut().zip(&prefs[..n]) {
                    *l = Live {
                        admission: Admission::Up,
                        weight: 100,
                        in_flight: in_flight[usize::from(s)],
                        latency_us: 1000,
                    };
                }
                let totals = Totals {
                    weight: 100 * SERVERS as u32,
                    in_flight: total,
                };
                let mut out = [0; MAX_ATTEMPTS];
                let o = order(&prefs[..n], &live[..n], totals, k, 1.25, &mut out);
                pool.hot_record(point, o.pressure, now_ms, hold, (k_min, K_MAX));
                (out[0], k)
            }
            // The peers' "set" for the share inside: the same first k_min
            // servers of the tenant's ring walk.
            Strategy::Hashing => {
                w.ring.preference_into(point, &mut prefs[..k_min]);
                (prefs[0], k_min)
            }
            Strategy::TwoChoices => {
                w.ring.preference_into(point, &mut prefs[..k_min]);
                let (a, b) = (rng.usize(..SERVERS), rng.usize(..SERVERS));
                let s = if in_flight[a] <= in_flight[b] { a } else { b };
                (s as ServerIdx, k_min)
            }
            Strategy::RoundRobin => {
                w.ring.preference_into(point, &mut prefs[..k_min]);
                rr = (rr + 1) % SERVERS;
                (rr as ServerIdx, k_min)
            }
        };
        in_flight[usize::from(server)] += 1;
        total += 1;
        let service = -rng.f64().max(f64::MIN_POSITIVE).ln();
        done.push((Reverse(((now + service) * 1e6) as u64), server));
        if i < WARMUP {
            continue;
        }
        let inside = prefs[..k].contains(&server);
        r.counted += 1;
        r.inside += u64::from(inside);
        let e = r.per_tenant.entry(tenant).or_default();
        e.0 += 1;
        e.1 += u32::from(inside);
        if i % 1000 == 0 {
            let max = *in_flight.iter().max().unwrap_or(&0) as f64;
            let mean = f64::from(total) / SERVERS as f64;
            let ratio = max / mean;
            r.ratio_sum += ratio;
            r.ratio_worst = r.ratio_worst.max(ratio);
            r.samples += 1;
        }
    }
    r
}

fn main() {
    let cfg = config();
    let w = World::new(&cfg);
    let top = w.cdf[0];
    println!(
        "skewed traffic: {TENANTS} tenants, Zipf s = {ZIPF_S} (top tenant {:.2} servers' load) plus one tenant at 4 servers' load; {SERVERS} servers, {PER_SERVER} in flight per server on average; {REQUESTS} requests (first {WARMUP} warm-up); k_max {K_MAX}, c = 1.25, hot_hold 10 s (a request lasts {UNIT_MS} ms)",
        top * SERVERS as f64
    );
    for k_min in [1, 2] {
        println!(
            "\nk_min = {k_min} (\"in set\": served by one of the tenant's first k servers, k as grown at that moment for predictor, k_min for the others)"
        );
        println!(
            "{:<34} {:>9} {:>9} {:>8} {:>10} {:>12} {:>8}",
            "strategy", "max/mean", "worst", "in set", "lowest", "under 90 %", "hot"
        );
        for s in [
            Strategy::Predictor,
            Strategy::Hashing,
            Strategy::TwoChoices,
            Strategy::RoundRobin,
        ] {
            let r = simulate(&w, s, k_min, Duration::from_secs(10));
            let shares: Vec<f64> = r
                .per_tenant
                .values()
                .filter(|(n, _)| *n >= 200)
                .map(|(n, i)| f64::from(*i) / f64::from(*n))
                .collect();
            let lowest = shares.iter().copied().fold(1.0f64, f64::min);
            let under = shares.iter().filter(|&&x| x < 0.9).count();
            let hot = r
                .per_tenant
                .get(&TENANTS)
                .map_or(0.0, |(n, i)| f64::from(*i) / f64::from(*n));
            println!(
                "{:<34} {:>9.3} {:>9.3} {:>7.1}% {:>9.1}% {:>5} of {:<4} {:>7.1}%",
                s.name(),
                r.ratio_sum / r.samples.max(1) as f64,
                r.ratio_worst,
                r.inside as f64 * 100.0 / r.counted.max(1) as f64,
                lowest * 100.0,
                under,
                shares.len(),
                hot * 100.0
            );
        }
    }
}
