//! Placement by live health and load, end to end: real webservers that
//! start failing and recover, real agents reporting drain and maint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use predictor::placement::choose::Admission;

use crate::support::agent::AgentServer;
use crate::support::backend::Backend;
use crate::support::{Folder, Proxy, WAIT, config_toml, get, reload};

const SITES: usize = 60;

fn folder(servers: &[&Backend], extra: &str) -> Folder {
    let list: Vec<(&str, SocketAddr)> = servers.iter().map(|b| (b.name.as_str(), b.addr)).collect();
    let tenants: String = (0..SITES)
        .map(|i| format!("s{i}.example\tt{i}\tweb\tf\n"))
        .collect();
    Folder::new(
        &config_toml(&[("web", list)], None, extra),
        &tenants,
        "default = \"migrated\"\n",
    )
}

/// Which backend answers each site now (its name, or the status).
async fn who_serves(proxy: &Proxy) -> HashMap<usize, String> {
    let mut out = HashMap::new();
    for i in 0..SITES {
        let a = get(proxy.addr, &format!("s{i}.example"), "/").await;
        let who = if a.status == 200 {
            a.body
        } else {
            a.status.to_string()
        };
        out.insert(i, who);
    }
    out
}

/// Asks `who_serves` until `cond` holds, at most [`WAIT`].
async fn until(
    proxy: &Proxy,
    what: &str,
    cond: impl Fn(&HashMap<usize, String>) -> bool,
) -> HashMap<usize, String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = who_serves(proxy).await;
        if cond(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sites_of(map: &HashMap<usize, String>, name: &str) -> Vec<usize> {
    let mut v: Vec<usize> = map
        .iter()
        .filter(|(_, w)| *w == name)
        .map(|(i, _)| *i)
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_is_ejected_and_its_sites_come_back_after_recovery() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let extra = "[pools.web.check]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 2\nfall = 2\n\
                 [pools.web.eject]\nfailures = 3\nbase = \"300ms\"\nmax = \"1s\"\n";
    let dir = folder(&[&a, &b, &c], extra);
    let proxy = Proxy::start(&dir);
    let home = who_serves(&proxy).await;
    let of_b = sites_of(&home, "b");
    assert!(!of_b.is_empty() && of_b.len() < SITES, "{home:?}");

    b.fail_with(503);
    let during = until(&proxy, "b's sites to move", |m| {
        of_b.iter().all(|i| m[i] == "a" || m[i] == "c")
    })
    .await;
    // Only b's sites moved: a down server is skipped where it stands on
    // the ring, the rest of the placement stays.
    for (i, w) in &home {
        if w != "b" {
            assert_eq!(&during[i], w, "site {i} moved although its server is up");
        }
    }

    b.fail_with(0);
    let after = until(&proxy, "b's sites to come back", |m| {
        of_b.iter().all(|i| m[i] == "b")
    })
    .await;
    assert_eq!(after, home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_eject_a_server_without_active_checks() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let extra = "[limits]\nupstream_attempts = 2\n\
                 [pools.web.eject]\nfailures = 2\nbase = \"60s\"\n";
    // A third server that refuses connections.
    let dead = crate::support::dead_addr();
    let list = vec![("a", a.addr), ("b", b.addr), ("dead", dead)];
    let tenants: String = (0..SITES)
        .map(|i| format!("s{i}.example\tt{i}\tweb\tf\n"))
        .collect();
    let dir = Folder::new(
        &config_toml(&[("web", list)], None, extra),
        &tenants,
        "default = \"migrated\"\n",
    );
    let proxy = Proxy::start(&dir);
    let dead_state = || {
        let snap = proxy.server().snapshot().load_full();
        let now = predictor::health::now_ms();
        snap.live.pool(0).server(2).health(now)
    };
    assert_eq!(dead_state().admission, Admission::Up);
    // Every site is served (the dead server's sites by the next on the
    // ring), and the dead server's failures eject it.
    let first = who_serves(&proxy).await;
    assert!(first.values().all(|w| w == "a" || w == "b"), "{first:?}");
    let h = dead_state();
    assert_eq!((h.admission, h.ejections), (Admission::Down, 1), "{h:?}");
    assert!(h.ejected_for_ms > 50_000, "{h:?}");
    // Its ejection survives a reload that keeps it.
    reload(proxy.server(), dir.path()).unwrap();
    assert_eq!(dead_state().admission, Admission::Down);
    assert_eq!(who_serves(&proxy).await, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_backend_keeps_its_sites_and_takes_no_new_ones() {
    let a = Backend::start_on("a", "127.0.0.2").await;
    let agent_a = AgentServer::start("127.0.0.2", 0, "up 100%").await;
    let port = agent_a.port;
    let b = Backend::start_on("b", "127.0.0.3").await;
    let agent_b = AgentServer::start("127.0.0.3", port, "up 100%").await;
    let c = Backend::start_on("c", "127.0.0.4").await;
    let _agent_c = AgentServer::start("127.0.0.4", port, "up 100%").await;
    let extra =
        format!("[pools.web.agent]\nport = {port}\ninterval = \"100ms\"\ntimeout = \"100ms\"\n");
    let dir = folder(&[&a, &b, &c], &extra);
    let proxy = Proxy::start(&dir);
    let home = who_serves(&proxy).await;
    let (of_a, of_b) = (sites_of(&home, "a"), sites_of(&home, "b"));
    assert!(!of_a.is_empty() && !of_b.is_empty(), "{home:?}");

    agent_b.say("drain");
    agent_a.say("maint");
    let during = until(&proxy, "a's sites to leave a", |m| {
        of_a.iter().all(|i| m[i] != "a")
    })
    .await;
    for i in &of_a {
        assert_eq!(during[i], "c", "site {i} of a went to the draining b");
    }
    for i in &of_b {
        assert_eq!(during[i], "b", "site {i} left the draining b");
    }

    agent_a.say("ready");
    agent_b.say("ready");
    let after = until(&proxy, "a's sites to come back", |m| {
        of_a.iter().all(|i| m[i] == "a")
    })
    .await;
    assert_eq!(after, home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_site_spreads_over_more_servers_and_shrinks_back() {
    let webs = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
        Backend::start("d").await,
    ];
    let refs: Vec<&Backend> = webs.iter().collect();
    // k_min 1, k_max 4 (the tier defaults); shrink steps 1 s apart.
    let dir = folder(&refs, "[placement]\nhot_hold = \"1s\"\n");
    let proxy = Proxy::start(&dir);
    let point = predictor::placement::ring_point("t0");
    let k = || {
        let snap = proxy.server().snapshot().load_full();
        snap.live.pool(0).state().hot_k(point, 1, 4)
    };
    assert_eq!(k(), 1);
    let home = get(proxy.addr, "s0.example", "/").await.body;

    // Bursts of slow concurrent requests: the home is soon over its cap,
    // the set grows while every member is over its cap; the requests
    // spread over the servers.
    let mut served = std::collections::HashSet::new();
    for _ in 0..6 {
        let burst: Vec<_> = (0..40)
            .map(|_| tokio::spawn(get(proxy.addr, "s0.example", "/sleep?ms=100")))
            .collect();
        for r in burst {
            let a = r.await.unwrap();
            assert_eq!(a.status, 200);
            served.insert(a.body);
        }
        if k() >= 3 {
            break;
        }
    }
    // Two servers more than k_min: with three members at their cap the
    // fourth server takes the rest, so the set has what it needs.
    assert!(k() >= 3, "the set grew to {}", k());
    assert!(served.len() >= 3, "served by {served:?}");

    // Calm again: one request at a time. The set shrinks one server per
    // hold, back to k_min, and the site is served by its home again.
    let deadline = tokio::time::Instant::now() + WAIT;
    while k() > 1 {
        assert!(tokio::time::Instant::now() < deadline, "k stuck at {}", k());
        get(proxy.addr, "s0.example", "/").await;
    }
    assert_eq!(get(proxy.addr, "s0.example", "/").await.body, home);
}

/// `predictor route` asks the running instance (its admin listener) and
/// shows the affinity set with each server's live health and load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_shows_live_health_from_the_running_instance() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let port = crate::support::haproxy::free_port();
    let extra = format!(
        "[admin]\naddress = \"127.0.0.1:{port}\"\n\
         [pools.web.check]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n"
    );
    let dir = folder(&[&a, &b], &extra);
    let proxy = Proxy::start(&dir);
    let home = who_serves(&proxy).await;
    let site = sites_of(&home, "a")[0];
    a.fail_with(500);
    let admin = proxy.server().admin_addr().unwrap();
    let host = format!("s{site}.example");
    let deadline = tokio::time::Instant::now() + WAIT;
    let text = loop {
        let t = get(admin, "admin", &format!("/route?host={host}"))
            .await
            .body;
        if t.contains("health checks fail") {
            break t;
        }
        assert!(tokio::time::Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        text.contains("affinity:  1 server(s); tier k_min 1, k_max 4"),
        "{text}"
    );
    // a is down and out of the set; b took its place.
    let line = |id: &str| {
        text.lines()
            .find(|l| l.contains(&format!(". {id} ")))
            .unwrap()
            .to_string()
    };
    assert!(
        line("a").contains("down") && !line("a").contains('*'),
        "{text}"
    );
    assert!(
        line("b").contains("up, 0 of 128 in flight") && line("b").contains('*'),
        "{text}"
    );

    // The binary, given the same folder, asks the same instance.
    let dir_path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_predictor"))
            .args(["route", "--config"])
            .arg(&dir_path)
            .arg(&host)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let cli = String::from_utf8_lossy(&out.stdout);
    assert!(
        cli.starts_with("live:      from the running instance"),
        "{cli}"
    );
    assert!(cli.contains("health checks fail"), "{cli}");
    drop(proxy);
    // Without a running instance: the folder alone, and a word on why.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_predictor"))
        .args(["route", "--config"])
        .arg(dir.path())
        .arg(format!("s{site}.example"))
        .output()
        .unwrap();
    let cli = String::from_utf8_lossy(&out.stdout);
    assert!(
        cli.contains("live:      not shown: no running instance answered"),
        "{cli}"
    );
    assert!(cli.contains("*  1. a "), "{cli}");
}

/// Every server of the pool down: a 503 with a page that says so, at once
/// (no connection attempted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_with_every_server_down_answers_503() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let extra = "[pools.web.check]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n";
    let dir = folder(&[&a, &b], extra);
    let proxy = Proxy::start(&dir);
    assert_eq!(get(proxy.addr, "s1.example", "/").await.status, 200);
    a.fail_with(503);
    b.fail_with(503);
    // Both marked down by their checks (the backends' own 503s count too).
    let snap = proxy.server().snapshot().load_full();
    crate::support::eventually("both servers down", || {
        let now = predictor::health::now_ms();
        let p = snap.live.pool(0);
        p.servers()
            .iter()
            .all(|s| s.admission(now) == Admission::Down)
    })
    .await;
    let seen = (a.seen().len(), b.seen().len());
    let down = who_serves(&proxy).await;
    assert!(down.values().all(|w| w.starts_with("503")), "{down:?}");
    let answer = get(proxy.addr, "s1.example", "/").await;
    assert!(
        answer.body.contains("No server of this site is available"),
        "{answer:?}"
    );
    assert_eq!(
        (a.seen().len(), b.seen().len()),
        seen,
        "nothing was forwarded"
    );
    a.fail_with(0);
    until(&proxy, "the sites to come back", |m| {
        m.values().all(|w| w == "a" || w == "b")
    })
    .await;
}
