//! Isolation between tenants, end to end: a webserver of finite capacity
//! shared by a flooded site and its neighbour; limits by tier; a pool
//! overload that sheds the cheaper plan; `/top` naming the flooded site;
//! counts that come back to zero whatever happens to a request.

use std::time::Duration;

use crate::support::capacity::{Capacity, Load, Sample, count, quantile};
use crate::support::{Folder, Proxy, config_toml, eventually, get, metric};

/// One pool of one server, `flood.example` and `calm.example` two sites
/// of tier `web` on it; `extra` TOML inside `[pools.web]`'s reach (the
/// pool's keys) and after it.
fn folder(server: std::net::SocketAddr, pool_keys: &str, extra: &str) -> Folder {
    let toml = config_toml(&[("web", vec![("w", server)])], None, extra)
        .replace("[pools.web]\n", &format!("[pools.web]\n{pool_keys}"));
    Folder::new(
        &toml,
        "flood.example\tflood\tweb\tf\ncalm.example\tcalm\tweb\tf\n",
        "default = \"migrated\"\n",
    )
}

/// The webserver's service time: 20 ms rather than the 10 (the
/// same shape at half the request rate, so that a debug build on two
/// shared cores measures the queue, not CPU contention; the benchmark,
/// `benches/neighbour.sh`, runs the 10 ms case on the production build).
const SERVICE: Duration = Duration::from_millis(20);

/// The neighbour's latencies, the flood's answers and the most requests
/// the webserver held, with `clients` flooding.
fn neighbour_under_flood(
    p: &Proxy,
    web: &Capacity,
    clients: usize,
) -> (Vec<Sample>, Vec<Sample>, usize) {
    web.reset_max();
    let flood = Load::start(
        p.addr,
        "flood.example",
        clients,
        2_000,
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(300));
    let calm = Load::start(p.addr, "calm.example", 2, 60, Duration::from_secs(15)).join();
    let flood = flood.stop();
    (calm, flood, web.max_held())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_site_does_not_take_its_neighbour_down() {
    // The webserver serves 16 at a time, SERVICE each.
    let web = Capacity::start(16, SERVICE);
    // The ceiling set to the webserver's capacity, everything else at its
    // defaults.
    let port = crate::support::haproxy::free_port();
    let on = folder(
        web.addr,
        "max_in_flight = 16\n",
        &format!("[admin]\naddress = \"127.0.0.1:{port}\"\n"),
    );
    let p = Proxy::start(&on);
    let alone = tokio::task::spawn_blocking({
        let addr = p.addr;
        move || Load::start(addr, "calm.example", 2, 60, Duration::from_secs(15)).join()
    })
    .await
    .unwrap();
    assert_eq!(count(&alone, 200), alone.len());
    let p99_alone = quantile(&alone, 0.99);
    let bound = p99_alone.mul_f64(1.2) + SERVICE;

    // The neighbour's p99 under the flood, in up to three tries: the
    // whole test suite runs beside this test on two cores, and one
    // scheduling stall of another test is one of the two slowest of 120
    // samples. Every try must be free of errors and within the ceiling;
    // one must meet the bound (without isolation none comes near it:
    // below).
    let mut tries = Vec::new();
    let flood = loop {
        let (calm, flood, held) =
            tokio::task::block_in_place(|| neighbour_under_flood(&p, &web, 64));
        let p99 = quantile(&calm, 0.99);
        eprintln!(
            "isolation on: neighbour p50 {:?} p99 {p99:?} (alone {:?} / {p99_alone:?}, bound {bound:?}); flood {} answers, webserver held at most {held}",
            quantile(&calm, 0.5),
            quantile(&alone, 0.5),
            flood.len()
        );
        assert_eq!(count(&calm, 200), calm.len(), "the neighbour got an error");
        assert!(calm.len() >= 100, "{}", calm.len());
        assert!(
            held <= 16,
            "the webserver held {held} requests, over the ceiling of 16"
        );
        tries.push(p99);
        if p99 <= bound || tries.len() == 3 {
            break flood;
        }
    };
    let p99 = *tries.last().unwrap_or(&Duration::MAX);
    assert!(
        p99 <= bound,
        "neighbour p99 over {bound:?} in every try: {tries:?}"
    );
    assert!(
        count(&flood, 200) > 500,
        "the flood is served too, at the server's pace"
    );
    // The flood waited in the queue, the metrics say so.
    let m = crate::support::prom::scrape(p.server());
    assert!(m.value("predictor_queued_total", &[("pool", "web")]) > 100.0);
    // `/top` names the flooded site first.
    let admin = p.server().admin_addr().unwrap();
    let top = get(admin, "admin", "/top?window=5").await;
    let json: serde_json::Value = serde_json::from_str(&top.body).unwrap();
    assert_eq!(json["tenants"][0]["tenant"], "flood", "{}", top.body);
    assert!(
        json["tenants"][0]["queued_per_s"].as_f64().unwrap() > 0.0,
        "{}",
        top.body
    );
    let text = get(admin, "admin", "/top?format=text&by=queued&n=1").await;
    assert!(
        text.body
            .lines()
            .nth(2)
            .is_some_and(|l| l.starts_with("flood ")),
        "{}",
        text.body
    );
    // The same from the command line; `route` on the site says it waited.
    let dir = on.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_predictor"))
            .args([
                "top", "--once", "--by", "queued", "--window", "30s", "--config",
            ])
            .arg(&dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let cli = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{cli}");
    assert!(cli.starts_with("predictor top: last"), "{cli}");
    assert!(
        cli.lines().nth(2).is_some_and(|l| l.starts_with("flood ")),
        "{cli}"
    );
    let route = get(admin, "admin", "/route?host=flood.example").await.body;
    assert!(
        route.contains("limits:    concurrent 256, rate none"),
        "{route}"
    );
    assert!(route.contains("queued/s"), "{route}");
    assert!(route.contains("of 16 in flight"), "{route}");
    drop(p);

    // The same load with isolation off: the neighbour waits behind the
    // flood in the webserver's backlog (the test proves something).
    let off = folder(
        web.addr,
        "max_in_flight = 0\n",
        "[tiers.web.limits]\nconcurrent = 0\n",
    );
    let p = Proxy::start(&off);
    let (calm, _, held) = tokio::task::block_in_place(|| neighbour_under_flood(&p, &web, 64));
    let p99_off = quantile(&calm, 0.99);
    eprintln!(
        "isolation off: neighbour p50 {:?} p99 {p99_off:?}; webserver held at most {held}",
        quantile(&calm, 0.5)
    );
    assert!(held > 16, "{held}");
    assert!(
        p99_off > bound,
        "without isolation the neighbour's p99 {p99_off:?} stayed within {bound:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_over_its_rate_gets_429_and_its_neighbour_does_not() {
    let web = Capacity::start(64, Duration::from_millis(1));
    let f = folder(
        web.addr,
        "",
        "[tiers.web.limits]\nrate = 20\nburst = 5\n[access_log]\noutput = \"stdout\"\nenabled = false\n",
    );
    let p = Proxy::start(&f);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    let mut s = crate::support::h1(p.addr).await;
    for _ in 0..30 {
        s.ready().await.unwrap();
        let a = crate::support::get_on(&mut s, "flood.example", "/").await;
        if a.status == 429 {
            retry_after = a.header("retry-after").map(str::to_string);
            assert!(a.body.contains("429"), "{}", a.body);
        }
        statuses.push(a.status.as_u16());
    }
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    // The burst of 5, and what the rate refilled meanwhile.
    assert!((5..=10).contains(&ok), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 30 - ok);
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Its neighbour has its own bucket.
    assert_eq!(get(p.addr, "calm.example", "/").await.status, 200);
    assert_eq!(
        metric(
            p.server(),
            "predictor_limited_total{tier=\"web\",reason=\"rate\"}"
        ),
        (30 - ok) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn premium_survives_a_pool_overload_that_sheds_the_shared_plan() {
    // 4 at a time, 20 ms each: 200 requests per second for everyone.
    let web = Capacity::start(4, Duration::from_millis(20));
    let toml = format!(
        "tenants = \"tenants.tsv\"\nmigration = \"migration.toml\"\n[proxy]\nworkers = 2\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\n\
         [tiers.shared]\npool = \"web\"\n[tiers.shared.limits]\npriority = 0\n\
         [tiers.premium]\npool = \"web\"\ncost = 4\n[tiers.premium.limits]\npriority = 10\n\
         [pools.web]\nmax_in_flight = 4\nservers = [{{ id = \"w\", address = \"{}\" }}]\n\
         [pools.web.queue]\nmax = 16\ntimeout = \"2s\"\n",
        web.addr
    );
    let f = Folder::new(
        &toml,
        "cheap.example\tcheap\tshared\tf\npaid.example\tpaid\tpremium\tf\n",
        "default = \"migrated\"\n",
    );
    let p = Proxy::start(&f);
    let (paid, cheap, held) = tokio::task::block_in_place(|| {
        let cheap = Load::start(p.addr, "cheap.example", 48, 1_000, Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(300));
        let paid = Load::start(p.addr, "paid.example", 4, 40, Duration::from_secs(15)).join();
        (paid, cheap.stop(), web.max_held())
    });
    eprintln!(
        "premium: {} of {} ok, p99 {:?}; shared: {} ok, {} shed",
        count(&paid, 200),
        paid.len(),
        quantile(&paid, 0.99),
        count(&cheap, 200),
        count(&cheap, 503)
    );
    assert_eq!(count(&paid, 200), paid.len(), "premium lost requests");
    assert!(count(&cheap, 503) > 0, "the shared plan was not shed");
    assert!(held <= 4, "{held}");
    let m = crate::support::prom::scrape(p.server());
    let shed: f64 = ["queue_full", "evicted", "queue_timeout"]
        .iter()
        .map(|r| m.value("predictor_shed_total", &[("tier", "shared"), ("reason", r)]))
        .sum();
    assert_eq!(shed, count(&cheap, 503) as f64);
    for r in ["queue_full", "evicted", "queue_timeout"] {
        assert_eq!(
            m.value(
                "predictor_shed_total",
                &[("tier", "premium"), ("reason", r)]
            ),
            0.0
        );
    }
}

/// A site's count in flight, as `/route` shows it.
async fn in_flight_of(p: &Proxy, host: &str) -> u32 {
    let snap = p.server().snapshot().load();
    predictor::admin::explain::explain(&snap, host)
        .limits
        .map_or(u32::MAX, |l| l.in_flight)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_come_back_to_zero_whatever_becomes_of_a_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A webserver that reads the head, sends half a response and dies.
    let dying = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dying_addr = dying.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = dying.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
                .await;
        }
    });
    let slow = Capacity::start(64, Duration::from_millis(300));
    let toml = config_toml(
        &[
            ("dead", vec![("d", crate::support::dead_addr())]),
            ("dying", vec![("x", dying_addr)]),
            ("slow", vec![("s", slow.addr)]),
        ],
        None,
        "",
    );
    let f = Folder::new(
        &toml,
        "dead.example\tdead\tdead\tf\ndying.example\tdying\tdying\tf\nslow.example\tslow\tslow\tf\n",
        "default = \"migrated\"\n",
    );
    let p = Proxy::start(&f);
    // The upstream cannot be reached: 502.
    assert_eq!(get(p.addr, "dead.example", "/").await.status, 502);
    // The upstream dies mid-response.
    let raw = crate::support::raw(p.addr, b"GET / HTTP/1.1\r\nHost: dying.example\r\n\r\n").await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    // The client goes away mid-body, and while its request is upstream.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: slow.example\r\nContent-Length: 1000\r\n\r\nabc")
        .await
        .unwrap();
    let mut t = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    t.write_all(b"GET / HTTP/1.1\r\nHost: slow.example\r\n\r\n")
        .await
        .unwrap();
    // Both counted: the one mid-body and the one waiting upstream.
    crate::support::eventually_async("two in flight", async || {
        in_flight_of(&p, "slow.example").await == 2
    })
    .await;
    drop((s, t));
    for host in ["dead.example", "dying.example", "slow.example"] {
        eventually(host, || {
            let snap = p.server().snapshot().load();
            let e = predictor::admin::explain::explain(&snap, host);
            e.limits.is_some_and(|l| l.in_flight == 0) && e.servers.iter().all(|s| s.in_flight == 0)
        })
        .await;
    }
}
