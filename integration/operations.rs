//! Operations: `/metrics` after known traffic, parsed as Prometheus text
//! (and linted by `promtool`, and scraped by a real Prometheus), the
//! readiness endpoints through a drain, the access log, and the binary's
//! lifecycle: `SIGTERM` under load, the drain deadline, `SIGUSR1`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::haproxy::free_port;
use crate::support::netns::{Namespaces, ip};
use crate::support::process::Running;
use crate::support::prom::{self, Exposition};
use crate::support::relay::Relay;
use crate::support::*;

const TENANTS: &str = "gold.example\tt-gold\tgold\tf-new\n\
                       *.shop.gold.example\tt-gold\tgold\tf-new\n\
                       basic.example\tt-basic\tbasic\tf-new\n\
                       old.example\tt-old\tbasic\tf-old\n\
                       night.example\tt-night\tgold\tf-night\n";
const STATES: &str =
    "default = \"legacy\"\n[filers]\nf-new = \"migrated\"\nf-night = \"maintenance\"\n";

/// Pools (and tiers) `basic` and `gold`, a legacy balancer, an admin
/// listener on a free port, then `extra`.
fn folder(basic: SocketAddr, gold: SocketAddr, legacy: SocketAddr, extra: &str) -> Folder {
    let toml = config_toml(
        &[("basic", vec![("b1", basic)]), ("gold", vec![("g1", gold)])],
        Some(legacy),
        "[legacy.probe]\ninterval = \"200ms\"\ntimeout = \"200ms\"\nrise = 1\nfall = 2\n\
         [admin]\naddress = \"127.0.0.1:0\"\n",
    ) + extra;
    Folder::new(&toml, TENANTS, STATES)
}

/// One webserver `gold` (serving both pools), a legacy balancer, and
/// their folder with `extra`.
async fn one_site(extra: &str) -> (Backend, Backend, Folder) {
    let web = Backend::start("gold").await;
    let legacy = Backend::start("legacy").await;
    let f = folder(web.addr, web.addr, legacy.addr, extra);
    (web, legacy, f)
}

/// `[access_log]` to the file `path`.
fn log_to(path: &Path) -> String {
    format!("[access_log]\noutput = \"{}\"\n", path.display())
}

async fn legacy_up(p: &Proxy) {
    eventually("the legacy balancer up", || {
        prom::scrape(p.server()).get("predictor_legacy_up", &[]) == Some(1.0)
    })
    .await;
}

/// Known traffic on every route: 3 gold and 1 basic local, 2 legacy,
/// 1 maintenance, 1 unknown host (to legacy), 1 malformed host.
async fn known_traffic(addr: SocketAddr) {
    for _ in 0..3 {
        assert_eq!(get(addr, "gold.example", "/").await.body, "gold");
    }
    assert_eq!(get(addr, "basic.example", "/").await.body, "basic");
    for _ in 0..2 {
        assert_eq!(get(addr, "old.example", "/").await.body, "legacy");
    }
    assert_eq!(get(addr, "night.example", "/").await.status.as_u16(), 503);
    assert_eq!(get(addr, "new.example", "/").await.body, "legacy");
    let bad = raw(addr, b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n").await;
    assert_eq!(status_of(&bad), 400, "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_known_traffic_parse_by_name_and_labels() {
    let basic = Backend::start("basic").await;
    let gold = Backend::start("gold").await;
    let legacy = Backend::start("legacy").await;
    // The tunnel: 5 ms each way.
    let relay = Relay::start(legacy.addr, Duration::from_millis(5)).await;
    let f = folder(basic.addr, gold.addr, relay.addr, "");
    let p = Proxy::start(&f);
    legacy_up(&p).await;
    known_traffic(p.addr).await;

    let admin = p.server().admin_addr().unwrap();
    let text = get(admin, "admin", "/metrics").await.body;
    let m = Exposition::parse(&text);
    let requests = |route, tier, pool, class| {
        let labels = [
            ("route", route),
            ("tier", tier),
            ("pool", pool),
            ("class", class),
        ];
        m.value("predictor_requests_total", &labels)
    };
    assert_eq!(requests("local", "gold", "gold", "2xx"), 3.0);
    assert_eq!(requests("local", "basic", "basic", "2xx"), 1.0);
    assert_eq!(requests("legacy", "basic", "none", "2xx"), 2.0);
    assert_eq!(requests("maintenance", "gold", "none", "5xx"), 1.0);
    assert_eq!(requests("unknown", "none", "none", "2xx"), 1.0);
    assert_eq!(requests("rejected", "none", "none", "4xx"), 1.0);
    assert_eq!(m.value("predictor_requests_total", &[]), 9.0);

    // Histograms: one observation per request, by route; upstream ones by
    // pool, the tunnel's above 5 ms (10 ms round trip in the relay).
    let count = |name: &str, labels: &[(&str, &str)]| {
        let h = m.histogram(name, labels);
        assert_eq!(h.last().unwrap().less_than, f64::INFINITY);
        h.last().unwrap().count
    };
    let duration = "predictor_request_duration_seconds";
    for (route, n) in [
        ("local", 4.0),
        ("legacy", 2.0),
        ("maintenance", 1.0),
        ("unknown", 1.0),
        ("rejected", 1.0),
    ] {
        assert_eq!(count(duration, &[("route", route)]), n, "{route}");
    }
    let upstream = "predictor_upstream_duration_seconds";
    assert_eq!(
        count(upstream, &[("route", "local"), ("pool", "gold")]),
        3.0
    );
    assert_eq!(
        count(upstream, &[("route", "local"), ("pool", "basic")]),
        1.0
    );
    let tunnel = [("route", "legacy"), ("pool", "none")];
    assert_eq!(count(upstream, &tunnel), 3.0);
    assert_eq!(m.bucket(upstream, &tunnel, 0.005), 0.0);
    let bounds: Vec<f64> = m
        .histogram(upstream, &tunnel)
        .iter()
        .map(|b| b.less_than)
        .collect();
    for le in [0.0005, 0.001, 0.005, 0.01, 0.015, 0.02, 0.05] {
        assert!(bounds.contains(&le), "no bucket {le} in {bounds:?}");
    }

    // Gauges read at scrape time.
    let gauge = |name: &str, labels: &[(&str, &str)]| m.value(name, labels);
    // Hosts: exact and wildcard names alike (the wildcard is gold's),
    // adding up to the total /status gives.
    for (state, tenants, hosts) in [
        ("legacy", 1.0, 1.0),
        ("maintenance", 1.0, 1.0),
        ("migrated", 2.0, 3.0),
    ] {
        assert_eq!(gauge("predictor_tenants", &[("state", state)]), tenants);
        assert_eq!(gauge("predictor_hosts", &[("state", state)]), hosts);
    }
    let status: serde_json::Value =
        serde_json::from_str(&get(admin, "admin", "/status").await.body).unwrap();
    let hosts = &status["hosts"];
    assert_eq!(hosts["total"], 5, "{hosts}");
    assert_eq!(hosts["wildcards"], 1, "{hosts}");
    let sum: u64 = ["legacy", "maintenance", "migrated"]
        .iter()
        .map(|s| hosts[s].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 5, "{hosts}");
    assert_eq!(status["tenants"]["total"], 4);
    assert_eq!(gauge("predictor_pool_servers", &[("pool", "gold")]), 1.0);
    assert_eq!(gauge("predictor_pool_servers_up", &[("pool", "gold")]), 1.0);
    assert_eq!(gauge("predictor_pool_in_flight", &[("pool", "gold")]), 0.0);
    assert_eq!(gauge("predictor_server_up", &[("server", "g1")]), 1.0);
    assert_eq!(gauge("predictor_connections_max", &[]), 100_000.0);
    assert!(gauge("predictor_connections_open", &[]) <= 10.0);
    assert!(m.value("predictor_connections_accepted_total", &[]) >= 9.0);
    assert_eq!(gauge("predictor_draining", &[]), 0.0);
    assert_eq!(gauge("predictor_config_generation", &[]), 1.0);
    assert_eq!(gauge("predictor_config_last_reload_successful", &[]), 1.0);
    assert!(
        gauge(
            "predictor_config_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.7e9
    );
    assert_eq!(gauge("predictor_legacy_up", &[]), 1.0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(gauge("predictor_build_info", &[("version", version)]), 1.0);
    assert!(m.value("predictor_legacy_connections_opened_total", &[]) >= 1.0);

    // Every family has a help text; no label holds a host or tenant.
    for s in &m.0.samples {
        // A histogram's _sum and _count belong to its family.
        let family = ["_sum", "_count"]
            .iter()
            .find_map(|x| s.metric.strip_suffix(x).filter(|f| m.has_help(f)))
            .unwrap_or(&s.metric);
        assert!(m.has_help(family), "{} has no help", s.metric);
        let labels = format!("{:?}", s.labels);
        for name in ["example", "t-gold", "t-old"] {
            assert!(!labels.contains(name), "{}: {labels}", s.metric);
        }
    }

    // Prometheus's own linter accepts the exposition.
    if tool(
        "metrics_after_known_traffic",
        "promtool",
        &["--version"],
        "PREDICTOR_REQUIRE_PROMETHEUS",
    ) {
        let out = promtool(&["check", "metrics"], &text);
        assert!(out.status.success(), "{out:?}");
    }
}

/// Runs promtool with `stdin`.
fn promtool(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_running_predictor() {
    let test = "a_real_prometheus_scrapes_a_running_predictor";
    if !tool(
        test,
        "prometheus",
        &["--version"],
        "PREDICTOR_REQUIRE_PROMETHEUS",
    ) {
        return;
    }
    let basic = Backend::start("basic").await;
    let gold = Backend::start("gold").await;
    let legacy = Backend::start("legacy").await;
    let f = folder(basic.addr, gold.addr, legacy.addr, "");
    let p = Proxy::start(&f);
    legacy_up(&p).await;
    known_traffic(p.addr).await;

    let admin = p.server().admin_addr().unwrap();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: predictor\n    static_configs:\n      - targets: ['{admin}']\n"
        ),
    )
    .unwrap();
    let mut prometheus = tokio::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let api = SocketAddr::from(([127, 0, 0, 1], port));

    // Prometheus's API returns the series once it has scraped: the local
    // requests by tier, and its own view of the target.
    let query = |q: &str| {
        let q: String = q
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        format!("/api/v1/query?query={q}")
    };
    let ask = async |q: &str| -> Option<serde_json::Value> {
        let body = predictor::admin::fetch(api, &query(q)).await.ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{body}");
        Some(v["data"]["result"].clone())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        assert!(
            Instant::now() < deadline,
            "Prometheus returned no series in 60 s"
        );
        assert!(
            prometheus.try_wait().unwrap().is_none(),
            "prometheus exited"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let found = ask("sum by (tier) (predictor_requests_total{route=\"local\"})").await;
        match found.as_ref().and_then(|r| r.as_array()) {
            Some(series) if !series.is_empty() => break series.clone(),
            _ => continue,
        }
    };
    let by_tier = |tier: &str| {
        result
            .iter()
            .find(|s| s["metric"]["tier"] == tier)
            .and_then(|s| s["value"][1].as_str())
            .unwrap_or_else(|| panic!("no series for tier {tier}: {result:?}"))
            .to_string()
    };
    assert_eq!(by_tier("gold"), "3");
    assert_eq!(by_tier("basic"), "1");
    let up = ask("up{job=\"predictor\"}").await.unwrap();
    assert_eq!(up[0]["value"][1], "1", "{up}");
    let count = ask("predictor_request_duration_seconds_count{route=\"maintenance\"}")
        .await
        .unwrap();
    assert_eq!(count[0]["value"][1], "1", "{count}");
    let _ = prometheus.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_flips_to_503_while_draining_and_healthz_stays_200() {
    let (web, _legacy, f) = one_site("").await;
    let p = Proxy::start(&f);
    let admin = p.server().admin_addr().unwrap();
    let ready = async || get(admin, "admin", "/readyz").await;
    eventually_async("ready", async || ready().await.status == 200).await;
    assert!(ready().await.body.starts_with("ready generation=1"));

    // A slow request holds the drain open.
    let addr = p.addr;
    let slow = tokio::spawn(async move { get(addr, "gold.example", "/sleep?ms=1500").await });
    eventually("the slow request upstream", || web.seen().len() == 1).await;
    let server = std::thread::spawn(move || drop(p));

    eventually_async("not ready", async || ready().await.status == 503).await;
    let a = ready().await;
    assert!(a.body.contains("draining"), "{}", a.body);
    assert_eq!(get(admin, "admin", "/healthz").await.status, 200);
    let m = Exposition::parse(&get(admin, "admin", "/metrics").await.body);
    assert_eq!(m.value("predictor_draining", &[]), 1.0);
    let status: serde_json::Value =
        serde_json::from_str(&get(admin, "admin", "/status").await.body).unwrap();
    assert!(
        status["readiness"]
            .as_str()
            .unwrap()
            .starts_with("draining")
    );
    // New connections are refused: the listeners are closed.
    eventually_async("listeners closed", async || {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;

    // The request in progress finishes; then everything stops.
    let a = slow.await.unwrap();
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "gold"));
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    assert!(tokio::net::TcpStream::connect(admin).await.is_err());
}

/// One access log line, parsed.
fn log_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_line_carries_every_field_and_the_id_sent_upstream() {
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("access.log");
    let (web, _legacy, f) = one_site(&log_to(&path)).await;
    let p = Proxy::start(&f);
    legacy_up(&p).await;

    // From an untrusted client, a request id is replaced.
    let req = Request::post("/upload?x=1")
        .header("host", "Gold.Example")
        .header("user-agent", "ops-test/1")
        .header("x-request-id", "forged")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let a = send_from("127.0.0.9".parse().unwrap(), p.addr, req).await;
    assert_eq!(a.status, 200);
    let id = web.last().header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert_ne!(id, "forged");
    assert_eq!(get(p.addr, "night.example", "/").await.status, 503);

    eventually("two log lines", || log_lines(&path).len() == 2).await;
    let lines = log_lines(&path);
    // Found by content: the two requests may have been served by the two
    // workers, whose batches reach the file in either order.
    let l = lines.iter().find(|l| l["method"] == "POST").unwrap();
    assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
    assert_eq!(l["request_id"], id.as_str());
    assert!(
        l["client"].as_str().unwrap().starts_with("127.0.0.9:"),
        "{l}"
    );
    assert_eq!(l["method"], "POST");
    assert_eq!(l["target"], "/upload?x=1");
    assert_eq!(l["version"], "HTTP/1.1");
    assert_eq!(l["host"], "Gold.Example");
    assert_eq!(l["tenant"], "t-gold");
    assert_eq!(l["route"], "local");
    assert_eq!(l["tier"], "gold");
    assert_eq!(l["pool"], "gold");
    assert_eq!(l["server"], web.addr.to_string());
    assert_eq!(l["status"], 200);
    assert_eq!(l["bytes_in"], 5);
    assert_eq!(l["bytes_out"], a.body.len());
    assert!(l["duration_ms"].as_f64().unwrap() >= l["upstream_ms"].as_f64().unwrap());
    assert_eq!(l["user_agent"], "ops-test/1");
    assert_eq!(l["completed"], true);
    let m = lines.iter().find(|l| l["method"] == "GET").unwrap();
    assert_eq!(
        (m["route"].as_str(), m["status"].as_u64()),
        (Some("maintenance"), Some(503))
    );
    assert!(m["server"].is_null() && m["upstream_ms"].is_null(), "{m}");
    assert_eq!(m["tier"], "gold");
    let counted = prom::scrape(p.server());
    assert_eq!(
        counted.value("predictor_access_log_lines_total", &[("result", "written")]),
        2.0
    );

    // A trusted proxy's id goes on.
    let trusted = "[forward]\ntrusted_proxies = [\"127.0.0.3\"]\n";
    f.edit("predictor.toml", "[forward]\n", trusted, 1);
    reload(p.server(), f.path()).unwrap();
    let req = Request::get("/")
        .header("host", "gold.example")
        .header("x-request-id", "edge-42")
        .body(Full::new(Bytes::new()))
        .unwrap();
    send_from("127.0.0.3".parse().unwrap(), p.addr, req).await;
    assert_eq!(web.last().header("x-request-id"), Some("edge-42"));
    eventually("the trusted id logged", || {
        log_lines(&path)
            .iter()
            .any(|l| l["request_id"] == "edge-42")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_access_log_and_sigterm_writes_it_out() {
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("access.log");
    let (_web, _legacy, f) = one_site(&log_to(&path)).await;
    let mut run = Running::start(f.path());
    let addr = run.address("listening").await;

    assert_eq!(get(addr, "gold.example", "/first").await.status, 200);
    eventually("the first line", || log_lines(&path).len() == 1).await;
    // logrotate: move the file, then signal.
    let rotated = logs.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    run.signal("-USR1");
    run.wait_for("reopening the access log").await;
    // Until the writer has reopened, lines may still reach the moved file;
    // once it has, they reach the new one.
    eventually_async("a line in the new file", async || {
        get(addr, "gold.example", "/after").await;
        !log_lines(&path).is_empty()
    })
    .await;
    assert_eq!(log_lines(&rotated)[0]["target"], "/first");
    assert!(log_lines(&path).iter().all(|l| l["target"] == "/after"));

    // The last request's line is written before the process exits: the
    // stopping workers hand over what they hold. (Each worker's lines are
    // in order; two workers' batches may interleave, so `/last` need not be
    // the file's last line.)
    assert_eq!(get(addr, "gold.example", "/last").await.status, 200);
    run.signal("-TERM");
    assert!(run.exit(WAIT).await.success());
    let after = log_lines(&path);
    assert_eq!(after.iter().filter(|l| l["target"] == "/last").count(), 1);
}

/// `predictor run` on `f`, its listener and admin addresses.
async fn run_binary(f: &Folder) -> (Running, SocketAddr, SocketAddr) {
    let mut run = Running::start(f.path());
    let addr = run.address("listening").await;
    let admin = run.address("admin listening").await;
    (run, addr, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_request_taken_and_exits_0() {
    let web = Arc::new(Backend::start("gold").await);
    let legacy = Backend::start("legacy").await;
    let f = folder(web.addr, web.addr, legacy.addr, "");
    f.edit("predictor.toml", "drain = \"2s\"", "drain = \"20s\"", 1);
    let (mut run, addr, admin) = run_binary(&f).await;

    // Clients on keep-alive connections, each request 100 ms upstream;
    // bounded in count and time.
    const CLIENTS: usize = 6;
    const MAX_REQUESTS: usize = 400;
    let answered = Arc::new(AtomicUsize::new(0));
    let closed_idle = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (answered, closed_idle, stop) = (answered.clone(), closed_idle.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut sent = 0;
            'connections: while sent < MAX_REQUESTS && Instant::now() < deadline {
                // Refused: predictor has closed its listeners.
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    break;
                };
                let mut s = h1_over(stream).await;
                while sent < MAX_REQUESTS && !stop.load(Ordering::SeqCst) {
                    if s.ready().await.is_err() {
                        continue 'connections;
                    }
                    let req = Request::get("/sleep?ms=100")
                        .header("host", "gold.example")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    sent += 1;
                    match s.send_request(req).await {
                        Ok(resp) => {
                            let a = read(resp).await;
                            assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "gold"));
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        // A keep-alive connection closed by the drain just as
                        // a request went out: never read, safe to retry on
                        // a new connection (RFC 9112, 9.3.1). Counted, and
                        // checked below against what the webserver saw.
                        Err(e) if e.is_incomplete_message() || e.is_canceled() => {
                            closed_idle.fetch_add(1, Ordering::SeqCst);
                            continue 'connections;
                        }
                        Err(e) => panic!("request failed: {e:?}"),
                    }
                }
                break;
            }
        }));
    }
    eventually("requests flowing", || web.seen().len() >= 2 * CLIENTS).await;
    assert_eq!(get(admin, "admin", "/readyz").await.status, 200);
    let seen_at_term = web.seen().len();
    let answered_at_term = answered.load(Ordering::SeqCst);
    run.signal("-TERM");
    let status = run.exit(Duration::from_secs(25)).await;
    assert!(status.success(), "{status}");
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }

    // Every request the webserver was given was answered to its client:
    // those in flight at SIGTERM included.
    let seen = web.seen().len();
    let answered = answered.load(Ordering::SeqCst);
    assert_eq!(answered, seen, "requests taken but not answered");
    assert!(
        seen_at_term > answered_at_term,
        "no request was in flight at SIGTERM ({seen_at_term} seen, {answered_at_term} answered)"
    );
    // At most one unanswered send per client (its idle connection closed
    // under it), and none of them reached the webserver (checked above).
    assert!(closed_idle.load(Ordering::SeqCst) <= CLIENTS);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_ends_a_request_that_outlives_it_and_exits_0() {
    let (web, _legacy, f) = one_site("").await;
    f.edit("predictor.toml", "drain = \"2s\"", "drain = \"1s\"", 1);
    let (mut run, addr, admin) = run_binary(&f).await;
    let slow = tokio::spawn(async move {
        let mut s = h1(addr).await;
        let req = Request::get("/sleep?ms=8000")
            .header("host", "gold.example")
            .body(Full::new(Bytes::new()))
            .unwrap();
        s.send_request(req).await
    });
    eventually("the slow request upstream", || web.seen().len() == 1).await;
    let signalled = Instant::now();
    run.signal("-TERM");
    eventually_async("not ready", async || {
        get(admin, "admin", "/readyz").await.status == 503
    })
    .await;
    let status = run.exit(WAIT).await;
    let took = signalled.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_secs(1),
        "exited before the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(7),
        "waited for the request: {took:?}"
    );
    let cut = slow.await.unwrap();
    assert!(
        cut.is_err(),
        "the request outliving the deadline is cut: {cut:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_stream_lives_through_the_drain_until_its_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The drain deadline of config_toml: 2 s.
    let (_web, _legacy, f) = one_site("").await;
    let p = Proxy::start(&f);
    let admin = p.server().admin_addr().unwrap();
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: gold.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let echo = async |s: &mut tokio::net::TcpStream, msg: &[u8]| {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(WAIT, s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, msg);
    };
    echo(&mut s, b"before").await;

    let started = Instant::now();
    let server = std::thread::spawn(move || drop(p));
    eventually_async("draining", async || {
        get(admin, "admin", "/readyz").await.status == 503
    })
    .await;
    // Still passing bytes while the instance drains.
    echo(&mut s, b"during the drain").await;
    // Cut at the deadline: the stream ends, the instance exits.
    let mut rest = Vec::new();
    let cut = tokio::time::timeout(WAIT, s.read_to_end(&mut rest)).await;
    assert!(cut.is_ok(), "the stream outlived the deadline");
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "cut before the deadline: {took:?}"
    );
}

/// The network namespace of [`a_second_instance_takes_over_without_a_refused_connection`].
const UPGRADE_NETNS: &str = "PREDICTOR_UPGRADE_NETNS";

/// An upgrade as `docs/operations.md` describes it (start the new
/// instance beside the old one, then `SIGTERM` the old), under load,
/// with `net.ipv4.tcp_migrate_req = 1` as `deploy/sysctl.d` sets it: in a
/// network namespace of its own (the sysctl is per namespace), where this
/// test binary runs [`upgrade_inside_a_namespace`].
#[test]
fn a_second_instance_takes_over_without_a_refused_connection() {
    let test = "a_second_instance_takes_over_without_a_refused_connection";
    let Some(made) = Namespaces::make(test, &["upgrade"]) else {
        return;
    };
    let ns = &made.names[0];
    // (Linux 5.14 and later.)
    let migrate = "/proc/sys/net/ipv4/tcp_migrate_req";
    if !Path::new(migrate).exists() {
        skipped(test, &format!("this kernel has no {migrate}"));
        return;
    }
    ip(&[
        "netns",
        "exec",
        ns,
        "sh",
        "-c",
        &format!("echo 1 > {migrate}"),
    ]);
    let text = made.run_inside(
        ns,
        "operations::upgrade_inside_a_namespace",
        (UPGRADE_NETNS, ns),
    );
    if let Some(line) = text.lines().find(|l| l.starts_with("upgrade under load")) {
        eprintln!("{line}");
    }
}

/// Run by the test above inside its namespace (ignored otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run inside a network namespace by a_second_instance_takes_over_without_a_refused_connection"]
async fn upgrade_inside_a_namespace() {
    if std::env::var_os(UPGRADE_NETNS).is_none() {
        return;
    }
    let web = Arc::new(Backend::start("gold").await);
    let legacy = Backend::start("legacy").await;
    let f = folder(web.addr, web.addr, legacy.addr, "");
    let port = free_port();
    // The listener (the admin address stays on a port of its own).
    let listen = format!("127.0.0.1:{port}");
    f.edit("predictor.toml", "127.0.0.1:0", &listen, 1);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut old = Running::start(f.path());
    old.wait_for("admin listening").await;

    // A new connection per request (the case where a closing listener's
    // accept queue matters), from several clients; bounded in count and
    // time.
    const CLIENTS: usize = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (stop, answered) = (stop.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut failures = Vec::new();
            for _ in 0..20_000 {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                let stream = match tokio::net::TcpStream::connect(addr).await {
                    Ok(s) => s,
                    Err(e) => {
                        failures.push(format!("connect: {e}"));
                        continue;
                    }
                };
                let mut s = h1_over(stream).await;
                let req = Request::get("/")
                    .header("host", "gold.example")
                    .header("connection", "close")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match s.send_request(req).await {
                    Ok(resp) => {
                        let a = read(resp).await;
                        if a.status == 200 {
                            answered.fetch_add(1, Ordering::SeqCst);
                        } else {
                            failures.push(format!("status {}", a.status));
                        }
                    }
                    Err(e) => failures.push(format!("request: {e:?}")),
                }
            }
            failures
        }));
    }
    eventually("load on the old instance", || {
        answered.load(Ordering::SeqCst) > 200
    })
    .await;
    let mut new = Running::start(f.path());
    new.wait_for("admin listening").await;
    let before = answered.load(Ordering::SeqCst);
    eventually("load on both", || {
        answered.load(Ordering::SeqCst) > before + 200
    })
    .await;
    old.signal("-TERM");
    assert!(old.exit(WAIT).await.success());
    let after = answered.load(Ordering::SeqCst);
    eventually("load on the new instance alone", || {
        answered.load(Ordering::SeqCst) > after + 200
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    let total = answered.load(Ordering::SeqCst);
    eprintln!(
        "upgrade under load: {total} requests answered, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert_eq!(web.seen().len(), total);
    new.signal("-TERM");
    assert!(new.exit(WAIT).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_access_log_never_holds_a_request() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // The log goes to a pipe that nobody reads (a disk that stopped):
    // its writer blocks once the pipe's 64 KiB are full.
    let logs = tempfile::tempdir().unwrap();
    let fifo = logs.path().join("access.pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let (_web, _legacy, f) = one_site(&log_to(&fifo)).await;
    let p = Proxy::start(&f);
    let written = |p: &Proxy| {
        prom::scrape(p.server()).value("predictor_access_log_lines_total", &[("result", "written")])
    };

    // Far more lines than the pipe holds; every request is answered.
    const REQUESTS: usize = 2_000;
    let mut clients = Vec::new();
    for _ in 0..4 {
        let addr = p.addr;
        clients.push(tokio::spawn(async move {
            let mut s = h1(addr).await;
            for _ in 0..REQUESTS / 4 {
                assert_eq!(get_on(&mut s, "gold.example", "/").await.status, 200);
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let behind = written(&p);
    assert!(
        behind < (REQUESTS / 2) as f64,
        "{behind} lines written into a 64 KiB pipe"
    );

    // The disk comes back: every line arrives, in full.
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.iter().filter(|&&b| b == b'\n').count() < REQUESTS {
        assert!(Instant::now() < deadline, "the log did not catch up");
        let mut buf = [0u8; 65536];
        match reader.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    for line in got.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(v["status"], 200);
    }
    assert_eq!(written(&p), REQUESTS as f64);
}
