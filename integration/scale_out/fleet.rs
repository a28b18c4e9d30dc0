//! Three predictor instances behind HAProxy in TCP mode, as
//! `docs/operations.md` ("Scale out") sets them up: each instance in a
//! network namespace of its own (a machine) reading the same folder
//! (same addresses, `0.0.0.0:8080` and the admin on `0.0.0.0:9180`),
//! HAProxy spreading connections with `send-proxy-v2` and checking
//! `/readyz`, the webservers and the legacy balancer beside HAProxy.
//!
//! ```text
//!  namespace lb: visitors 10.99.0.10-29, HAProxy *:PORT,     namespace eI (I = 1..3):
//!  webservers and legacy on 10.99.0.1 (lo)                    predictor 10.99.I.2
//!             10.99.I.1 ──────────── veth ──────────────────── 10.99.I.2
//! ```
//!
//! The outer test makes the namespaces and runs the inner one inside
//! `lb` (this test binary again, like the upgrade test).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::backend::Backend;
use crate::support::haproxy::{Haproxy, available, free_port};
use crate::support::netns::{Namespaces, ip};
use crate::support::process::Running;
use crate::support::{Folder, config_toml, eventually, get_on, h1_over, try_send_from};

/// The namespaces' names, `lb,e1,e2,e3`, for the inner test.
const FLEET_NETNS: &str = "PREDICTOR_FLEET_NETNS";

const INSTANCES: usize = 3;
/// Hosts in the tenant table (all of them compared between instances).
const HOSTS: usize = 10_000;

#[test]
fn a_fleet_of_three_behind_an_l4_tier_acts_as_one() {
    let test = "a_fleet_of_three_behind_an_l4_tier_acts_as_one";
    if !available(test) {
        return;
    }
    let Some(made) = Namespaces::make(test, &["lb", "e1", "e2", "e3"]) else {
        return;
    };
    let names = &made.names;
    let lb = &names[0];
    // The whole /24 is local on lo: the visitors bind addresses in it.
    ip(&["-n", lb, "addr", "add", "10.99.0.1/24", "dev", "lo"]);
    for (i, edge) in names[1..].iter().enumerate() {
        let n = i + 1;
        let (near, far) = (format!("10.99.{n}.1/24"), format!("10.99.{n}.2/24"));
        let link = format!("e{n}");
        ip(&[
            "-n", lb, "link", "add", &link, "type", "veth", "peer", "name", "uplink", "netns", edge,
        ]);
        ip(&["-n", lb, "addr", "add", &near, "dev", &link]);
        ip(&["-n", lb, "link", "set", &link, "up"]);
        ip(&["-n", edge, "addr", "add", &far, "dev", "uplink"]);
        ip(&["-n", edge, "link", "set", "uplink", "up"]);
        let via = format!("10.99.{n}.1");
        ip(&["-n", edge, "route", "add", "default", "via", &via]);
    }
    let text = made.run_inside(
        lb,
        "scale_out::fleet::fleet_inside_its_namespaces",
        (FLEET_NETNS, &names.join(",")),
    );
    for line in text.lines().filter(|l| l.starts_with("fleet:")) {
        eprintln!("{line}");
    }
}

/// The address of instance `i` (from 1) as the balancer reaches it.
fn edge(i: usize, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 99, i as u8, 2], port))
}

/// A `GET` answer: status and the `x-backend` that answered.
#[derive(Debug, Clone)]
struct Got {
    status: u16,
    backend: String,
}

/// One `Connection: close` GET of `host` on a new connection from the
/// local address `from` to `to`.
async fn get_once(from: [u8; 4], to: SocketAddr, host: &str, path: &str) -> Result<Got, String> {
    let req = Request::get(path)
        .header("host", host)
        .header("connection", "close")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let a = try_send_from(std::net::IpAddr::from(from), to, req).await?;
    Ok(Got {
        status: a.status.as_u16(),
        backend: a.header("x-backend").unwrap_or("").to_string(),
    })
}

/// A keep-alive client of one instance's admin listener.
async fn admin(i: usize) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("10.99.0.1:0".parse().unwrap()).unwrap();
    h1_over(socket.connect(edge(i, 9180)).await.unwrap()).await
}

/// What `/route?host=` says that every instance must agree on: tenant,
/// tier, filer, state, route, pool and the servers in preference order
/// (ids and addresses; their live load and affinity marks differ).
fn route_facts(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split(':').next().unwrap_or("");
        if ["host", "tenant", "tier", "filer", "state", "route", "pool"].contains(&key) {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        // "  * 1. w2 10.99.0.1:40000  up, 0 in flight, ..."
        let rest = line.trim_start();
        let rest = rest.strip_prefix('*').unwrap_or(rest).trim_start();
        let Some((n, server)) = rest.split_once(". ") else {
            continue;
        };
        if n.parse::<usize>().is_ok() {
            let mut words = server.split_whitespace();
            out.push_str(&format!(
                "{n}. {} {}\n",
                words.next().unwrap_or(""),
                words.next().unwrap_or("")
            ));
        }
    }
    out
}

/// Run by the test above inside the `lb` namespace (ignored otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run inside network namespaces by a_fleet_of_three_behind_an_l4_tier_acts_as_one"]
async fn fleet_inside_its_namespaces() {
    let Ok(names) = std::env::var(FLEET_NETNS) else {
        return;
    };
    let names: Vec<&str> = names.split(',').collect();
    let webs: Vec<Arc<Backend>> = {
        let mut v = Vec::new();
        for k in 0..4 {
            v.push(Arc::new(
                Backend::start_on(&format!("w{k}"), "10.99.0.1").await,
            ));
        }
        v
    };
    let legacy = Arc::new(Backend::start_on("legacy", "10.99.0.1").await);
    let servers: Vec<(String, SocketAddr)> = webs
        .iter()
        .enumerate()
        .map(|(k, w)| (format!("w{k}"), w.addr))
        .collect();
    let pool: Vec<(&str, SocketAddr)> = servers.iter().map(|(id, a)| (id.as_str(), *a)).collect();
    let balancers: Vec<String> = (1..=INSTANCES)
        .map(|i| format!("\"10.99.{i}.1\""))
        .collect();
    let toml = config_toml(
        &[("web", pool)],
        Some(legacy.addr),
        "[timeouts]\nconnect = \"1s\"\ndrain = \"10s\"\ndrain_notice = \"1s\"\n\
         [admin]\naddress = \"0.0.0.0:9180\"\n",
    )
    .replace(
        "[[listen]]\naddress = \"127.0.0.1:0\"\n",
        &format!(
            "[[listen]]\naddress = \"0.0.0.0:8080\"\nproxy_protocol = [{}]\n",
            balancers.join(", ")
        ),
    );
    // 10,000 hosts on 20 filers (f0 and f1 still on the legacy side), and
    // one filer to flip tonight.
    let mut tenants = String::with_capacity(HOSTS * 40);
    for n in 0..HOSTS {
        tenants.push_str(&format!("site{n}.example\tt{n}\tweb\tf{}\n", n % 20));
    }
    tenants.push_str("flip.example\tflip\tweb\tf-flip\n");
    let before =
        "default = \"migrated\"\n[filers]\nf0 = \"legacy\"\nf1 = \"legacy\"\nf-flip = \"legacy\"\n";
    let f = Folder::new(&toml, &tenants, before);
    f.age();

    let mut fleet: Vec<Running> = names[1..]
        .iter()
        .map(|ns| Running::start_in_netns(ns, f.path()))
        .collect();
    for (i, p) in fleet.iter_mut().enumerate() {
        p.wait_for("admin listening").await;
        let mut c = admin(i + 1).await;
        let mut ready = false;
        for _ in 0..200 {
            if get_on(&mut c, "admin", "/readyz").await.status == 200 {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(ready, "instance {} not ready", i + 1);
    }

    // Each instance says which balancers it believes.
    let status = get_on(&mut admin(1).await, "admin", "/status").await.body;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status["listeners"][0]["proxy_protocol"],
        serde_json::json!(["10.99.1.1/32", "10.99.2.1/32", "10.99.3.1/32"]),
        "{status}"
    );

    // HAProxy, TCP mode: the http half of deploy/haproxy/l4.cfg, its
    // addresses ours and its checks every 100 ms (fall 1).
    let port = free_port();
    let _haproxy = Haproxy::start_on(port, &l4_tier());
    let front = SocketAddr::from(([10, 99, 0, 1], port));

    // (a) The same route and server order for every host, everywhere.
    let started = Instant::now();
    let mut disagree = Vec::new();
    let mut placed = 0;
    // Each instance asked on its own connection, all three at once.
    let mut asking = Vec::new();
    for i in 1..=INSTANCES {
        asking.push(tokio::spawn(async move {
            let mut c = admin(i).await;
            let mut facts = Vec::with_capacity(HOSTS);
            for n in 0..HOSTS {
                let a = get_on(&mut c, "admin", &format!("/route?host=site{n}.example")).await;
                let text = a.body;
                assert_eq!(a.status, 200, "{text}");
                assert!(text.contains("route:"), "{text}");
                facts.push(route_facts(&text));
            }
            facts
        }));
    }
    let mut answers = Vec::new();
    for a in asking {
        answers.push(a.await.unwrap());
    }
    for n in 0..HOSTS {
        if answers[0][n].contains("1. w") {
            placed += 1;
        }
        if answers.iter().any(|a| a[n] != answers[0][n]) && disagree.len() < 3 {
            disagree.push(answers.iter().map(|a| a[n].clone()).collect::<Vec<_>>());
        }
    }
    assert!(disagree.is_empty(), "instances disagree: {disagree:#?}");
    // f0 and f1 (a tenth) are on the legacy side, without servers.
    assert_eq!(placed, HOSTS - HOSTS / 10);
    println!(
        "fleet: (a) {HOSTS} hosts, same route and server order on {INSTANCES} instances ({:.1} s)",
        started.elapsed().as_secs_f64()
    );

    // All three take traffic through the balancer, and (e) every request
    // reaches its webserver or the legacy balancer with the visitor's
    // address.
    let mut by_instance: BTreeMap<String, usize> = BTreeMap::new();
    for k in 0..60u8 {
        let visitor = [10, 99, 0, 10 + k % 20];
        let host = format!("site{}.example", k as usize * 7);
        let got = get_once(visitor, front, &host, "/").await.unwrap();
        assert_eq!(got.status, 200, "{got:?}");
        let backend = if got.backend == "legacy" {
            &legacy
        } else {
            &webs[got.backend[1..].parse::<usize>().unwrap()]
        };
        let seen = backend
            .seen()
            .into_iter()
            .rev()
            .find(|s| s.header("host") == Some(host.as_str()))
            .unwrap();
        let visitor = std::net::Ipv4Addr::from(visitor).to_string();
        assert_eq!(seen.header("x-forwarded-for"), Some(visitor.as_str()));
        *by_instance.entry(seen.peer.ip().to_string()).or_default() += 1;
    }
    assert_eq!(by_instance.len(), INSTANCES, "{by_instance:?}");
    println!("fleet: (e) 60 visitors' addresses intact at the webservers; spread {by_instance:?}");

    // (b) One state-file flip, served by every instance within 200 ms of
    // the write, and never the old state after. The bound is on this
    // machine's wall clock while the rest of the suite runs beside it on
    // two cores: a flip that misses it is flipped back and again (at most
    // three writes); each must keep the order.
    let after = before.replace("f-flip = \"legacy\"\n", "");
    let mut times = Vec::new();
    for (content, to_pool) in [(&after, true), (&before.to_string(), false), (&after, true)] {
        times.push(flip(&f, content, to_pool).await);
        if to_pool && times.iter().any(|t| *t <= Duration::from_millis(200)) {
            break;
        }
    }
    assert!(
        times.iter().any(|t| *t <= Duration::from_millis(200)),
        "the flip took {times:?} on the slowest instance"
    );
    // Through the balancer, after that: only the new state.
    for k in 0..30u8 {
        let got = get_once([10, 99, 0, 10 + k % 20], front, "flip.example", "/")
            .await
            .unwrap();
        assert_ne!(got.backend, "legacy", "{got:?}");
    }
    println!(
        "fleet: (b) the flip served by all {INSTANCES} instances {times:?} after the write (bound 200 ms)"
    );

    // Load through the balancer: visitors on new connections, a mix of
    // migrated and legacy sites, each request 20 ms at the webserver so
    // that some are in flight at any time.
    let load = Load::start(front);
    load.until(200).await;

    // (c) SIGTERM to instance 2: /readyz 503, HAProxy takes it out, what
    // it has in flight finishes, nothing fails.
    let t_term = Instant::now();
    fleet[1].signal("-TERM");
    // During the notice: not ready, still serving (a request sent within
    // the first 700 ms of the 1 s notice must be answered).
    let mut c = admin(2).await;
    let mut unready = false;
    for _ in 0..100 {
        if get_on(&mut c, "admin", "/readyz").await.status == 503 {
            unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(unready, "/readyz did not turn 503");
    if t_term.elapsed() < Duration::from_millis(700) {
        let direct = get_once([10, 99, 0, 1], edge(2, 8080), "site2.example", "/").await;
        assert_eq!(
            direct.map(|g| g.status),
            Ok(200),
            "served during the notice"
        );
    }
    let status = fleet[1].exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}");
    let drained = Instant::now();
    let served = load.answered();
    load.until(served + 200).await;
    let late = seen_from(&webs, &legacy, 2, t_term + Duration::from_millis(800));
    let failures = load.failures();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(
        late, 0,
        "instance 2 still got requests after the balancer's check"
    );
    println!(
        "fleet: (c) SIGTERM: 0 failed of {} so far; instance 2 drained and exited in {:.2} s",
        load.answered(),
        drained.duration_since(t_term).as_secs_f64()
    );

    // (d) SIGKILL to instance 3: only what was in flight on it fails.
    let before_kill = load.answered();
    let in_flight_bound = Load::CLIENTS;
    fleet[2].child.start_kill().unwrap();
    let _ = fleet[2].exit(Duration::from_secs(10)).await;
    load.until(before_kill + 300).await;
    let results = load.stop().await;
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.len() <= in_flight_bound,
        "{} failed, more than the {in_flight_bound} that can be in flight: {failures:?}",
        failures.len()
    );
    println!(
        "fleet: (d) SIGKILL: {} failed (at most {in_flight_bound} in flight), {} answered in all",
        failures.len(),
        results.len() - failures.len()
    );
    drop(fleet);
}

/// The `http` frontend and `predictor_http` backend of
/// `deploy/haproxy/l4.cfg`, bound on this test's port, with this test's
/// instances and faster checks.
fn l4_tier() -> String {
    let text = include_str!("../../deploy/haproxy/l4.cfg");
    let mut out = String::new();
    let mut keep = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            keep = line == "frontend http" || line == "backend predictor_http";
        }
        if !keep || line.trim_start().starts_with("server ") {
            continue;
        }
        let line = if line.trim_start().starts_with("bind ") {
            "  bind *:{port}".to_string()
        } else {
            line.replace("inter 1s fall 2 rise 2", "inter 100ms fall 1 rise 2")
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert!(
        out.contains("send-proxy-v2") && out.contains("inter 100ms"),
        "{out}"
    );
    for i in 1..=INSTANCES {
        out.push_str(&format!("  server e{i} {}\n", edge(i, 8080)));
    }
    out
}

/// Writes `content` as the state file while a client of each instance
/// asks for `flip.example` on a kept-alive connection; returns how long
/// after the write the slowest instance answered from the new state
/// (the pool when `to_pool`, else the legacy balancer). Fails when an
/// instance answers from the old state after the new one.
async fn flip(f: &Folder, content: &str, to_pool: bool) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    // Per poller: answers so far, and answers from the new state.
    let counts: Arc<Vec<(AtomicUsize, AtomicUsize)>> = Arc::new(
        (0..INSTANCES)
            .map(|_| (AtomicUsize::new(0), AtomicUsize::new(0)))
            .collect(),
    );
    let mut pollers = Vec::new();
    for i in 1..=INSTANCES {
        let (stop, counts) = (stop.clone(), counts.clone());
        pollers.push(tokio::spawn(async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("10.99.0.1:0".parse().unwrap()).unwrap();
            let mut c = h1_over(socket.connect(edge(i, 8080)).await.unwrap()).await;
            let mut got = Vec::new();
            for _ in 0..100_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let a = get_on(&mut c, "flip.example", "/").await;
                let pool = a.header("x-backend").is_some_and(|b| b != "legacy");
                got.push((Instant::now(), pool == to_pool));
                let (all, new) = &counts[i - 1];
                all.fetch_add(1, Ordering::SeqCst);
                if pool == to_pool {
                    new.fetch_add(1, Ordering::SeqCst);
                }
            }
            got
        }));
    }
    let every = |min: &dyn Fn(&(AtomicUsize, AtomicUsize)) -> bool| counts.iter().all(min);
    eventually("every poller answered", || {
        every(&|(all, _)| all.load(Ordering::SeqCst) > 0)
    })
    .await;
    f.replace("migration.toml", content);
    let written = Instant::now();
    eventually("every instance on the new state", || {
        every(&|(_, new)| new.load(Ordering::SeqCst) > 0)
    })
    .await;
    // Then 50 more answers each, all of which must be new.
    let marks: Vec<usize> = counts
        .iter()
        .map(|(all, _)| all.load(Ordering::SeqCst))
        .collect();
    eventually("50 answers more from each", || {
        counts
            .iter()
            .zip(&marks)
            .all(|((all, _), m)| all.load(Ordering::SeqCst) >= m + 50)
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut worst = Duration::ZERO;
    for (i, p) in pollers.into_iter().enumerate() {
        let got = p.await.unwrap();
        let first_new = got
            .iter()
            .position(|(_, new)| *new)
            .unwrap_or_else(|| panic!("instance {} never served the new state", i + 1));
        assert!(
            got[first_new..].iter().all(|(_, new)| *new),
            "instance {} answered from the old state after the new",
            i + 1
        );
        worst = worst.max(got[first_new].0.saturating_duration_since(written));
    }
    worst
}

/// Requests that reached a webserver or the legacy balancer from
/// instance `i` after `since`.
fn seen_from(webs: &[Arc<Backend>], legacy: &Backend, i: usize, since: Instant) -> usize {
    let from = std::net::IpAddr::from([10, 99, i as u8, 2]);
    webs.iter()
        .map(|w| w.seen())
        .chain(std::iter::once(legacy.seen()))
        .flatten()
        .filter(|s| s.peer.ip() == from && s.at > since)
        .count()
}

/// Visitors sending requests through the balancer, each on a new
/// connection, one at a time per visitor; bounded in count and time.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Result<Got, String>>>>,
}

impl Load {
    const CLIENTS: usize = 6;

    fn start(front: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..Self::CLIENTS)
            .map(|c| {
                let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
                tokio::spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let mut out = Vec::new();
                    for n in 0..20_000usize {
                        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                            break;
                        }
                        let visitor = [10, 99, 0, 10 + c as u8];
                        let host = format!("site{}.example", (n * 13 + c * 101) % HOSTS);
                        let r = match get_once(visitor, front, &host, "/slow?ms=20").await {
                            Ok(g) if g.status == 200 => {
                                answered.fetch_add(1, Ordering::SeqCst);
                                Ok(g)
                            }
                            Ok(g) => Err(format!("{host}: status {}", g.status)),
                            Err(e) => Err(format!("{host}: {e}")),
                        };
                        if let Err(e) = &r {
                            failed.lock().unwrap().push(e.clone());
                        }
                        out.push(r);
                    }
                    out
                })
            })
            .collect();
        Load {
            stop,
            answered,
            failed,
            tasks,
        }
    }

    fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    fn failures(&self) -> Vec<String> {
        self.failed.lock().unwrap().clone()
    }

    /// Waits until `n` requests were answered in all (at most 30 s).
    async fn until(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.answered() < n {
            assert!(
                Instant::now() < deadline,
                "the load stalled at {}",
                self.answered()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) -> Vec<Result<Got, String>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.unwrap());
        }
        all
    }
}
