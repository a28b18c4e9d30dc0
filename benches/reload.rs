//! Reload at scale (not a criterion bench: it prints a report).
//!
//!     cargo bench --features jemalloc --bench reload
//!
//! A config folder with a 1,000,000-line tenant table (100 filers), watched
//! the way `predictor run` watches it. Measured from the file system
//! change to the new snapshot serving (polled every 500 µs, which is when a
//! new request would route by it):
//!
//! * the tenant table rewritten (a new file renamed over the old one);
//! * one line of the migration state file changed (a filer flipped), in
//!   place;
//!
//! and the process's peak resident memory during a table reload against
//! its steady state (`VmHWM` after resetting it through `clear_refs`), with
//! the binary's allocator (jemalloc, as configured in `.cargo/config.toml`).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use predictor::metrics::Metrics;
use predictor::reload::{Reloader, watch};
use predictor::snapshot::{SharedSnapshot, Snapshot};

/// The allocator of the `predictor` binary, so that memory is measured as
/// it behaves in production (freed pages returned within a second).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const TENANTS: usize = 1_000_000;
const ROUNDS: usize = 7;
/// Longest wait for the memory of a reload to be returned.
const SETTLE: Duration = Duration::from_secs(5);

fn write_table(path: &Path, tier_of_first: &str) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    for i in 0..TENANTS {
        let tier = if i == 0 { tier_of_first } else { "shared" };
        writeln!(f, "site{i}.example\tt{i}\t{tier}\tf{}", i % 100).unwrap();
    }
    f.flush().unwrap();
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Waits until the serving generation passes `after`.
fn wait_past(shared: &SharedSnapshot, after: u64, since: Instant) -> Duration {
    while shared.load().generation <= after {
        assert!(since.elapsed() < Duration::from_secs(30), "no reload");
        std::thread::sleep(Duration::from_micros(500));
    }
    since.elapsed()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("predictor.toml"),
        "tenants = \"tenants.tsv\"\nmigration = \"migration.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n\
         [tiers.shared]\npool = \"p\"\n[tiers.premium]\npool = \"p\"\ncost = 4\n\
         [pools.p]\nservers = [{ id = \"a\", address = \"127.0.0.1:9\" }, { id = \"b\", address = \"127.0.0.1:10\" }]\n",
    )
    .unwrap();
    write_table(&d.join("tenants.tsv"), "shared");
    std::fs::write(d.join("migration.toml"), "default = \"migrated\"\n").unwrap();
    // Old enough that its stamp is trusted (a real table is written long
    // before the state file flips).
    std::thread::sleep(Duration::from_millis(2100));

    let started = Instant::now();
    let shared = Arc::new(SharedSnapshot::new(Snapshot::load(d).unwrap()));
    let first_load = started.elapsed();
    let reloader = Arc::new(Reloader::new(shared.clone(), d, Arc::new(Metrics::new())));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    runtime.spawn(watch(reloader.clone(), stopped));
    std::thread::sleep(Duration::from_millis(200));
    let steady_kb = status_kb("VmRSS:");
    println!(
        "reload at scale: {TENANTS} tenants, first load {:.0} ms, steady RSS {} MB\n",
        first_load.as_secs_f64() * 1e3,
        steady_kb / 1024
    );

    // One line of the state file, in place.
    let mut flips = Vec::new();
    for round in 0..ROUNDS {
        let state = if round % 2 == 0 {
            "maintenance"
        } else {
            "migrated"
        };
        let text = format!("default = \"migrated\"\n[filers]\nf7 = \"{state}\"\n");
        let generation = shared.load().generation;
        let t0 = Instant::now();
        std::fs::write(d.join("migration.toml"), text).unwrap();
        flips.push(wait_past(&shared, generation, t0));
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "one state-file line changed: effective after {:.1} ms median (all: {:?})",
        median(flips.clone()).as_secs_f64() * 1e3,
        flips.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );

    // The whole table rewritten and renamed into place. Each round starts
    // from the steady state, as a real rewrite would (they come minutes
    // apart): the previous reload's memory (the old table, freed when its
    // last request ends, then returned by the allocator's decay) is waited
    // for, and how long that takes is reported.
    let mut tables = Vec::new();
    let mut peaks = Vec::new();
    let mut returned = Vec::new();
    for round in 0..ROUNDS {
        let tier = if round % 2 == 0 { "premium" } else { "shared" };
        let tmp = d.join(".tenants.tsv.new");
        write_table(&tmp, tier);
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = status_kb("VmRSS:");
        let generation = shared.load().generation;
        let t0 = Instant::now();
        std::fs::rename(&tmp, d.join("tenants.tsv")).unwrap();
        let serving = wait_past(&shared, generation, t0);
        tables.push(serving);
        std::thread::sleep(Duration::from_millis(20));
        peaks.push((status_kb("VmHWM:"), before));
        while status_kb("VmRSS:") > steady_kb + 2048 && t0.elapsed() < serving + SETTLE {
            std::thread::sleep(Duration::from_millis(10));
        }
        returned.push(t0.elapsed() - serving);
    }
    println!(
        "  per round (peak MB, RSS before MB): {:?}",
        peaks
            .iter()
            .map(|(p, b)| (p / 1024, b / 1024))
            .collect::<Vec<_>>()
    );
    println!(
        "  RSS back within 2 MB of steady after (ms): {:?}",
        returned.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    let (peak, before) = peaks.iter().copied().max().unwrap_or((0, 0));
    println!(
        "tenant table rewritten (rename): serving after {:.0} ms median (all: {:?})",
        median(tables.clone()).as_secs_f64() * 1e3,
        tables.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    println!(
        "peak RSS during a table reload: {} MB, {:.2}x the steady {} MB (RSS just before: {} MB)",
        peak / 1024,
        peak as f64 / steady_kb.max(1) as f64,
        steady_kb / 1024,
        before / 1024
    );
}
