//! The certificate folder at scale (not a criterion bench: it prints a
//! report).
//!
//!     cargo bench --features jemalloc --bench certs
//!
//! For 10,000 and 50,000 certificates (one file each, ECDSA P-256 made by
//! rcgen, two names each: `siteN.example` and `www.siteN.example`): the time
//! to index the folder at start, the resident memory it adds, a full rescan
//! with nothing changed (what `SIGHUP` costs), an update for one renewed
//! file (what the folder watch asks for), whole reloads of a config folder
//! holding the certificates (a state-file flip, one certificate renewed),
//! and the first and a cached key lookup (what a handshake adds).

use std::time::Instant;

use std::sync::Arc;

use predictor::reload::{Outcome, Reloader};
use predictor::snapshot::{SharedSnapshot, Snapshot};
use predictor::tls::keys::KeyCache;
use predictor::tls::store::{CertChanges, CertIndex};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn write(dir: &std::path::Path, i: usize) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![
        format!("site{i}.example"),
        format!("www.site{i}.example"),
    ])
    .unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(
        dir.join(format!("site{i}.pem")),
        cert.pem() + &key.serialize_pem(),
    )
    .unwrap();
}

/// A config folder serving one site over `https` with the certificates
/// of `certs/`.
fn config(dir: &std::path::Path) {
    std::fs::write(
        dir.join("predictor.toml"),
        "tenants = \"tenants.tsv\"\nmigration = \"migration.toml\"\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\nprotocol = \"https\"\n\
         [tls]\ncertificates = \"certs\"\n\
         [tiers.web]\npool = \"p\"\n[pools.p]\nservers = [{ id = \"a\", address = \"127.0.0.1:9\" }]\n",
    )
    .unwrap();
    std::fs::write(dir.join("tenants.tsv"), "site1.example\tt1\tweb\tf1\n").unwrap();
    std::fs::write(dir.join("migration.toml"), "default = \"migrated\"\n").unwrap();
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    for n in [10_000usize, 50_000] {
        let root = tempfile::tempdir().unwrap();
        config(root.path());
        let certs = root.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        let t = Instant::now();
        for i in 0..n {
            write(&certs, i);
        }
        let made = t.elapsed();
        // Old enough that a rescan trusts the stamps.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let before = rss_kb();
        let t = Instant::now();
        let index = CertIndex::scan(&certs, None, None).unwrap();
        let scan = t.elapsed();
        let after = rss_kb();
        assert!(index.refused().is_empty());
        assert_eq!(index.files().len(), n);
        let t = Instant::now();
        let again = CertIndex::scan(&certs, None, Some(&index)).unwrap();
        let rescan = t.elapsed();
        write(&certs, 7);
        let one: std::collections::BTreeSet<_> = [certs.join("site7.pem")].into();
        let t = Instant::now();
        let changed = again.update(&one, None);
        let update = t.elapsed();
        let keys = KeyCache::new(10_000, predictor::tls::provider());
        let file = changed.lookup("www.site123.example").unwrap();
        let t = Instant::now();
        keys.get(file).unwrap();
        let first = t.elapsed();
        let t = Instant::now();
        keys.get(file).unwrap();
        let cached = t.elapsed();
        drop((index, again, changed));

        // Whole reloads, as the folder watch runs them.
        let shared = Arc::new(SharedSnapshot::new(Snapshot::load(root.path()).unwrap()));
        let reloader = Reloader::new(shared.clone(), root.path(), Arc::new(Default::default()));
        std::fs::write(
            root.path().join("migration.toml"),
            "default = \"maintenance\"\n",
        )
        .unwrap();
        let t = Instant::now();
        assert!(matches!(
            reloader.reload_changed(CertChanges::None),
            Outcome::Reloaded(_)
        ));
        let flip = t.elapsed();
        write(&certs, 9);
        let t = Instant::now();
        let renewed = CertChanges::Files([certs.join("site9.pem")].into());
        assert!(matches!(
            reloader.reload_changed(renewed),
            Outcome::Reloaded(_)
        ));
        let renewal = t.elapsed();
        let t = Instant::now();
        assert!(matches!(reloader.reload(true), Outcome::Reloaded(_)));
        let forced = t.elapsed();
        println!(
            "{n} certificates ({:.1} s to generate): index {:.0} ms, +{} MB resident; \
             full rescan unchanged {:.0} ms, update for one file {:.1} ms; \
             reload: state-file flip {:.1} ms, one certificate renewed {:.1} ms, SIGHUP {:.0} ms; \
             first key {:.0} us, cached {:.1} us",
            made.as_secs_f64(),
            ms(scan),
            after.saturating_sub(before) / 1024,
            ms(rescan),
            ms(update),
            ms(flip),
            ms(renewal),
            ms(forced),
            first.as_secs_f64() * 1e6,
            cached.as_secs_f64() * 1e6,
        );
    }
}
