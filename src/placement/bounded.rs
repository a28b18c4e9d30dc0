//! Consistent hashing with bounded loads, for sites: each tenant's *home*
//! server in its tier's pool.
//!
//! A server of weight `w` in a pool of total weight `W` may hold at most
//! `ceil(c * w / W * U)` capacity units, where `U` is the sum of the costs
//! of the pool's sites (a tier's `cost` per site) and `c` the balance
//! factor (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with
//! Bounded Loads", 2018). A tenant keeps its first ring server unless that
//! server is over its cap; then the server's tenants, in a fixed
//! pseudo-random order (a bijective mix of their ring point, ties by table
//! index), keep it until it is full, and the others walk on, in the same
//! order, to the first server with room. The order and the rings
//! depend only on the config and the tenant table, so every instance
//! computes the same homes.

use crate::config::{Config, ServerIdx, TierId};

use super::Ring;

/// What the assignment needs of one tenant.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    pub ring_point: u32,
    pub tier: TierId,
}

/// A bijective 32-bit mix (the `lowbias32` finaliser): an order of the
/// tenants that is unrelated to their place on the ring.
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The cap of every server (capacity units, per pool): its weight's
/// share of its pool's sites' units, times the balance factor.
pub fn caps<S: Copy>(config: &Config, sites: &[S]) -> Vec<Vec<u64>>
where
    Site: From<S>,
{
    let c = config.placement.balance_factor;
    let mut units = vec![0u64; config.pools.len()];
    for &s in sites {
        let tier = config.tier(Site::from(s).tier);
        units[usize::from(tier.pool)] += u64::from(tier.cost);
    }
    config
        .pools
        .iter()
        .zip(&units)
        .map(|(pool, &u)| {
            let total: u64 = pool.servers.iter().map(|s| u64::from(s.weight)).sum();
            pool.servers
                .iter()
                .map(|s| (c * u as f64 * f64::from(s.weight) / total.max(1) as f64).ceil() as u64)
                .collect()
        })
        .collect()
}

/// The home server of every site (indexed like `sites`), with the load
/// each server ends up holding (capacity units, per pool).
///
/// In three passes, so that the million-site common case is one pass in
/// table order (no sort, no random access): every site's first ring
/// server and the demand on each server; then, only on the servers asked
/// for more than their cap, their sites in the fixed order keep the server
/// until it is full; the rest, in the same order, walk on to the first
/// server with room. A server's own sites are never displaced by another's
/// overflow (unlike the one-pass greedy of the paper), which keeps more
/// sites on their ring server; the bound is the same.
///
/// `sites` is anything that reads as a [`Site`] (the tenant table's own
/// records, so that a reload copies nothing).
pub fn assign<S: Copy>(
    config: &Config,
    rings: &[Ring],
    sites: &[S],
) -> (Box<[ServerIdx]>, Vec<Vec<u64>>)
where
    Site: From<S>,
{
    let caps = caps(config, sites);
    let mut loads: Vec<Vec<u64>> = config
        .pools
        .iter()
        .map(|p| vec![0; p.servers.len()])
        .collect();
    let place = |s: &S| {
        let tier = config.tier(Site::from(*s).tier);
        (usize::from(tier.pool), u64::from(tier.cost))
    };

    // 1. Every site on its first ring server.
    let mut homes = vec![0 as ServerIdx; sites.len()].into_boxed_slice();
    for (site, home) in sites.iter().zip(homes.iter_mut()) {
        let ring_point = Site::from(*site).ring_point;
        let (pool, cost) = place(site);
        let mut first = [0; 1];
        if rings[pool].preference_into(ring_point, &mut first) == 1 {
            *home = first[0];
            loads[pool][usize::from(first[0])] += cost;
        }
    }
    let over: Vec<Vec<bool>> = loads
        .iter()
        .zip(&caps)
        .map(|(l, c)| l.iter().zip(c).map(|(l, c)| l > c).collect())
        .collect();
    if !over.iter().flatten().any(|&o| o) {
        return (homes, loads);
    }

    // 2. The sites of overloaded servers, in the fixed order ((mix, index)
    //    packed in one word: a plain integer sort), keep their server
    //    while it has room.
    let mut contested: Vec<u64> = sites
        .iter()
        .zip(homes.iter())
        .enumerate()
        .filter(|(_, (site, home))| over[place(site).0][usize::from(**home)])
        .map(|(i, (&site, _))| u64::from(mix(Site::from(site).ring_point)) << 32 | i as u64)
        .collect();
    contested.sort_unstable();
    for (pool, o) in over.iter().enumerate() {
        for (s, &o) in o.iter().enumerate() {
            if o {
                loads[pool][s] = 0;
            }
        }
    }
    let mut overflow = Vec::new();
    for key in contested {
        let i = key as u32 as usize;
        let (pool, cost) = place(&sites[i]);
        let s = usize::from(homes[i]);
        if loads[pool][s] + cost <= caps[pool][s] {
            loads[pool][s] += cost;
        } else {
            overflow.push(i);
        }
    }

    // 3. The overflow, in the same order, walks on to room.
    let mut walk = Vec::new();
    for i in overflow {
        let (pool, cost) = place(&sites[i]);
        let site = Site::from(sites[i]);
        let (cap, load) = (&caps[pool], &mut loads[pool]);
        let fits = |s: ServerIdx, load: &[u64]| load[usize::from(s)] + cost <= cap[usize::from(s)];
        walk.clear();
        walk.extend(rings[pool].preference(site.ring_point));
        let home = walk
            .iter()
            .copied()
            .find(|&s| fits(s, load))
            .or_else(|| walk.iter().copied().min_by_key(|&s| load[usize::from(s)]))
            .unwrap_or(homes[i]);
        load[usize::from(home)] += cost;
        homes[i] = home;
    }
    (homes, loads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tier;
    use crate::placement::ring_point;

    fn config(servers: usize, c: f64) -> Config {
        let toml = format!(
            "tenants = \"t\"\nmigration = \"m\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n\
             [tiers.t]\npool = \"p\"\n[pools.p]\nservers = [{}]\n",
            (0..servers)
                .map(|i| format!(
                    "{{ id = \"web-{i:03}\", address = \"10.0.{}.{}:80\" }}",
                    i / 250,
                    i % 250 + 1
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        let doc = crate::config::RawDocument::parse("predictor.toml".into(), toml).unwrap();
        let mut c0 = Config::try_from(doc).unwrap();
        c0.placement.balance_factor = c;
        c0
    }

    fn sites(n: usize) -> Vec<Site> {
        (0..n)
            .map(|i| Site {
                ring_point: ring_point(&format!("tenant-{i}")),
                tier: 0,
            })
            .collect()
    }

    fn max_over_mean(loads: &[u64]) -> f64 {
        let mean = loads.iter().sum::<u64>() as f64 / loads.len() as f64;
        *loads.iter().max().unwrap() as f64 / mean
    }

    #[test]
    fn no_server_holds_more_than_c_times_its_share() {
        let cfg = config(50, 1.25);
        let rings: Vec<Ring> = cfg.pools.iter().map(Ring::build).collect();
        let s = sites(20_000);
        let (homes, loads) = assign(&cfg, &rings, &s);
        assert!(
            max_over_mean(&loads[0]) <= 1.25 + 1e-9,
            "{}",
            max_over_mean(&loads[0])
        );
        assert_eq!(loads[0].iter().sum::<u64>(), 20_000);
        // Most sites keep their plain consistent-hashing server.
        let kept = s
            .iter()
            .zip(homes.iter())
            .filter(|(site, h)| {
                let mut first = [0; 1];
                rings[0].preference_into(site.ring_point, &mut first);
                first[0] == **h
            })
            .count();
        assert!(kept > 18_000, "{kept}");
    }

    #[test]
    fn costs_count_in_capacity_units() {
        let mut cfg = config(10, 1.25);
        cfg.tiers.push(Tier {
            name: "premium".into(),
            pool: 0,
            cost: 4,
            k_min: 1,
            k_max: 4,
        });
        let rings: Vec<Ring> = cfg.pools.iter().map(Ring::build).collect();
        let mut s = sites(4000);
        for site in s.iter_mut().step_by(2) {
            site.tier = 1;
        }
        let (_, loads) = assign(&cfg, &rings, &s);
        assert_eq!(loads[0].iter().sum::<u64>(), 2000 * 4 + 2000);
        assert!(max_over_mean(&loads[0]) <= 1.25 + 1e-9);
    }

    #[test]
    fn the_same_input_gives_the_same_homes() {
        let cfg = config(20, 1.25);
        let rings: Vec<Ring> = cfg.pools.iter().map(Ring::build).collect();
        let s = sites(5000);
        assert_eq!(assign(&cfg, &rings, &s).0, assign(&cfg, &rings, &s).0);
    }
}
