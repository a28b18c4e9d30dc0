//! The legacy path against a real HAProxy as the legacy balancer, with its
//! own in-process backends: what it sees, loops, the tunnel's delay and
//! connection reuse, and the balancer dying and coming back.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::haproxy::{self, Haproxy};
use crate::support::relay::Relay;
use crate::support::*;

/// Tenants: `web.example` migrated, `old.example` and `loop.example` legacy.
const TENANTS: &str = "web.example\tt-web\tweb\tf-new\n\
                       old.example\tt-old\tweb\tf-old\n\
                       loop.example\tt-loop\tweb\tf-old\n";
const STATES: &str = "default = \"legacy\"\n[filers]\nf-new = \"migrated\"\n";

/// Fast probe settings for tests, plus `extra` keys of `[legacy]`.
fn legacy_keys(extra: &str) -> String {
    format!(
        "connect_timeout = \"1s\"\n{extra}\n\
         [legacy.probe]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 2\n"
    )
}

/// predictor with a local pool and `legacy` as its legacy balancer.
fn predictor(
    web: &Backend,
    legacy: SocketAddr,
    forward: &str,
    legacy_extra: &str,
) -> (Folder, Proxy) {
    let toml = config_toml(&[("web", vec![("w", web.addr)])], None, "")
        .replace("[forward]\n", &format!("[forward]\n{forward}"))
        + &format!("[legacy]\naddress = \"{legacy}\"\n")
        + &legacy_keys(legacy_extra);
    let folder = Folder::new(&toml, TENANTS, STATES);
    let proxy = Proxy::start(&folder);
    (folder, proxy)
}

/// Waits until a probe found the legacy balancer up.
async fn until_up(p: &Proxy) {
    let ok = metric(p.server(), "predictor_legacy_probes_total{result=\"ok\"}");
    eventually("a successful probe", || {
        metric(p.server(), "predictor_legacy_probes_total{result=\"ok\"}") > ok
            && p.server().tunnel().is_up()
    })
    .await;
}

/// HAProxy sending every host to `site`, and `loop.example` back to
/// `predictor`.
fn balancer_sections(site: SocketAddr, predictor: SocketAddr, bind_extra: &str) -> String {
    format!(
        "frontend fe\n  bind 127.0.0.1:{{port}}{bind_extra}\n  \
         use_backend back_to_predictor if {{ hdr(host) -i loop.example }}\n  \
         default_backend sites\n\
         backend sites\n  server s1 {site}\n\
         backend back_to_predictor\n  server p1 {predictor}\n"
    )
}

fn request(host: &str, target: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(target).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_sees_the_request_as_the_client_sent_it() {
    if !haproxy::available("haproxy_sees_the_request_as_the_client_sent_it") {
        return;
    }
    let (web, site) = (Backend::start("web").await, Backend::start("site").await);
    let port = haproxy::free_port();
    let legacy = SocketAddr::from(([127, 0, 0, 1], port));
    let (_f, p) = predictor(
        &web,
        legacy,
        "trusted_proxies = [\"127.0.0.3\"]\nforwarded = true\n",
        "",
    );
    let _h = Haproxy::start_on(port, &balancer_sections(site.addr, p.addr, ""));
    until_up(&p).await;
    let client: IpAddr = "127.0.0.2".parse().unwrap();

    // Host, target and other headers arrive unchanged; a spoofed
    // X-Forwarded-For from an untrusted client is replaced.
    let target = "/shop/caf%C3%A9/index.php?q=a%20b&x=%2F&empty=";
    let a = send_from(
        client,
        p.addr,
        request(
            "Old.Example:80",
            target,
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
                ("forwarded", "for=6.6.6.6"),
                ("X-Custom-Thing", "MiXeD  Value, with; stuff"),
            ],
        ),
    )
    .await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "site"));
    let seen = site.last();
    assert_eq!(seen.uri, target);
    assert_eq!(seen.header("host"), Some("Old.Example:80"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.2"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("forwarded"),
        Some("for=127.0.0.2;proto=http;host=\"Old.Example:80\"")
    );
    assert_eq!(seen.headers.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(
        seen.header("x-custom-thing"),
        Some("MiXeD  Value, with; stuff")
    );
    assert_eq!(seen.header("x-predictor-hop"), Some("predictor"));
    assert!(
        seen.header("x-tenant").is_none(),
        "the tenant header is for webservers"
    );

    // A trusted proxy's chain is kept and extended.
    let a = send_from(
        "127.0.0.3".parse().unwrap(),
        p.addr,
        request("old.example", "/", &[("x-forwarded-for", "198.51.100.9")]),
    )
    .await;
    assert_eq!(a.status.as_u16(), 200);
    assert_eq!(
        site.last().header("x-forwarded-for"),
        Some("198.51.100.9, 127.0.0.3")
    );

    // A migrated site never crosses the tunnel and carries no hop marker.
    let a = send_from(client, p.addr, request("web.example", "/", &[])).await;
    assert_eq!(a.body, "web");
    assert!(web.last().header("x-predictor-hop").is_none());
    let m = prom::scrape(p.server());
    let legacy = [("route", "legacy"), ("tier", "web"), ("pool", "none")];
    assert_eq!(m.value("predictor_requests_total", &legacy), 2.0);
    assert_eq!(
        m.value(
            "predictor_requests_total",
            &[("route", "local"), ("class", "2xx")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_through_the_legacy_balancer_ends_in_508_after_one_hop() {
    if !haproxy::available("a_loop_through_the_legacy_balancer_ends_in_508_after_one_hop") {
        return;
    }
    let (web, site) = (Backend::start("web").await, Backend::start("site").await);
    let port = haproxy::free_port();
    let (_f, p) = predictor(&web, SocketAddr::from(([127, 0, 0, 1], port)), "", "");
    let _h = Haproxy::start_on(port, &balancer_sections(site.addr, p.addr, ""));
    until_up(&p).await;

    let a = get(p.addr, "loop.example", "/").await;
    assert_eq!(a.status.as_u16(), 508, "{a:?}");
    assert!(a.body.contains("Loop Detected"));
    assert_eq!(metric(p.server(), "predictor_loops_refused_total"), 1.0);
    // First hop: forwarded once, answered 508 by the second; the second
    // hop refused it without forwarding. Nothing reached a webserver.
    assert_eq!(
        prom::scrape(p.server()).value(
            "predictor_requests_total",
            &[("route", "legacy"), ("class", "5xx")]
        ),
        2.0
    );
    assert!(site.seen().is_empty() && web.seen().is_empty());
}

/// Over the simulated tunnel (5 ms each way, a round trip per new
/// connection), steady keep-alive traffic reuses upstream connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_the_tunnel_connections_are_reused() {
    if !haproxy::available("across_the_tunnel_connections_are_reused") {
        return;
    }
    let one_way = Duration::from_millis(5);
    let (web, site) = (Backend::start("web").await, Backend::start("site").await);
    let h = Haproxy::start(&balancer_sections(site.addr, web.addr, ""));
    let relay = Relay::start(h.addr, one_way).await;
    let (_f, p) = predictor(&web, relay.addr, "", "");
    eventually("the first probe", || {
        metric(p.server(), "predictor_legacy_probes_total{result=\"ok\"}") >= 1.0
    })
    .await;
    let probes_now = || {
        metric(p.server(), "predictor_legacy_probes_total{result=\"ok\"}") as usize
            + metric(
                p.server(),
                "predictor_legacy_probes_total{result=\"failed\"}",
            ) as usize
    };
    let probes_before = relay.connections();
    let probes_at_start = probes_now();

    // 8 clients, 250 keep-alive requests each, bounded in time too:
    // through predictor; then, for comparison, straight into the tunnel and
    // through HAProxy as the front balancer (the reference).
    const CLIENTS: usize = 8;
    const EACH: usize = 250;
    let started = Instant::now();
    let took = load(p.addr, CLIENTS, EACH).await;
    let elapsed = started.elapsed();
    // Connections the relay saw during predictor's load, less the probes'.
    let at_relay =
        (relay.connections() - probes_before).saturating_sub(probes_now() - probes_at_start);
    let direct = load(relay.addr, CLIENTS, EACH / 5).await;
    let front = Haproxy::start(&format!(
        "frontend f\n  bind 127.0.0.1:{{port}}\n  option forwardfor\n  default_backend tunnel\n\
         backend tunnel\n  server t {}\n",
        relay.addr
    ));
    let (relay_before, probes_before_front) = (relay.connections(), probes_now());
    let via_haproxy = load(front.addr, CLIENTS, EACH).await;
    let haproxy_opened =
        (relay.connections() - relay_before).saturating_sub(probes_now() - probes_before_front);
    let requests = took.len();
    let median = took[requests / 2];
    let p99 = took[requests * 99 / 100];
    let direct_median = direct[direct.len() / 2];
    let opened = metric(p.server(), "predictor_legacy_connections_opened_total") as usize;
    let hmedian = via_haproxy[via_haproxy.len() / 2];
    let hp99 = via_haproxy[via_haproxy.len() * 99 / 100];
    eprintln!(
        "tunnel (RTT {:?}): {requests} requests in {elapsed:?}; latency median {median:?}, \
         p99 {p99:?}; straight into the tunnel median {direct_median:?}, so predictor adds \
         {:?}; connections opened {opened} ({:.2} % of requests; {at_relay} seen at the \
         relay, probes aside); HAProxy in front instead: median {hmedian:?}, p99 \
         {hp99:?}, about {haproxy_opened} connections opened",
        one_way * 2,
        median.saturating_sub(direct_median),
        opened as f64 * 100.0 / requests as f64,
    );
    // Each worker opens at most one connection per concurrent client.
    assert!(
        opened <= 2 * CLIENTS,
        "{opened} connections for {requests} requests"
    );
    assert!(
        (opened as f64) < requests as f64 * 0.01,
        "{opened} of {requests} requests opened a connection"
    );
    assert!(
        at_relay <= opened + 2,
        "{at_relay} connections at the relay, {opened} counted"
    );
    assert!(median >= one_way * 2, "the relay must delay: {median:?}");
    assert_eq!(
        metric(p.server(), "predictor_legacy_connections_reused_total") as usize,
        requests - opened
    );
}

/// `clients` keep-alive connections, `each` requests for a legacy site on
/// each; every request's latency, sorted.
async fn load(addr: SocketAddr, clients: usize, each: usize) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut conn = h1(addr).await;
            let mut took = Vec::with_capacity(each);
            for _ in 0..each {
                conn.ready().await.unwrap();
                let t = Instant::now();
                let r =
                    tokio::time::timeout(WAIT, conn.send_request(request("old.example", "/", &[])))
                        .await
                        .unwrap()
                        .unwrap();
                let a = read(r).await;
                assert_eq!(a.body, "site");
                took.push(t.elapsed());
            }
            took
        }));
    }
    let mut took = Vec::new();
    for t in tasks {
        took.extend(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    took.sort();
    took
}

/// The legacy balancer killed mid-load: requests fail fast while it is
/// down (none waits past the connect timeout) and succeed again once it is
/// back, without touching predictor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_legacy_balancer_fails_fast_and_recovery_is_noticed() {
    if !haproxy::available("a_dead_legacy_balancer_fails_fast_and_recovery_is_noticed") {
        return;
    }
    let (web, site) = (Backend::start("web").await, Backend::start("site").await);
    let mut h = Haproxy::start(&balancer_sections(site.addr, web.addr, ""));
    let (_f, p) = predictor(&web, h.addr, "", "");
    let addr = p.addr;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut log = Vec::new();
            // Bounded: at most 5,000 requests or until told to stop.
            for _ in 0..5_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let t = Instant::now();
                let a = get(addr, "old.example", "/").await;
                log.push((t, t.elapsed(), a.status.as_u16()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            log
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    h.kill();
    eventually("the tunnel marked down", || !p.server().tunnel().is_up()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.restart();
    let restarted = Instant::now();
    eventually("the tunnel back up", || p.server().tunnel().is_up()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut log = Vec::new();
    for t in tasks {
        log.extend(
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .unwrap()
                .unwrap(),
        );
    }

    let slowest = log.iter().map(|l| l.1).max().unwrap();
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?} (connect timeout 1s)"
    );
    for (_, _, status) in &log {
        assert!(matches!(status, 200 | 502), "status {status}");
    }
    let down: Vec<_> = log
        .iter()
        .filter(|l| l.0 > killed && l.0 < restarted)
        .collect();
    assert!(down.iter().any(|l| l.2 == 502), "no failure while down?");
    let fast = metric(p.server(), "predictor_legacy_fast_failures_total");
    assert!(fast >= 1.0, "the circuit never answered at once");
    let after: Vec<_> = log
        .iter()
        .filter(|l| l.0 > restarted + Duration::from_millis(300))
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|l| l.2 == 200),
        "not recovered: {after:?}"
    );
    let before: Vec<_> = log.iter().filter(|l| l.0 + l.1 < killed).collect();
    assert!(before.iter().all(|l| l.2 == 200));
    eprintln!(
        "killed/restarted: {} requests, {} answered 502 ({} at once by the circuit), slowest {slowest:?}",
        log.len(),
        log.iter().filter(|l| l.2 == 502).count(),
        fast
    );
}

/// `protocol = "h2c"`: one multiplexed connection per worker to a
/// balancer that speaks HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_to_the_legacy_balancer_multiplexes() {
    if !haproxy::available("h2c_to_the_legacy_balancer_multiplexes") {
        return;
    }
    let (web, site) = (Backend::start("web").await, Backend::start("site").await);
    let h = Haproxy::start(&balancer_sections(site.addr, web.addr, " proto h2"));
    let (_f, p) = predictor(&web, h.addr, "", "protocol = \"h2c\"");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            get(addr, "old.example", &format!("/page/{i}?x=1")).await
        }));
    }
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "site"));
    }
    let seen = site.last();
    assert_eq!(seen.header("host"), Some("old.example"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(seen.uri.starts_with("/page/"));
    // An HTTP/1.1 client's own fields reach the balancer over HTTP/2 (its
    // map built from the head), hop-by-hop ones and spoofs do not.
    let answer = raw(
        p.addr,
        b"GET /fields HTTP/1.1\r\nHost: old.example\r\nX-Client: Kept\r\n\
          Connection: keep-alive, X-Drop\r\nX-Drop: 1\r\nX-Forwarded-For: 6.6.6.6\r\n\
          Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let seen = site.last();
    assert_eq!(seen.uri, "/fields");
    assert_eq!(seen.header("x-client"), Some("Kept"));
    assert_eq!(seen.header("x-drop"), None);
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    let opened = metric(p.server(), "predictor_legacy_connections_opened_total");
    assert!(opened <= 2.0, "one connection per worker, got {opened}");
}

/// A balancer that takes no connection (its accept queue full, so SYNs
/// go unanswered, like a dead tunnel): requests wait at most the connect
/// timeout, connects in progress stay bounded, and once the failures take
/// the tunnel down, requests are answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswering_balancer_costs_at_most_the_connect_timeout() {
    let hole = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    hole.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    hole.listen(0).unwrap();
    let hole_addr = hole.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue: later SYNs are dropped.
    let mut held = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect_timeout(&hole_addr, Duration::from_millis(200)) {
        held.push(s);
        assert!(held.len() < 16, "the accept queue does not fill");
    }
    let web = Backend::start("web").await;
    let toml = config_toml(&[("web", vec![("w", web.addr)])], None, "")
        + &format!("[legacy]\naddress = \"{hole_addr}\"\n")
        + "connect_timeout = \"500ms\"\nmax_pending_connects = 2\n\
           [legacy.probe]\ninterval = \"10s\"\ntimeout = \"100ms\"\nfall = 2\n";
    let f = Folder::new(&toml, TENANTS, STATES);
    let p = Proxy::start(&f);

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            (
                get(addr, "old.example", "/").await.status.as_u16(),
                t.elapsed(),
            )
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, took) = t.await.unwrap();
        assert!(
            took < Duration::from_millis(1500),
            "a request took {took:?}"
        );
        statuses.push(status);
    }
    assert!(
        statuses.iter().all(|s| matches!(s, 502 | 503)),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|&&s| s == 503).count() >= 10,
        "at most 2 connects per worker at a time: the rest wait, then 503: {statuses:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!p.server().tunnel().is_up());

    // Down: answered at once (one trial per probe interval at most).
    let t = Instant::now();
    let a = get(p.addr, "old.example", "/").await;
    assert_eq!(a.status.as_u16(), 502);
    assert!(a.body.contains("previous datacenter"), "{}", a.body);
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert!(metric(p.server(), "predictor_legacy_fast_failures_total") >= 1.0);
    drop(held);
}

/// A legacy balancer whose first connection reads a request and closes
/// without a byte of answer (a keep-alive race, a crash): a bodiless
/// idempotent request is sent once more on a new connection; a POST is
/// not (it may have been processed) and gets 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_request_is_retried_when_its_connection_dies_unanswered() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let legacy = listener.local_addr().unwrap();
    let conns = std::sync::Arc::new(AtomicUsize::new(0));
    let count = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                loop {
                    let Ok(k) = s.read(&mut buf).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..k]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let is_probe = text.contains("predictor-probe");
                    // Connections 1 and 2 of real traffic die unanswered.
                    if !is_probe && (n == 0 || text.starts_with("POST")) {
                        return;
                    }
                    let body = if is_probe { "probe" } else { "legacy" };
                    let _ = s
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                    got.drain(..end + 4);
                }
            });
        }
    });
    let web = Backend::start("web").await;
    let toml = config_toml(&[("web", vec![("w", web.addr)])], None, "")
        + &format!("[legacy]\naddress = \"{legacy}\"\n")
        + "[legacy.probe]\ninterval = \"60s\"\n";
    let f = Folder::new(&toml, TENANTS, STATES);
    // The probe is the first connection; wait for it to be done.
    let p = Proxy::start(&f);
    eventually("the probe", || {
        metric(p.server(), "predictor_legacy_probes_total{result=\"ok\"}") >= 1.0
    })
    .await;
    conns.store(0, Ordering::SeqCst);

    let a = get(p.addr, "old.example", "/").await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "legacy"));
    assert_eq!(metric(p.server(), "predictor_legacy_retries_total"), 1.0);
    assert_eq!(conns.load(Ordering::SeqCst), 2);

    let mut c = h1(p.addr).await;
    let post = Request::post("/form")
        .header("host", "old.example")
        .body(Full::new(Bytes::from_static(b"order=1")))
        .unwrap();
    let a = read(c.send_request(post).await.unwrap()).await;
    assert_eq!(a.status.as_u16(), 502, "a POST is never sent twice");
    assert_eq!(metric(p.server(), "predictor_legacy_retries_total"), 1.0);
}

/// The admin listener serves the metrics of this path to Prometheus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_serves_metrics() {
    let web = Backend::start("web").await;
    let legacy = Backend::start("legacy").await;
    let toml = config_toml(&[("web", vec![("w", web.addr)])], Some(legacy.addr), "")
        + "[admin]\naddress = \"127.0.0.1:0\"\n";
    let f = Folder::new(&toml, TENANTS, STATES);
    let p = Proxy::start(&f);
    let admin = p.server().admin_addr().expect("an admin address");
    assert_eq!(get(p.addr, "old.example", "/").await.body, "legacy");

    let m = get(admin, "localhost", "/metrics").await;
    assert_eq!(m.status.as_u16(), 200);
    assert!(
        m.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let e = prom::Exposition::parse(&m.body);
    assert!(e.has_help("predictor_requests_total"));
    let legacy = [("route", "legacy"), ("class", "2xx")];
    assert_eq!(e.value("predictor_requests_total", &legacy), 1.0);
    assert_eq!(e.value("predictor_legacy_up", &[]), 1.0);
    let h = e.histogram(
        "predictor_upstream_duration_seconds",
        &[("route", "legacy")],
    );
    assert_eq!(h.last().map(|b| b.count), Some(1.0));
    assert_eq!(
        get(admin, "localhost", "/healthz").await.status.as_u16(),
        200
    );
    assert_eq!(get(admin, "localhost", "/nope").await.status.as_u16(), 404);
}
