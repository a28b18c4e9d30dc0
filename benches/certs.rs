//! The certificate folder at scale (not a criterion bench: it prints a
//! report).
//!
//!     cargo bench --bench certs
//!
//! For 10,000 and 50,000 certificates (one file each, ECDSA P-256 made by
//! rcgen, two names each: `siteN.example` and `www.siteN.example`): the time
//! to index the folder at start, the resident memory it adds, a rescan with
//! nothing changed (what a reload costs), a rescan after one file changed,
//! and the first and a cached key lookup (what a handshake adds).

use std::time::Instant;

use predictor::tls::keys::KeyCache;
use predictor::tls::store::CertIndex;

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

fn main() {
    for n in [10_000usize, 50_000] {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        for i in 0..n {
            write(dir.path(), i);
        }
        let made = t.elapsed();
        // Old enough that a rescan trusts the stamps.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let before = rss_kb();
        let t = Instant::now();
        let (index, refused) = CertIndex::scan(dir.path(), None, None).unwrap();
        let scan = t.elapsed();
        let after = rss_kb();
        assert!(refused.is_empty());
        assert_eq!(index.files().len(), n);
        let t = Instant::now();
        let (again, _) = CertIndex::scan(dir.path(), None, Some(&index)).unwrap();
        let rescan = t.elapsed();
        write(dir.path(), 7);
        let t = Instant::now();
        let (changed, _) = CertIndex::scan(dir.path(), None, Some(&again)).unwrap();
        let rescan_one = t.elapsed();
        let keys = KeyCache::new(10_000, predictor::tls::provider());
        let file = changed.lookup("www.site123.example").unwrap();
        let t = Instant::now();
        keys.get(file).unwrap();
        let first = t.elapsed();
        let t = Instant::now();
        keys.get(file).unwrap();
        let cached = t.elapsed();
        println!(
            "{n} certificates ({:.1} s to generate): index {:.0} ms, +{} MB resident; \
             rescan unchanged {:.0} ms, one file changed {:.0} ms; \
             first key {:.0} us, cached {:.1} us",
            made.as_secs_f64(),
            scan.as_secs_f64() * 1e3,
            after.saturating_sub(before) / 1024,
            rescan.as_secs_f64() * 1e3,
            rescan_one.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e6,
            cached.as_secs_f64() * 1e6,
        );
        drop((index, again, changed));
    }
}
