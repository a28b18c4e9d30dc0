//! The host table at a million hosts: lookup (hit, wildcard hit, miss),
//! the full routing decision, and building the table from a 1M-line TSV.
//! A std `HashMap<Box<[u8]>, u32>` is measured in the same run as the
//! reference point.
//!
//!     cargo bench --bench hosts
//!     HOSTS=100000 cargo bench --bench hosts      # another table size

use std::collections::HashMap;
use std::hint::black_box;
use std::io::Cursor;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use predictor::config::{Config, RawDocument};
use predictor::routing::host::normalize;
use predictor::routing::tenants::TenantTable;

const WILDCARDS: usize = 10_000;
const PROBES: usize = 1 << 16;

fn hosts() -> usize {
    std::env::var("HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn config() -> Config {
    config_with(&[
        "{ id = \"a\", address = \"127.0.0.1:1\" }".into(),
        "{ id = \"b\", address = \"127.0.0.1:2\" }".into(),
    ])
}

/// The same tiers, over a pool of `servers` (TOML inline tables).
fn config_with(servers: &[String]) -> Config {
    let text = format!(
        "tenants = \"t.tsv\"\nmigration = \"m.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n\
         [tiers.shared]\npool = \"p\"\n[tiers.premium]\npool = \"p\"\ncost = 4\n\
         [pools.p]\nservers = [{}]\n",
        servers.join(",")
    );
    Config::try_from(RawDocument::parse("predictor.toml".into(), text).unwrap()).unwrap()
}

/// A tenant table like a hosting cluster's: `siteN.example`, a `www.`
/// alias for one in ten, and wildcard customers.
fn tsv(n: usize) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(n * 44);
    let mut i = 0;
    let mut lines = 0;
    while lines < n {
        let tier = if i % 5 == 0 { "premium" } else { "shared" };
        writeln!(out, "site{i}.example\tc{i}\t{tier}\tfiler-{}", i % 200).unwrap();
        lines += 1;
        if i % 10 == 0 && lines < n {
            writeln!(out, "www.site{i}.example\tc{i}\t{tier}\tfiler-{}", i % 200).unwrap();
            lines += 1;
        }
        i += 1;
    }
    for w in 0..WILDCARDS {
        writeln!(out, "*.w{w}.example\tcw{w}\tshared\tfiler-{}", w % 200).unwrap();
    }
    out
}

fn build(config: &Config, text: &[u8]) -> TenantTable {
    predictor::load::tenants::parse(Path::new("bench.tsv"), Cursor::new(text), config).unwrap()
}

/// Deterministic shuffle (xorshift), so runs compare.
fn shuffled<T>(mut v: Vec<T>) -> Vec<T> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

fn benches(c: &mut Criterion) {
    let n = hosts();
    let config = config();
    let text = tsv(n);
    let table = build(&config, &text);
    let sites = table.host_count();

    let hits: Vec<String> = shuffled(
        (0..n)
            .map(|i| format!("site{}.example", i * 7 % (n * 10 / 11)))
            .collect(),
    )
    .into_iter()
    .take(PROBES)
    .collect();
    let wild: Vec<String> = (0..PROBES)
        .map(|i| format!("shop{i}.w{}.example", i * 7919 % WILDCARDS))
        .collect();
    let misses: Vec<String> = (0..PROBES).map(|i| format!("nosuch{i}.example")).collect();
    for h in hits.iter().take(100) {
        assert!(
            table.lookup(&normalize(h.as_bytes()).unwrap()).is_some(),
            "{h}"
        );
    }

    let mut g = c.benchmark_group(format!("lookup_{sites}_hosts"));
    let mut probe = |name: &str, keys: &[String]| {
        let hosts: Vec<_> = keys
            .iter()
            .map(|k| normalize(k.as_bytes()).unwrap())
            .collect();
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & (PROBES - 1);
                black_box(table.lookup(black_box(&hosts[i])))
            })
        });
    };
    probe("hit_random", &hits);
    probe("wildcard_hit", &wild);
    probe("miss", &misses);

    let mut i = 0;
    g.bench_function("normalize", |b| {
        b.iter(|| {
            i = (i + 1) & (PROBES - 1);
            black_box(normalize(black_box(hits[i].as_bytes())))
        })
    });

    // The whole decision, from the raw Host header value.
    let snap_config = std::sync::Arc::new(config.clone());
    let states = predictor::routing::migration::MigrationStates::new(
        predictor::routing::migration::MigrationState::Migrated,
        table.filers().len(),
    );
    let mut i = 0;
    g.bench_function("normalize_and_route_hit", |b| {
        b.iter(|| {
            i = (i + 1) & (PROBES - 1);
            let host = normalize(black_box(hits[i].as_bytes())).unwrap();
            black_box(predictor::routing::route(
                &snap_config,
                &table,
                &states,
                &host,
            ))
        })
    });

    // One placement decision: a tenant's first two servers in a pool of
    // 100 (home under the load bound, then the ring walk).
    let hundred: Vec<String> = (0..100)
        .map(|i| {
            format!(
                "{{ id = \"web-{i:03}\", address = \"10.0.0.{}:80\" }}",
                i + 1
            )
        })
        .collect();
    let config100 = config_with(&hundred);
    let placement = predictor::placement::Placement::new(&config100, &table);
    let tenants: Vec<(u32, u32)> = shuffled(
        table
            .tenants()
            .map(|(t, r)| (t, r.ring_point))
            .collect::<Vec<_>>(),
    )
    .into_iter()
    .take(PROBES)
    .collect();
    let mut i = 0;
    g.bench_function("placement_decision_100_servers", |b| {
        b.iter(|| {
            i = (i + 1) & (PROBES - 1);
            let (t, point) = tenants[i];
            let mut out = [0u16; 2];
            black_box(placement.servers(black_box(t), 0, point, &mut out));
            black_box(out)
        })
    });

    // The same, then the choice by live load among the first 8 (k = 2):
    // the signals of each read once, as the request path does.
    use predictor::placement::choose::{Admission, Live, Totals, order};
    let live: Vec<Live> = (0..100u32)
        .map(|i| Live {
            admission: Admission::Up,
            weight: 100 - (i % 5) * 10,
            in_flight: (i * 7919) % 13,
            latency_us: 800 + (i * 104_729) % 900,
        })
        .collect();
    let totals = Totals {
        weight: live.iter().map(|l| l.weight).sum(),
        in_flight: live.iter().map(|l| l.in_flight).sum(),
    };
    // A head of 4 is what a tenant with k = 2 gets by default (k + 2
    // spill candidates); 8 is the most any request looks at.
    for head_len in [4usize, 8] {
        let mut i = 0;
        let name = format!("placement_decision_with_load_100_servers_head_{head_len}");
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & (PROBES - 1);
                let (t, point) = tenants[i];
                let mut prefs = [0u16; 8];
                let n = placement.servers(black_box(t), 0, point, &mut prefs[..head_len]);
                let mut head = [Live::IDLE; 8];
                for (h, &s) in head.iter_mut().zip(&prefs[..n]) {
                    *h = live[usize::from(s)];
                }
                let mut out = [0u16; 8];
                black_box(order(&prefs[..n], &head[..n], totals, 2, 1.25, &mut out));
                black_box(out)
            })
        });
    }

    // Reference: std HashMap with boxed keys, same keys, same run.
    let mut std_map: HashMap<Box<[u8]>, u32> = HashMap::with_capacity(n);
    for (k, v) in table.hosts() {
        std_map.insert(k.into(), v);
    }
    let mut i = 0;
    g.bench_function("std_hashmap_hit_random", |b| {
        b.iter(|| {
            i = (i + 1) & (PROBES - 1);
            black_box(std_map.get(black_box(hits[i].as_bytes())))
        })
    });
    drop(std_map);
    g.finish();

    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    g.bench_function(format!("tenant_table_from_{n}_line_tsv"), |b| {
        b.iter(|| black_box(build(&config, &text)))
    });
    g.finish();
    eprintln!(
        "table: {} hosts, {} wildcards, {} tenants, {:.1} MB on the heap ({} bytes per host)",
        table.host_count(),
        table.wildcard_count(),
        table.tenant_count(),
        table.heap_bytes() as f64 / 1e6,
        table.heap_bytes() / (table.host_count() + table.wildcard_count())
    );
}

criterion_group!(hosts_benches, benches);
criterion_main!(hosts_benches);
