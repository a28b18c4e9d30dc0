//! Upstreams that are down, slow, or reused.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_a_fast_502() {
    let dead = dead_addr();
    let folder = Folder::new(
        &config_toml(&[("web", vec![("dead", dead)])], None, ""),
        "s.example\tt\tweb\tf\n",
        "default = \"migrated\"\n",
    );
    let p = Proxy::start(&folder);
    let started = Instant::now();
    let a = get(p.addr, "s.example", "/").await;
    assert_eq!(a.status.as_u16(), 502);
    assert!(a.body.contains("502"));
    assert_eq!(a.header("content-type"), Some("text/html; charset=utf-8"));
    // connect = 1s in these configs: refused long before it.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// When the first server of a tenant's ring order refuses, the next one
/// serves; tenants whose first server is alive never notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_server_on_the_ring_takes_over() {
    let alive = Backend::start("alive").await;
    let dead = dead_addr();
    let tenants: String = (0..20)
        .map(|i| format!("s{i}.example\tt{i}\tweb\tf\n"))
        .collect();
    let folder = Folder::new(
        &config_toml(
            &[("web", vec![("alive", alive.addr), ("dead", dead)])],
            None,
            "",
        ),
        &tenants,
        "default = \"migrated\"\n",
    );
    let p = Proxy::start(&folder);
    let snap = p.server().snapshot().load_full();
    let mut firsts_dead = 0;
    for i in 0..20 {
        let host = format!("s{i}.example");
        if predictor::admin::explain::explain(&snap, &host).servers[0].id == "dead" {
            firsts_dead += 1;
        }
        let a = get(p.addr, &host, "/").await;
        assert_eq!(
            (a.status.as_u16(), a.body.as_str()),
            (200, "alive"),
            "{host}"
        );
    }
    assert!(
        firsts_dead > 0,
        "no tenant had the dead server first; the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_is_a_504() {
    let web = Backend::start("web").await;
    let folder = single_site(
        &web,
        "[timeouts]\nupstream_response = \"300ms\"\ndrain = \"1s\"\n",
    );
    let p = Proxy::start(&folder);
    assert_eq!(
        get(p.addr, "s.example", "/sleep?ms=3000")
            .await
            .status
            .as_u16(),
        504
    );
    assert_eq!(
        get(p.addr, "s.example", "/sleep?ms=10")
            .await
            .status
            .as_u16(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive() {
    let web = Backend::start("web").await;
    let folder = single_site(&web, "");
    let p = Proxy::start(&folder);
    for _ in 0..3 {
        let mut s = h1(p.addr).await;
        for _ in 0..50 {
            let req = http::Request::get("/")
                .header("host", "s.example")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            s.ready().await.unwrap();
            assert_eq!(read(s.send_request(req).await.unwrap()).await.body, "web");
        }
    }
    assert_eq!(web.seen().len(), 150);
    // Sequential requests: at most one upstream connection per worker.
    assert!(
        web.connections() <= 2,
        "{} upstream connections for 150 requests",
        web.connections()
    );
}

/// A burst wider than a few dozen requests keeps its upstream connections
/// for the next burst instead of reopening them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_reuse_their_upstream_connections() {
    let web = Backend::start("web").await;
    let folder = single_site(&web, "");
    let p = Proxy::start(&folder);
    // One HTTP/2 connection: all streams on one worker.
    let s = h2(p.addr).await;
    let burst = || {
        let s = s.clone();
        async move {
            let tasks: Vec<_> = (0..100)
                .map(|_| {
                    let mut s = s.clone();
                    tokio::spawn(async move {
                        let req = http::Request::get("http://s.example/sleep?ms=100")
                            .body(http_body_util::Full::new(bytes::Bytes::new()))
                            .unwrap();
                        s.ready().await.unwrap();
                        read(s.send_request(req).await.unwrap())
                            .await
                            .status
                            .as_u16()
                    })
                })
                .collect();
            for t in tasks {
                assert_eq!(tokio::time::timeout(WAIT, t).await.unwrap().unwrap(), 200);
            }
        }
    };
    burst().await;
    let after_first = web.connections();
    assert!(
        after_first >= 50,
        "the burst was not concurrent: {after_first} connections"
    );
    burst().await;
    assert_eq!(
        web.connections(),
        after_first,
        "the second burst opened new upstream connections"
    );
}

/// A webserver that takes requests and dies before answering them (it
/// reads a request head, then closes): how many connections it took.
async fn dying_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = taken.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                // Dies with the request in flight.
                drop(s);
            });
        }
    });
    (addr, taken)
}

/// Idempotent requests in flight on a webserver that dies go to the next
/// server of their list, within the pool's retry budget; a POST is not
/// sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_on_a_dying_server_go_to_the_next_one() {
    let alive = Backend::start("alive").await;
    let (dying, taken) = dying_server().await;
    let sites = 60;
    let tenants: String = (0..sites)
        .map(|i| format!("s{i}.example\tt{i}\tweb\tf\n"))
        .collect();
    // No ejection: every site whose first server is the dying one tries it.
    let folder = Folder::new(
        &config_toml(
            &[("web", vec![("alive", alive.addr), ("dying", dying)])],
            None,
            "[pools.web.eject]\nfailures = 0\n[admin]\naddress = \"127.0.0.1:0\"\n",
        ),
        &tenants,
        "default = \"migrated\"\n",
    );
    let p = Proxy::start(&folder);
    let took = || taken.load(std::sync::atomic::Ordering::SeqCst);
    // Which sites go to the dying server first, with the budget full.
    let mut first_dying = Vec::new();
    for i in 0..sites {
        let before = took();
        let a = get(p.addr, &format!("s{i}.example"), "/").await;
        if took() > before {
            first_dying.push(i);
        }
        if first_dying.len() <= 20 {
            assert_eq!(a.status.as_u16(), 200, "s{i}: {}", a.body);
            assert_eq!(a.body, "alive");
        }
    }
    assert!(first_dying.len() > 20, "{first_dying:?}");
    let m = prom::Exposition::parse(
        &get(p.server().admin_addr().unwrap(), "admin", "/metrics")
            .await
            .body,
    );
    let retries = |result| {
        m.value(
            "predictor_pool_retries_total",
            &[("pool", "web"), ("result", result)],
        )
    };
    // The burst of 20, plus one per ten requests placed since.
    let sent = retries("sent");
    assert!((20.0..=26.0).contains(&sent), "{sent}");
    assert!(retries("refused") >= 1.0, "a spent budget refuses");
    assert_eq!(
        sent + retries("refused"),
        first_dying.len() as f64,
        "every request the dying server took was retried or refused"
    );

    // Not idempotent: never sent twice.
    let s = first_dying[0];
    let mut c = h1(p.addr).await;
    let post = http::Request::post("/")
        .header("host", format!("s{s}.example"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x")))
        .unwrap();
    let a = read(c.send_request(post).await.unwrap()).await;
    assert_eq!(a.status.as_u16(), 502);
    assert!(alive.seen().iter().all(|r| r.method != http::Method::POST));
}
