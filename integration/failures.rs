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
        if predictor::routing::explain::explain(&snap, &host).servers[0].id == "dead" {
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
