//! Placement simulation (not a criterion bench: it prints a report).
//!
//!     cargo bench --bench placement
//!
//! 1,000,000 tenants over a pool of 100 servers: how evenly sites (in
//! capacity units) spread with the ring alone and with bounded loads, how
//! many tenants change their first server when one server leaves or joins,
//! and what building the homes costs.

use std::time::Instant;

use predictor::config::{Config, RawDocument, ServerIdx};
use predictor::placement::bounded::{Site, assign};
use predictor::placement::{Ring, ring_point};

const TENANTS: usize = 1_000_000;

fn config(servers: &[usize], premium_cost: u32, c: f64) -> Config {
    let list = servers
        .iter()
        .map(|i| {
            format!(
                "{{ id = \"web-{i:03}\", address = \"10.0.{}.{}:80\" }}",
                i / 250,
                i % 250 + 1
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let toml = format!(
        "tenants = \"t\"\nmigration = \"m\"\n[[listen]]\naddress = \"127.0.0.1:1\"\n\
         [placement]\nbalance_factor = {c}\n\
         [tiers.shared]\npool = \"p\"\n[tiers.premium]\npool = \"p\"\ncost = {premium_cost}\n\
         [pools.p]\nservers = [{list}]\n"
    );
    Config::try_from(RawDocument::parse("predictor.toml".into(), toml).unwrap()).unwrap()
}

fn stats(loads: &[u64]) -> (f64, f64) {
    let mean = loads.iter().sum::<u64>() as f64 / loads.len() as f64;
    let max = *loads.iter().max().unwrap() as f64;
    (max / mean, mean)
}

/// First server of every site with the ring alone, and the unit loads.
fn ring_alone(cfg: &Config, ring: &Ring, sites: &[Site]) -> (Vec<ServerIdx>, Vec<u64>) {
    let mut loads = vec![0u64; cfg.pools[0].servers.len()];
    let firsts = sites
        .iter()
        .map(|s| {
            let mut out = [0; 1];
            ring.preference_into(s.ring_point, &mut out);
            loads[usize::from(out[0])] += u64::from(cfg.tier(s.tier).cost);
            out[0]
        })
        .collect();
    (firsts, loads)
}

/// Share of sites whose first server (by id) differs between two
/// layouts, and the share of request load they carry when popularity is
/// Zipf (s = 0.8) over the tenants in their order.
fn moved(a: (&Config, &[ServerIdx]), b: (&Config, &[ServerIdx])) -> (f64, f64) {
    let ids = |c: &Config, s: ServerIdx| c.pools[0].servers[usize::from(s)].id.clone();
    let (mut n, mut load, mut all) = (0usize, 0.0f64, 0.0f64);
    for (i, (x, y)) in a.1.iter().zip(b.1).enumerate() {
        let w = ((i + 1) as f64).powf(-0.8);
        all += w;
        if ids(a.0, *x) != ids(b.0, *y) {
            n += 1;
            load += w;
        }
    }
    (n as f64 / a.1.len() as f64, load / all)
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let sites: Vec<Site> = (0..TENANTS)
        .map(|i| Site {
            ring_point: ring_point(&format!("tenant-{i}")),
            // One site in ten is premium.
            tier: if i % 10 == 0 { 1 } else { 0 },
        })
        .collect();
    let all: Vec<usize> = (0..100).collect();
    println!(
        "placement simulation: {TENANTS} tenants (10 % premium, cost 4), 100 servers of weight 1\n"
    );
    for c in [1.25, 1.1] {
        let cfg = config(&all, 4, c);
        let ring = Ring::build(&cfg.pools[0]);
        let (ring_firsts, ring_loads) = ring_alone(&cfg, &ring, &sites);
        let started = Instant::now();
        let (homes, loads) = assign(&cfg, std::slice::from_ref(&ring), &sites);
        let took = started.elapsed();
        let (r_max, mean) = stats(&ring_loads);
        let (b_max, _) = stats(&loads[0]);
        let kept = ring_firsts
            .iter()
            .zip(homes.iter())
            .filter(|(a, b)| a == b)
            .count();
        println!("balance factor c = {c}");
        println!(
            "  capacity units per server: mean {mean:.0}; max/mean ring alone {r_max:.3}, with bounded loads {b_max:.3}"
        );
        println!(
            "  sites keeping their plain ring server: {:.2} %; assigning {} homes took {:?}",
            kept as f64 * 100.0 / TENANTS as f64,
            TENANTS,
            took
        );
        // Premium and shared sites per server.
        let mut premium = vec![0u64; 100];
        let mut shared = vec![0u64; 100];
        for (s, h) in sites.iter().zip(homes.iter()) {
            let per = if s.tier == 1 {
                &mut premium
            } else {
                &mut shared
            };
            per[usize::from(*h)] += 1;
        }
        let (pm, pmean) = stats(&premium);
        let (sm, smean) = stats(&shared);
        println!(
            "  sites per server: shared mean {smean:.0} (max/mean {sm:.3}), premium mean {pmean:.0} (max/mean {pm:.3})"
        );

        for (what, servers) in [
            (
                "removing web-042",
                all.iter().copied().filter(|&i| i != 42).collect::<Vec<_>>(),
            ),
            ("adding web-100", (0..101).collect::<Vec<_>>()),
        ] {
            let cfg2 = config(&servers, 4, c);
            let ring2 = Ring::build(&cfg2.pools[0]);
            let (ring2_firsts, _) = ring_alone(&cfg2, &ring2, &sites);
            let (homes2, _) = assign(&cfg2, std::slice::from_ref(&ring2), &sites);
            let ring_moved = moved((&cfg, &ring_firsts), (&cfg2, &ring2_firsts));
            let bounded_moved = moved((&cfg, &homes), (&cfg2, &homes2));
            println!(
                "  {what}: first server changes for {:.2} % of sites ({:.2} % of Zipf request load) with the ring alone, {:.2} % ({:.2} %) with bounded loads",
                ring_moved.0 * 100.0,
                ring_moved.1 * 100.0,
                bounded_moved.0 * 100.0,
                bounded_moved.1 * 100.0,
            );
        }
        println!();
    }
}
