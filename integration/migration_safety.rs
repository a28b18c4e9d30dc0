//! Migration safety, end to end with the binary as operators run it: the
//! disastrous reload is held (a state file flipping half the filers, a
//! tenant table cut short but valid), the old routing keeps serving, and
//! the change is installed once confirmed; a normal night passes.

use std::process::Command;

use crate::support::{Backend, Folder, WAIT, config_toml, get, process};

/// 100 filers `fNN` of two tenants each, `sNN-a.example` and
/// `sNN-b.example`.
fn table(filers: usize) -> String {
    (0..filers)
        .flat_map(|f| {
            ["a", "b"].map(|t| format!("s{f:02}-{t}.example\tt{f:02}{t}\tweb\tf{f:02}\n"))
        })
        .collect()
}

fn states(migrated: &[usize]) -> String {
    let mut s = String::from("default = \"legacy\"\n[filers]\n");
    for f in migrated {
        s.push_str(&format!("f{f:02} = \"migrated\"\n"));
    }
    s
}

fn predictor(args: &[&str], dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_predictor"))
        .args(args)
        .arg("--config")
        .arg(dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn post(admin: std::net::SocketAddr, path: &str) -> String {
    let req = format!("POST {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
    crate::support::raw(admin, req.as_bytes()).await
}

async fn status(admin: std::net::SocketAddr) -> serde_json::Value {
    serde_json::from_str(&get(admin, "admin", "/status").await.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disastrous_reload_is_held_until_confirmed() {
    let web = Backend::start("web").await;
    let legacy = Backend::start("legacy").await;
    let port = crate::support::haproxy::free_port();
    let f = Folder::new(
        &config_toml(
            &[("web", vec![("w", web.addr)])],
            Some(legacy.addr),
            &format!("[admin]\naddress = \"127.0.0.1:{port}\"\n"),
        ),
        &table(100),
        &states(&[]),
    );
    f.age();
    let mut run = process::Running::start(f.path());
    let addr = run.address("listening").await;
    let admin: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(get(addr, "s00-a.example", "/").await.body, "legacy");

    // A normal night: one filer of a hundred.
    f.replace("migration.toml", &states(&[0]));
    run.wait_for("config reloaded").await;
    assert_eq!(get(addr, "s00-a.example", "/").await.body, "web");

    // A tenant table cut short (valid, a quarter of its lines): held.
    let whole = table(100);
    let cut: String = whole.lines().take(50).map(|l| format!("{l}\n")).collect();
    f.replace("tenants.tsv", &cut);
    let held = run.wait_for("reload held").await;
    assert!(held.contains("hosts 200 -> 50 (75.0 % fewer)"), "{held}");
    assert_eq!(status(admin).await["tenants"]["total"], 200);
    // Written back: the held change is dropped, nothing to confirm.
    f.replace("tenants.tsv", &whole);
    run.wait_for("the held change is dropped").await;
    assert!(status(admin).await["reload"]["held"].is_null());
    let dir = f.path().to_path_buf();
    let (ok, nothing) = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || predictor(&["reload", "--confirm"], &dir)
    })
    .await
    .unwrap();
    assert!(!ok && nothing.contains("no reload is held"), "{nothing}");
    // Cut again, and confirmed on the admin listener: installed.
    f.replace("tenants.tsv", &cut);
    run.wait_for("reload held").await;
    let token = status(admin).await["reload"]["held"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let ok = post(admin, &format!("/reload/confirm?token={token}")).await;
    assert!(ok.starts_with("HTTP/1.1 202"), "{ok}");
    run.wait_for("config reloaded").await;
    assert_eq!(status(admin).await["tenants"]["total"], 50);

    // The whole table back: 150 new tenants move nothing, installed.
    f.replace("tenants.tsv", &whole);
    run.wait_for("config reloaded").await;
    assert_eq!(status(admin).await["tenants"]["total"], 200);

    // Fifty filers at once: held, the old routing serving.
    let fifty: Vec<usize> = (0..=50).collect();
    f.replace("migration.toml", &states(&fifty));
    let held = run.wait_for("reload held").await;
    assert!(
        held.contains("100 of 200 tenants change route (50.0 %"),
        "{held}"
    );
    assert_eq!(get(addr, "s01-a.example", "/").await.body, "legacy");
    let s = status(admin).await;
    assert_eq!(s["reload"]["held"]["changed_share"], 0.5, "{s}");
    // (The two holds of the cut table, and this one.)
    let m = crate::support::prom::Exposition::parse(&get(admin, "admin", "/metrics").await.body);
    assert_eq!(m.value("predictor_config_reload_held", &[]), 1.0);
    assert_eq!(
        m.value("predictor_reloads_total", &[("result", "held")]),
        3.0
    );
    // A wrong token changes nothing.
    let wrong = post(admin, "/reload/confirm?token=nope").await;
    assert!(wrong.starts_with("HTTP/1.1 400"), "{wrong}");
    // The operator looks, then confirms.
    let (ok, shown) = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || predictor(&["reload"], &dir)
    })
    .await
    .unwrap();
    assert!(
        ok && shown.contains("held:      100 of 200 tenants"),
        "{shown}"
    );
    let (ok, confirmed) = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || predictor(&["reload", "--confirm"], &dir)
    })
    .await
    .unwrap();
    assert!(
        ok && confirmed.contains("confirmed; installing"),
        "{confirmed}"
    );
    run.wait_for("config reloaded").await;
    assert_eq!(get(addr, "s01-a.example", "/").await.body, "web");
    assert!(status(admin).await["reload"]["held"].is_null());

    // What flipping f01 back would move, weighed by the live traffic.
    for _ in 0..20 {
        get(addr, "s01-a.example", "/").await;
    }
    crate::support::eventually_async("s01's traffic in /top", async || {
        get(admin, "admin", "/top?window=15m")
            .await
            .body
            .contains("t01a")
    })
    .await;
    let next = f.path().join("next.toml");
    std::fs::write(
        &next,
        states(&(0..=50).filter(|&f| f != 1).collect::<Vec<_>>()),
    )
    .unwrap();
    let dir = f.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_predictor"))
            .args(["diff", "--live", "--json", "--config"])
            .arg(&dir)
            .arg("--state")
            .arg(&next)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(d["tenants"]["moved"], 2, "{d}");
    assert!(
        d["requests"]["source"]
            .as_str()
            .unwrap_or("")
            .contains("running instance"),
        "{d}"
    );
    assert!(d["requests"]["moving"].as_f64().unwrap_or(0.0) > 0.0, "{d}");

    run.signal("-TERM");
    assert!(run.exit(WAIT).await.success());
}

#[test]
fn diff_counts_what_a_change_moves() {
    let toml = config_toml(
        &[("web", vec![("w1", crate::support::dead_addr())])],
        Some(crate::support::dead_addr()),
        "",
    )
    .replace(
        "servers = [\n",
        "servers = [\n  { id = \"w2\", address = \"127.0.0.2:9\" },\n",
    );
    let f = Folder::new(&toml, &table(100), &states(&[0]));
    // Ten more filers migrated, the first put in maintenance.
    let next = f.path().join("next.toml");
    let mut s = states(&(1..=10).collect::<Vec<_>>());
    s.push_str("f00 = \"maintenance\"\n");
    std::fs::write(&next, s).unwrap();
    let log = f.path().join("access.log");
    let line = |t: &str| format!("{{\"time\":\"x\",\"tenant\":\"{t}\",\"route\":\"legacy\"}}\n");
    let text = line("t01a").repeat(10) + &line("t50a").repeat(30) + "{\"tenant\":null}\n";
    std::fs::write(&log, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_predictor"))
        .args(["diff", "--json", "--config"])
        .arg(f.path())
        .arg("--state")
        .arg(&next)
        .arg("--access-log")
        .arg(&log)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(d["tenants"]["before"], 200);
    assert_eq!(d["tenants"]["moved"], 22);
    assert_eq!(d["held"], false, "22 tenants: under hold_min");
    let moves = d["moves"].as_array().unwrap();
    let count = |from: &str, to: &str| {
        moves
            .iter()
            .find(|m| m["from"] == from && m["to"] == to)
            .map_or(0, |m| m["tenants"].as_u64().unwrap())
    };
    assert_eq!(count("legacy", "migrated (web)"), 20);
    assert_eq!(count("migrated (web)", "maintenance"), 2);
    assert_eq!(d["by_filer"]["f00"][0]["tenants"], 2);
    assert_eq!(d["by_filer"].as_object().unwrap().len(), 11);
    // Units served: 2 before (f00), 20 after (f01-f10).
    let servers = d["servers"].as_array().unwrap();
    let units = |k: &str| servers.iter().map(|s| s[k].as_u64().unwrap()).sum::<u64>();
    // (Servers whose units do not change are not listed.)
    assert_eq!(
        units("units_after") - units("units_before"),
        20 - 2,
        "{servers:?}"
    );
    assert!(
        servers.iter().all(|s| s["cap"].as_u64().unwrap() >= 100),
        "{servers:?}"
    );
    assert_eq!(d["requests"]["moving"], 10.0);
    assert_eq!(d["requests"]["total"], 40.0);

    // A changed copy of the folder, its table cut short: held.
    let copy = tempfile::tempdir().unwrap();
    for name in ["predictor.toml", "migration.toml"] {
        std::fs::copy(f.path().join(name), copy.path().join(name)).unwrap();
    }
    let cut: String = table(100)
        .lines()
        .take(100)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(copy.path().join("tenants.tsv"), cut).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_predictor"))
        .args(["diff", "--config"])
        .arg(f.path())
        .arg(copy.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(
            "tenants:   200 -> 100; 100 change route (50.00 %: 0 moved, 100 gone), 0 new"
        ),
        "{text}"
    );
    assert!(
        text.contains("hosts:     200 -> 100 (50.00 % fewer)"),
        "{text}"
    );
    assert!(text.contains("would be HELD"), "{text}");
    assert!(text.contains("legacy -> (gone)"), "{text}");
}

const TOKEN: &str = "preview-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_credential_reaches_the_new_pool_and_nobody_else_does() {
    use crate::support::{Proxy, h1, read, send_from};
    let web = Backend::start("web").await;
    let legacy = Backend::start("legacy").await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    let f = Folder::new(
        &config_toml(
            &[("web", vec![("w", web.addr)])],
            Some(legacy.addr),
            &format!(
                "[preview]\nheader = \"X-Preview\"\ncookie = \"pv\"\ntoken = \"{TOKEN}\"\n\
                 networks = [\"127.0.0.2/32\"]\n[access_log]\noutput = \"{}\"\n",
                log.display()
            ),
        ),
        "s.example\tt\tweb\tf1\nold.example\tu\tweb\tf2\n",
        "default = \"legacy\"\n[filers]\nf1 = \"maintenance\"\n",
    );
    let p = Proxy::start(&f);
    let with = |name: &'static str, value: String| {
        http::Request::get("/")
            .header("host", "s.example")
            .header(name, value)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let ask = |req| async move {
        let mut s = h1(p.addr).await;
        read(s.send_request(req).await.unwrap()).await
    };
    // Visitors: the maintenance page.
    assert_eq!(get(p.addr, "s.example", "/").await.status, 503);
    assert_eq!(
        ask(with("x-preview", "wrong-token-0123456789".into()))
            .await
            .status,
        503
    );
    assert_eq!(ask(with("cookie", "pv=nope".into())).await.status, 503);
    // The credential, by header or cookie: the new pool.
    assert_eq!(ask(with("x-preview", TOKEN.into())).await.body, "web");
    assert_eq!(
        ask(with("cookie", format!("a=1; pv={TOKEN}; b=2")))
            .await
            .body,
        "web"
    );
    // An operators' network.
    let from = send_from(
        "127.0.0.2".parse().unwrap(),
        p.addr,
        with("x-other", "1".into()),
    )
    .await;
    assert_eq!(from.body, "web");
    // A site not in maintenance is not changed by a preview.
    let req = http::Request::get("/")
        .header("host", "old.example")
        .header("x-preview", TOKEN)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(ask(req).await.body, "legacy");
    // The access log marks the previews.
    crate::support::eventually("three previews logged", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.matches("\"preview\":true").count() == 3)
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .filter(|l| l.contains("\"status\":503"))
            .all(|l| !l.contains("preview"))
    );
}

/// Rollback is one line: a filer flipped back from migrated to legacy
/// under load loses no request, and keep-alive connections follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filer_rolls_back_under_load_without_a_failed_request() {
    use crate::support::{Proxy, get_on, h1, reload};
    let web = Backend::start("web").await;
    let legacy = Backend::start("legacy").await;
    let f = Folder::new(
        &config_toml(&[("web", vec![("w", web.addr)])], Some(legacy.addr), ""),
        &table(4),
        &states(&[0, 1, 2, 3]),
    );
    let p = Proxy::start(&f);
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    let stop = Arc::new(AtomicBool::new(false));
    // What each client's connection was last answered by.
    let last: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(vec![String::new(); 8]));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (addr, stop, last) = (p.addr, stop.clone(), last.clone());
            tokio::spawn(async move {
                let mut s = h1(addr).await;
                let mut seen = Vec::new();
                for _ in 0..50_000 {
                    if stop.load(SeqCst) {
                        break;
                    }
                    s.ready().await.unwrap();
                    let a = get_on(&mut s, &format!("s{:02}-a.example", i % 4), "/").await;
                    assert_eq!(a.status, 200, "{}", a.body);
                    if seen.last() != Some(&a.body) {
                        seen.push(a.body.clone());
                    }
                    last.lock().unwrap()[i] = a.body;
                }
                seen
            })
        })
        .collect();
    // Every connection answered by `by` (the reloads are installed when
    // `reload` returns; this waits for each client's next request).
    let all = |by: &'static str| {
        let last = last.clone();
        move || last.lock().unwrap().iter().all(|b| b == by)
    };
    crate::support::eventually("every client served by web", all("web")).await;
    // Roll back: every filer's line back to legacy (for this test's four
    // filers: the guard's minimum keeps a small table from being held).
    f.replace("migration.toml", &states(&[]));
    let server = p.server();
    assert!(reload(server, f.path()).is_ok());
    crate::support::eventually("every client served by legacy", all("legacy")).await;
    // And forward again.
    f.replace("migration.toml", &states(&[0, 1, 2, 3]));
    assert!(reload(server, f.path()).is_ok());
    crate::support::eventually("every client served by web again", all("web")).await;
    stop.store(true, SeqCst);
    for c in clients {
        let seen = tokio::time::timeout(WAIT, c).await.unwrap().unwrap();
        // The same connections, served by the new route each time.
        assert_eq!(seen, ["web", "legacy", "web"], "{seen:?}");
    }
}

/// A filer in `shadow` behind a real HAProxy as the legacy balancer: the
/// visitors get legacy's answers, a copy of each safe request goes to the
/// new pool, and `/verify` names exactly the tenants whose new copy fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_verifies_a_filer_before_the_flip() {
    use crate::support::haproxy::{self, Haproxy};
    use crate::support::{Proxy, eventually_async, h1, read};
    if !haproxy::available("shadow_verifies_a_filer_before_the_flip") {
        return;
    }
    // The same name length on both sides: the bodies compare equal.
    let site = Backend::start("same").await;
    let good = Backend::start("same").await;
    let broken = Backend::start("same").await;
    broken.fail_with(500);
    let port = haproxy::free_port();
    let legacy = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let _h = Haproxy::start_on(
        port,
        &format!(
            "frontend fe\n  bind 127.0.0.1:{{port}}\n  default_backend sites\nbackend sites\n  server s1 {}\n",
            site.addr
        ),
    );
    let toml = config_toml(
        &[
            ("good", vec![("g", good.addr)]),
            ("broken", vec![("b", broken.addr)]),
        ],
        Some(legacy),
        &format!(
            "[shadow]\nshare = \"100%\"\nmin_samples = 20\nmax_mismatch = \"1%\"\n\
             [preview]\nheader = \"X-Preview\"\ntoken = \"{TOKEN}\"\n"
        ),
    );
    let tenants: String = (1..=4)
        .map(|i| format!("g{i}.example\tgood{i}\tgood\tf1\n"))
        .chain((1..=2).map(|i| format!("b{i}.example\tbad{i}\tbroken\tf1\n")))
        .chain(std::iter::once(
            "other.example\tother\tgood\tf2\n".to_string(),
        ))
        .collect();
    let f = Folder::new(
        &toml,
        &tenants,
        "default = \"legacy\"\n[filers]\nf1 = \"shadow\"\n",
    );
    let p = Proxy::start(&f);
    let verify = |q: &'static str| {
        let snap = p.server().snapshot().clone();
        move || {
            let s = snap.load();
            snap.verify.json(&s.config.shadow, Some(q))
        }
    };
    // Visitors always get legacy's answers.
    let mut s = h1(p.addr).await;
    for round in 0..6 {
        for host in ["g1", "g2", "g3", "g4", "b1", "b2"] {
            s.ready().await.unwrap();
            let a =
                crate::support::get_on(&mut s, &format!("{host}.example"), &format!("/?r={round}"))
                    .await;
            assert_eq!(
                (a.status.as_u16(), a.body.as_str()),
                (200, "same"),
                "{host}"
            );
        }
    }
    // Never a POST, never a site of another state.
    let req = http::Request::post("/")
        .header("host", "g1.example")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x")))
        .unwrap();
    s.ready().await.unwrap();
    assert_eq!(read(s.send_request(req).await.unwrap()).await.status, 200);
    assert_eq!(get(p.addr, "other.example", "/").await.status, 200);
    let f1 = verify("f1");
    eventually_async("36 samples", async || {
        f1()["filers"][0]["counts"]["sampled"] == 36
    })
    .await;
    let v = f1();
    assert_eq!(v["filers"][0]["ready"], false, "{v}");
    assert_eq!(v["filers"][0]["counts"]["mismatched"]["new_5xx"], 12, "{v}");
    let worst: Vec<&str> = v["worst_tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(worst, ["bad1", "bad2"], "{v}");
    assert_eq!(v["worst_tenants"][0]["examples"][0]["legacy"], 200);
    assert_eq!(v["worst_tenants"][0]["examples"][0]["new"], 500);
    assert!(
        good.seen()
            .iter()
            .all(|r| r.method == http::Method::GET && r.header("x-predictor-shadow") == Some("1"))
    );
    assert_eq!(good.seen().len(), 24);
    // Fixed: the samples start again, and the filer becomes ready.
    broken.fail_with(0);
    p.server().snapshot().verify.reset(Some("f1"));
    for round in 0..4 {
        for host in ["g1", "g2", "b1", "b2", "g3"] {
            s.ready().await.unwrap();
            crate::support::get_on(
                &mut s,
                &format!("{host}.example"),
                &format!("/?again={round}"),
            )
            .await;
        }
    }
    eventually_async("20 new samples", async || {
        f1()["filers"][0]["counts"]["sampled"] == 20
    })
    .await;
    assert_eq!(f1()["filers"][0]["ready"], true, "{}", f1());
    // A preview reaches the new pool; a visitor does not.
    let before = good.seen().len();
    let req = http::Request::get("/")
        .header("host", "g1.example")
        .header("x-preview", TOKEN)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    s.ready().await.unwrap();
    assert_eq!(read(s.send_request(req).await.unwrap()).await.status, 200);
    let last = good.last();
    assert_eq!(
        last.header("x-predictor-shadow"),
        None,
        "the preview itself, not a copy"
    );
    assert_eq!(good.seen().len(), before + 1);
    assert_eq!(
        crate::support::metric(
            p.server(),
            "predictor_shadow_requests_total{result=\"mismatched\"}"
        ),
        12.0
    );
}

/// Shadow copies beyond `max_in_flight` are dropped; live requests are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_overload_drops_copies_not_requests() {
    use crate::support::Proxy;
    let site = Backend::start("same").await;
    let web = Backend::start("same").await;
    let f = Folder::new(
        &config_toml(
            &[("web", vec![("w", web.addr)])],
            Some(site.addr),
            "[proxy]\nworkers = 1\n[shadow]\nshare = \"100%\"\nmax_in_flight = 1\n",
        )
        .replacen("[proxy]\nworkers = 2\n", "", 1),
        "s.example\tt\tweb\tf1\n",
        "default = \"shadow\"\n",
    );
    let p = Proxy::start(&f);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let addr = p.addr;
            tokio::spawn(async move {
                get(addr, "s.example", "/sleep?ms=200")
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let server = p.server();
    crate::support::eventually("copies dropped and sent", || {
        let m = |r: &str| {
            crate::support::metric(
                server,
                &format!("predictor_shadow_requests_total{{result=\"{r}\"}}"),
            )
        };
        m("dropped") >= 1.0 && m("dropped") + m("matched") + m("mismatched") + m("failed") == 10.0
    })
    .await;
}

/// Small bodies are compared byte for byte (by digest): the same length
/// with other content is a mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_bodies_are_compared_by_digest() {
    use crate::support::{Proxy, eventually_async};
    let legacy = Backend::start("same").await;
    let web = Backend::start("sane").await;
    let f = Folder::new(
        &config_toml(
            &[("web", vec![("w", web.addr)])],
            Some(legacy.addr),
            "[shadow]\nshare = \"100%\"\n",
        ),
        "s.example\tt\tweb\tf1\n",
        "default = \"shadow\"\n",
    );
    let p = Proxy::start(&f);
    for _ in 0..3 {
        assert_eq!(get(p.addr, "s.example", "/").await.body, "same");
    }
    let snap = p.server().snapshot().clone();
    let body = || {
        let s = snap.load();
        snap.verify.json(&s.config.shadow, None)["filers"][0]["counts"]["mismatched"]["body"]
            .clone()
    };
    eventually_async("three body mismatches", async || body() == 3).await;
}
