//! Routing by host: exact, wildcard, unknown; each migration state.

use crate::support::*;

const TENANTS: &str = "shop.example\tt-shop\tshared\tf-moved\n\
    www.shop.example\tt-shop\tshared\tf-moved\n\
    *.apps.example\tt-apps\tpremium\tf-moved\n\
    old.example\tt-old\tshared\tf-old\n\
    tonight.example\tt-night\tshared\tf-night\n\
    pinned.example\tt-pinned\tshared\tf-moved\n";

const STATES: &str = "default = \"legacy\"\n[filers]\nf-moved = \"migrated\"\nf-night = \"maintenance\"\n[tenants]\nt-pinned = \"legacy\"\n";

struct World {
    shared: Backend,
    premium: Backend,
    legacy: Backend,
    folder: Folder,
}

async fn world(extra: &str) -> World {
    let shared = Backend::start("web-shared").await;
    let premium = Backend::start("web-premium").await;
    let legacy = Backend::start("legacy").await;
    let toml = config_toml(
        &[
            ("shared", vec![("s1", shared.addr)]),
            ("premium", vec![("p1", premium.addr)]),
        ],
        Some(legacy.addr),
        extra,
    );
    let folder = Folder::new(&toml, TENANTS, STATES);
    World {
        shared,
        premium,
        legacy,
        folder,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_wildcard_and_unknown_hosts() {
    let w = world("").await;
    let p = Proxy::start(&w.folder);

    let a = get(p.addr, "WWW.Shop.Example:8080", "/x?y=1").await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "web-shared"));
    let seen = w.shared.last();
    assert_eq!(seen.header("host"), Some("WWW.Shop.Example:8080"));
    assert_eq!(seen.header("x-tenant"), Some("t-shop"));
    assert_eq!(seen.uri, "/x?y=1");

    let a = get(p.addr, "deep.blog.apps.example", "/").await;
    assert_eq!(a.body, "web-premium", "the longest wildcard, premium tier");
    assert_eq!(w.premium.last().header("x-tenant"), Some("t-apps"));

    let a = get(p.addr, "nobody.example", "/").await;
    assert_eq!(a.body, "legacy", "unknown hosts go to the legacy balancer");
    let seen = w.legacy.last();
    assert_eq!(seen.header("host"), Some("nobody.example"));
    assert_eq!(
        seen.header("x-tenant"),
        None,
        "no tenant header towards legacy"
    );

    // The bare name under a wildcard is not covered by it.
    assert_eq!(get(p.addr, "apps.example", "/").await.body, "legacy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_migration_state() {
    let w = world("[maintenance]\nretry_after = \"120s\"\n").await;
    let p = Proxy::start(&w.folder);

    assert_eq!(get(p.addr, "old.example", "/").await.body, "legacy");
    assert_eq!(w.legacy.last().header("host"), Some("old.example"));
    assert_eq!(
        get(p.addr, "pinned.example", "/").await.body,
        "legacy",
        "a tenant override beats its filer"
    );

    let before = (
        w.shared.seen().len(),
        w.premium.seen().len(),
        w.legacy.seen().len(),
    );
    let a = get(p.addr, "tonight.example", "/checkout").await;
    assert_eq!(a.status.as_u16(), 503);
    assert_eq!(a.header("retry-after"), Some("120"));
    assert!(a.body.contains("being moved"), "{}", a.body);
    assert_eq!(
        (
            w.shared.seen().len(),
            w.premium.seen().len(),
            w.legacy.seen().len()
        ),
        before,
        "maintenance touches no backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_can_be_refused() {
    let w = world("[unknown_hosts]\naction = \"reject\"\n").await;
    let p = Proxy::start(&w.folder);
    let a = get(p.addr, "nobody.example", "/").await;
    assert_eq!(a.status.as_u16(), 421);
    assert!(w.legacy.seen().is_empty());
    drop(p);

    let w = world("[unknown_hosts]\naction = \"reject\"\nstatus = 404\n").await;
    let p = Proxy::start(&w.folder);
    assert_eq!(
        get(p.addr, "nobody.example", "/").await.status.as_u16(),
        404
    );
}

/// A request goes where `predictor route` says it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_land_where_route_says() {
    let webs = [
        Backend::start("w1").await,
        Backend::start("w2").await,
        Backend::start("w3").await,
    ];
    let servers: Vec<(&str, std::net::SocketAddr)> =
        webs.iter().map(|b| (b.name.as_str(), b.addr)).collect();
    let tenants: String = (0..30)
        .map(|i| format!("site{i}.example\tt{i}\tshared\tf1\n"))
        .collect();
    let folder = Folder::new(
        &config_toml(&[("shared", servers)], None, ""),
        &tenants,
        "default = \"migrated\"\n",
    );
    let p = Proxy::start(&folder);
    let snap = p.server().snapshot().load_full();
    let mut used = std::collections::HashSet::new();
    for i in 0..30 {
        let host = format!("site{i}.example");
        let e = predictor::admin::explain::explain(&snap, &host);
        let expected = &e.servers[0].id;
        for _ in 0..3 {
            assert_eq!(&get(p.addr, &host, "/").await.body, expected, "{host}");
        }
        used.insert(expected.clone());
    }
    assert_eq!(used.len(), 3, "30 tenants spread over all three servers");
}

/// A filer flipped from legacy to migrated applies to the next request on
/// a connection that is already open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_to_open_connections() {
    let w = world("").await;
    let p = Proxy::start(&w.folder);
    let mut conn = h1(p.addr).await;
    async fn ask(
        conn: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    ) -> Answer {
        conn.ready().await.unwrap();
        let req = http::Request::get("/")
            .header("host", "old.example")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        read(conn.send_request(req).await.unwrap()).await
    }
    assert_eq!(ask(&mut conn).await.body, "legacy");
    w.folder.write(
        "migration.toml",
        &STATES.replace(
            "f-night = \"maintenance\"",
            "f-night = \"maintenance\"\nf-old = \"migrated\"",
        ),
    );
    let generation = reload(p.server(), w.folder.path()).unwrap();
    assert_eq!(generation, 2);
    assert_eq!(ask(&mut conn).await.body, "web-shared");

    // A broken file is refused whole; the running snapshot keeps serving.
    w.folder.write(
        "migration.toml",
        "default = \"legacy\"\n[filers]\nf-old = \"gone\"\n",
    );
    assert!(reload(p.server(), w.folder.path()).is_err());
    assert_eq!(ask(&mut conn).await.body, "web-shared");
    assert_eq!(p.server().snapshot().load().generation, 2);
}
