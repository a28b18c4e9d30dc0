//! Live reload driven by the files: every way of replacing a file is seen
//! by the folder watch and gives exactly one reload with the new content;
//! bad versions are refused while the old routing keeps serving.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use predictor::reload::{Reloader, watch};

use crate::support::backend::Backend;
use crate::support::{Folder, Proxy, WAIT, config_toml, eventually, get, metric};

/// Two pools, one site; `tenants(pool)` puts the site on one of them.
fn toml(a: &Backend, b: &Backend) -> String {
    config_toml(
        &[("a", vec![("wa", a.addr)]), ("b", vec![("wb", b.addr)])],
        None,
        "",
    )
}

fn tenants(pool: &str) -> String {
    format!("s.example\tt1\t{pool}\tf1\n")
}

const MIGRATED: &str = "default = \"migrated\"\n";

struct Watched {
    proxy: Proxy,
    reloader: Arc<Reloader>,
    dir: std::path::PathBuf,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Watched {
    async fn start(dir: &Path) -> Watched {
        let snapshot = predictor::snapshot::Snapshot::load(dir).unwrap();
        let server = predictor::server::Server::start(snapshot).unwrap();
        let proxy = Proxy::from_server(server);
        let reloader = Arc::new(Reloader::new(
            proxy.server().snapshot().clone(),
            dir,
            proxy.server().metrics().clone(),
        ));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(watch(reloader.clone(), stopped));
        eventually("the watch to start", || reloader.watching()).await;
        Watched {
            proxy,
            reloader,
            dir: dir.to_path_buf(),
            _stop: stop,
        }
    }

    /// Reload attempts handled by the watch so far, of any result.
    fn handled(&self) -> f64 {
        ["ok", "error", "unchanged", "waiting", "reverted"]
            .iter()
            .map(|r| self.reloads(r))
            .sum()
    }

    /// Waits until the watch has handled every change made so far: a file
    /// the config does not read is written, until one such burst ends as
    /// "unchanged" (a burst that still held a change ends otherwise).
    async fn settle(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        for n in 0u32.. {
            let (handled, unchanged) = (self.handled(), self.reloads("unchanged"));
            std::fs::write(self.dir.join("barrier"), n.to_string()).unwrap();
            while self.handled() <= handled {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the watch did not settle: {:?}",
                    self.reloader.status()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if self.reloads("unchanged") > unchanged {
                return;
            }
        }
    }

    /// Waits until the site is served by `name`.
    async fn until_served_by(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.who().await != name {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not served by {name}; status {:?}",
                self.reloader.status()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn who(&self) -> String {
        get(self.proxy.addr, "s.example", "/").await.body
    }

    fn generation(&self) -> u64 {
        self.proxy.server().snapshot().load().generation
    }

    fn reloads(&self, result: &str) -> f64 {
        metric(
            self.proxy.server(),
            &format!("predictor_reloads_total{{result=\"{result}\"}}"),
        )
    }

    /// Waits until the site is served by `name` and the watch has handled
    /// every event, and checks there was exactly one reload.
    async fn expect_one_reload_to(&self, name: &str) {
        self.until_served_by(name).await;
        self.settle().await;
        assert_eq!(self.generation(), 2, "{:?}", self.reloader.status());
        assert_eq!(self.reloads("ok"), 1.0);
        assert_eq!(self.reloads("error"), 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_write_reloads_once() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Folder::new(&toml(&a, &b), &tenants("a"), MIGRATED);
    let w = Watched::start(f.path()).await;
    assert_eq!(w.who().await, "a");
    f.write("tenants.tsv", &tenants("b"));
    w.expect_one_reload_to("b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_then_rename_reloads_once() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Folder::new(&toml(&a, &b), &tenants("a"), MIGRATED);
    let w = Watched::start(f.path()).await;
    let tmp = f.path().join(".tenants.tsv.new");
    std::fs::write(&tmp, tenants("b")).unwrap();
    std::fs::rename(&tmp, f.path().join("tenants.tsv")).unwrap();
    w.expect_one_reload_to("b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_and_create_reloads_once() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Folder::new(&toml(&a, &b), &tenants("a"), MIGRATED);
    let w = Watched::start(f.path()).await;
    std::fs::remove_file(f.path().join("tenants.tsv")).unwrap();
    eventually("the watch to wait for the file", || {
        w.reloads("waiting") >= 1.0
    })
    .await;
    assert_eq!(w.who().await, "a", "the old table keeps serving");
    f.write("tenants.tsv", &tenants("b"));
    w.expect_one_reload_to("b").await;
}

/// What vim does on `:w` with its defaults: a swap file, a probe file,
/// the old file renamed to a backup, the new one written, the backup
/// removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editors_save_reloads_once() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Folder::new(&toml(&a, &b), &tenants("a"), MIGRATED);
    let w = Watched::start(f.path()).await;
    let p = |n: &str| f.path().join(n);
    std::fs::write(p(".tenants.tsv.swp"), "swap").unwrap();
    std::fs::write(p("4913"), "").unwrap();
    std::fs::remove_file(p("4913")).unwrap();
    std::fs::rename(p("tenants.tsv"), p("tenants.tsv~")).unwrap();
    std::fs::write(p("tenants.tsv"), tenants("b")).unwrap();
    std::fs::remove_file(p("tenants.tsv~")).unwrap();
    std::fs::remove_file(p(".tenants.tsv.swp")).unwrap();
    w.expect_one_reload_to("b").await;
}

/// A Kubernetes ConfigMap mounted as a folder: every file is a symlink
/// through `..data`, itself a symlink to a timestamped folder; an update
/// writes a new timestamped folder and renames a new `..data` over the old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_reloads_once() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let version = |name: &str, pool: &str| {
        let v = dir.join(name);
        std::fs::create_dir(&v).unwrap();
        std::fs::write(v.join("predictor.toml"), toml(&a, &b)).unwrap();
        std::fs::write(v.join("tenants.tsv"), tenants(pool)).unwrap();
        std::fs::write(v.join("migration.toml"), MIGRATED).unwrap();
    };
    version("..2026_11_30_01", "a");
    symlink("..2026_11_30_01", dir.join("..data")).unwrap();
    for f in ["predictor.toml", "tenants.tsv", "migration.toml"] {
        symlink(format!("..data/{f}"), dir.join(f)).unwrap();
    }
    let w = Watched::start(dir).await;
    assert_eq!(w.who().await, "a");
    version("..2026_11_30_02", "b");
    symlink("..2026_11_30_02", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_11_30_01")).unwrap();
    w.expect_one_reload_to("b").await;
}

/// Bad versions are refused whole, with the old routing serving; the next
/// good version is applied without anyone asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_versions_are_refused_and_the_next_good_one_applies() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Folder::new(&toml(&a, &b), &tenants("a"), MIGRATED);
    let w = Watched::start(f.path()).await;
    let bad = [
        ("tenants.tsv", "s.example\tt1\tnosuchtier\tf1\n".to_string()),
        (
            "tenants.tsv",
            format!("{}s.example\tt2\tb\tf1\n", tenants("b")),
        ),
        ("tenants.tsv", "s.example\tt1\tb".to_string()),
        (
            "predictor.toml",
            "tenants = \"tenants.tsv\"\n[[listen]\n".to_string(),
        ),
    ];
    for (i, (file, text)) in bad.iter().enumerate() {
        let good = std::fs::read_to_string(f.path().join(file)).unwrap();
        // Whole: an in-place write read half-way under load (CI's two
        // cores running the suite) can be a valid table without the host,
        // which is not what this test is about.
        f.replace(file, text);
        eventually(&format!("{file} {text:?} refused"), || {
            w.reloads("error") >= (i + 1) as f64
        })
        .await;
        assert_eq!(w.who().await, "a", "the old snapshot serves");
        let status = w.reloader.status();
        assert!(status.last_failed.is_some(), "{status:?}");
        f.replace(file, &good);
    }
    // Restoring a good file reloads it at most once (the first time: the
    // folder was written just before the start, so what serves is not
    // known by its files); after that, a file written back as it serves
    // changes nothing.
    w.settle().await;
    assert!(w.generation() <= 2, "{}", w.generation());
    let generation = w.generation();
    let good = std::fs::read_to_string(f.path().join("migration.toml")).unwrap();
    f.replace("migration.toml", "default = \"migrated\n");
    eventually("the state file refused", || {
        w.reloads("error") >= (bad.len() + 1) as f64
    })
    .await;
    f.replace("migration.toml", &good);
    w.settle().await;
    assert_eq!(
        w.generation(),
        generation,
        "a file written back as it serves"
    );
    // The next real change applies.
    f.replace("tenants.tsv", &tenants("b"));
    w.until_served_by("b").await;
    assert_eq!(w.generation(), generation + 1);
}

/// One good version of the folder in the load test.
#[derive(Clone, Copy)]
struct Version {
    /// Pool of the even tenants ("a" or "b"; odd ones stay on "a").
    even_pool: &'static str,
    /// Whether filer f1 is in maintenance.
    f1_maintenance: bool,
}

const HOSTS: usize = 100;

impl Version {
    fn tenants(self) -> String {
        (0..HOSTS)
            .map(|i| {
                let pool = if i % 2 == 0 { self.even_pool } else { "a" };
                format!("h{i}.example\tt{i}\t{pool}\tf{}\n", i % 5)
            })
            .collect()
    }

    fn migration(self) -> String {
        let f1 = if self.f1_maintenance {
            "maintenance"
        } else {
            "migrated"
        };
        format!("default = \"migrated\"\n[filers]\nf1 = \"{f1}\"\n")
    }

    /// What host `i` answers under this version.
    fn expect(self, i: usize) -> &'static str {
        if self.f1_maintenance && i % 5 == 1 {
            "maintenance"
        } else if i % 2 == 0 {
            self.even_pool
        } else {
            "a"
        }
    }
}

/// Under keep-alive load over many hosts, the folder is rewritten 50 times
/// (good versions moving tenants between pools and a filer in and out of
/// maintenance, bad versions mixed in): no request fails, and every answer
/// is the routing of a snapshot that was serving while it was in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_under_load_fail_no_request_and_never_mix_snapshots() {
    use bytes::Bytes;
    use http_body_util::Full;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let first = Version {
        even_pool: "a",
        f1_maintenance: false,
    };
    let f = Folder::new(&toml(&a, &b), &first.tenants(), &first.migration());
    let w = Arc::new(Watched::start(f.path()).await);
    // The version of each generation (generation 1 is the first).
    let versions = Arc::new(Mutex::new(vec![first, first]));
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));

    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (w, versions, done, answered) =
                (w.clone(), versions.clone(), done.clone(), answered.clone());
            tokio::spawn(async move {
                let mut sender = crate::support::h1(w.proxy.addr).await;
                let mut i = c;
                // Bounded: at most 20,000 requests per client, 20 s.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                for _ in 0..20_000 {
                    if done.load(Ordering::SeqCst) || tokio::time::Instant::now() > deadline {
                        break;
                    }
                    i = (i + 7) % HOSTS;
                    let g0 = w.generation();
                    let req = http::Request::get("/")
                        .header("host", format!("h{i}.example"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    sender.ready().await.expect("the connection stays open");
                    let resp = sender.send_request(req).await.expect("an answer");
                    let a = crate::support::read(resp).await;
                    let g1 = w.generation();
                    let got = match (a.status.as_u16(), a.body.as_str()) {
                        (200, "a") => "a",
                        (200, "b") => "b",
                        (503, body) if body.contains("being moved") => "maintenance",
                        (status, body) => panic!("request {i} failed: {status} {body:?}"),
                    };
                    let v = versions.lock().unwrap();
                    let possible: Vec<&str> = (g0..=g1)
                        .filter_map(|g| v.get(g as usize))
                        .map(|v| v.expect(i))
                        .collect();
                    assert!(
                        possible.contains(&got),
                        "h{i} answered {got}, generations {g0}..={g1} say {possible:?}"
                    );
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // 50 rewrites: good versions (one file each) and bad ones, mixed.
    let mut current = first;
    let mut rewrites = 0;
    let mut k = 0;
    while rewrites < 50 {
        k += 1;
        if k % 4 == 0 {
            // Bad: refused, then the good file back (unchanged: no reload).
            let errors = w.reloads("error");
            let (file, bad, good) = if k % 8 == 0 {
                (
                    "tenants.tsv",
                    "h1.example\tt1\tnope\tf1\n".to_string(),
                    current.tenants(),
                )
            } else {
                (
                    "migration.toml",
                    "default = \"migrated\n".to_string(),
                    current.migration(),
                )
            };
            f.write(file, &bad);
            eventually("the bad version refused", || w.reloads("error") > errors).await;
            f.write(file, &good);
            w.settle().await;
            rewrites += 2;
            continue;
        }
        let next = if k % 2 == 0 {
            Version {
                even_pool: if current.even_pool == "a" { "b" } else { "a" },
                ..current
            }
        } else {
            Version {
                f1_maintenance: !current.f1_maintenance,
                ..current
            }
        };
        let generation = w.generation();
        // Known before it can serve, so that answers can be checked.
        versions.lock().unwrap().push(next);
        if k % 2 == 0 {
            // The table by rename, the state file in place.
            let tmp = f.path().join(".tenants.tsv.new");
            std::fs::write(&tmp, next.tenants()).unwrap();
            std::fs::rename(&tmp, f.path().join("tenants.tsv")).unwrap();
        } else {
            f.write("migration.toml", &next.migration());
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        while w.generation() == generation {
            assert!(
                tokio::time::Instant::now() < deadline,
                "version {k} not applied: ok {} error {} unchanged {} {:?}",
                w.reloads("ok"),
                w.reloads("error"),
                w.reloads("unchanged"),
                w.reloader.status()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(w.generation(), generation + 1, "one reload per version");
        current = next;
        rewrites += 1;
    }
    done.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("a client failed");
    }
    let n = answered.load(Ordering::SeqCst);
    assert!(n > 500, "only {n} requests during the rewrites");
    assert_eq!(w.reloads("ok") as u64 + 1, w.generation());
}

/// The admin status tells when the config was last loaded, and what was
/// wrong with the last version refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_status_shows_the_last_good_and_failed_reload() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let text = toml(&a, &b) + "[admin]\naddress = \"127.0.0.1:0\"\n";
    let f = Folder::new(&text, &tenants("a"), MIGRATED);
    f.age();
    let w = Watched::start(f.path()).await;
    let admin = w.proxy.server().admin_addr().unwrap();
    let status = || async {
        let body = get(admin, "admin", "/status").await.body;
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let s = status().await;
    assert_eq!(s["generation"], 1);
    assert_eq!(s["reload"]["last_good"]["generation"], 1);
    assert!(s["reload"]["last_failed"].is_null());
    assert_eq!(s["tenants"]["total"], 1);
    assert_eq!(s["tenants"]["migrated"], 1);
    assert_eq!(s["pools"][0]["servers"][0]["state"], "up");

    f.write("tenants.tsv", "s.example\tt1\tnope\tf1\n");
    eventually("the table refused", || w.reloads("error") >= 1.0).await;
    let s = status().await;
    let problem = s["reload"]["last_failed"]["problems"][0].as_str().unwrap();
    assert!(problem.contains("tenants.tsv:1"), "{problem}");
    assert!(s["reload"]["last_failed"]["at"].as_f64().unwrap() > 1.7e9);
    assert_eq!(s["generation"], 1);

    // Written back to the version serving: nothing loads, the failure is
    // over (disk and memory agree), and it is logged and counted.
    f.write("tenants.tsv", &tenants("a"));
    eventually("the revert seen", || w.reloads("reverted") >= 1.0).await;
    let s = status().await;
    assert!(s["reload"]["last_failed"].is_null(), "{s}");
    assert_eq!(s["generation"], 1, "nothing was loaded");
    let successful = || async {
        let body = get(admin, "admin", "/metrics").await.body;
        let line = body
            .lines()
            .find(|l| l.starts_with("predictor_config_last_reload_successful "))
            .map(str::to_string);
        line.unwrap_or_default()
    };
    assert_eq!(
        successful().await,
        "predictor_config_last_reload_successful 1"
    );

    f.write("tenants.tsv", "s.example\tt1\tnope\tf1\n");
    eventually("refused again", || w.reloads("error") >= 2.0).await;
    assert_eq!(
        successful().await,
        "predictor_config_last_reload_successful 0"
    );
    f.write("tenants.tsv", &tenants("b"));
    w.until_served_by("b").await;
    let s = status().await;
    assert_eq!(s["reload"]["last_good"]["generation"], 2);
    assert!(
        s["reload"]["last_failed"].is_null(),
        "a reload taken ends the failure"
    );
}
