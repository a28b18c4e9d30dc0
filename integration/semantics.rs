//! What an intermediary must and must not do (RFC 9110, 9112, 9113).

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::io::AsyncWriteExt;

use crate::support::*;

const TENANTS: &str = "a.example\tta\tweb\tf1\nb.example\ttb\tweb2\tf1\n";

async fn setup(extra: &str) -> (Backend, Backend, Backend, Folder) {
    let a = Backend::start("web-a").await;
    let b = Backend::start("web-b").await;
    let legacy = Backend::start("legacy").await;
    let toml = config_toml(
        &[("web", vec![("a", a.addr)]), ("web2", vec![("b", b.addr)])],
        Some(legacy.addr),
        extra,
    );
    let folder = Folder::new(&toml, TENANTS, "default = \"migrated\"\n");
    (a, b, legacy, folder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_and_spoofs_replaced() {
    let (a, _b, _l, folder) = setup("").await;
    let p = Proxy::start(&folder);
    let mut s = h1(p.addr).await;
    let req = Request::get("/")
        .header("host", "a.example")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("via", "1.1 cdn")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = read(s.send_request(req).await.unwrap()).await;
    let seen = a.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-host"), Some("a.example"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    let via: Vec<_> = seen
        .headers
        .get_all("via")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(via, ["1.1 cdn", "1.1 predictor"]);
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(answer.header("via"), Some("1.1 predictor"));
    assert_eq!(
        answer.header("keep-alive"),
        None,
        "the backend's hop-by-hop header was stripped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_connection_listed_headers_are_dropped() {
    let (a, _b, _l, folder) = setup("").await;
    let p = Proxy::start(&folder);
    let r = raw(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive, X-Drop, Upgrade, HTTP2-Settings\r\n\
          X-Drop: secret\r\nKeep-Alive: timeout=9\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\
          TE: trailers\r\nProxy-Connection: keep-alive\r\nX-Keep: yes\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(!r.contains("101"), "h2c upgrade was not performed");
    let seen = a.last();
    for gone in [
        "x-drop",
        "keep-alive",
        "upgrade",
        "http2-settings",
        "te",
        "proxy-connection",
    ] {
        assert!(seen.header(gone).is_none(), "{gone} reached the backend");
    }
    assert_eq!(seen.header("x-keep"), Some("yes"));
    assert_ne!(seen.header("connection"), Some("upgrade"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_authority_routes_and_is_sent() {
    let (a, b, _l, folder) = setup("").await;
    let p = Proxy::start(&folder);
    let r = raw(
        p.addr,
        b"GET http://b.example/x?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n",
    )
    .await;
    assert!(r.ends_with("web-b"), "{r}");
    let seen = b.last();
    assert_eq!(seen.header("host"), Some("b.example"));
    assert_eq!(seen.uri, "/x?q=1", "origin-form towards the webserver");
    assert_eq!(seen.method, http::Method::GET);
    assert!(a.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused() {
    let (a, _b, legacy, folder) = setup("").await;
    let p = Proxy::start(&folder);
    let cases: &[(&[u8], u16, &str)] = &[
        (b"GET / HTTP/1.1\r\nHost: bad_host!.example\r\n\r\n", 400, "bad character"),
        (b"GET / HTTP/1.1\r\nHost: a..example\r\n\r\n", 400, "empty label"),
        (b"GET / HTTP/1.1\r\nHost: a.example:99999\r\n\r\n", 400, "bad port"),
        (b"GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n", 400, "userinfo"),
        (b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", 400, "two Host headers"),
        (b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n", 400, "two equal Host headers"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "no Host"),
        (
            b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "Content-Length then Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            400,
            "Transfer-Encoding then Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            400,
            "two different Content-Length",
        ),
        (b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 405, "CONNECT"),
    ];
    for (req, status, what) in cases {
        let r = raw(p.addr, req).await;
        assert_eq!(status_of(&r), *status, "{what}: {r}");
    }
    assert!(
        a.seen().is_empty(),
        "nothing malformed was forwarded: {:?}",
        a.seen()
    );
    assert!(legacy.seen().is_empty());

    // Conflicting framing also closes the connection.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s).await;
    assert!(r.to_ascii_lowercase().contains("connection: close"), "{r}");

    // Even an identical repeated Content-Length is refused (RFC 9112 6.3
    // lets a recipient take it as one; a strict intermediary does not, so
    // that no server behind it can read it another way).
    let r = raw(p.addr, b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello").await;
    assert_eq!(status_of(&r), 400, "{r}");

    // A head beyond the limit: 431.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a.example\r\nX-Big: {}\r\n\r\n",
        "x".repeat(70_000)
    );
    assert_eq!(status_of(&raw(p.addr, big.as_bytes()).await), 431);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_without_host_is_an_unknown_host() {
    let (_a, _b, legacy, folder) = setup("").await;
    let p = Proxy::start(&folder);
    let r = raw(p.addr, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.ends_with("legacy"), "{r}");
    assert_eq!(legacy.last().header("host"), Some(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge() {
    let (a, b, _l, folder) = setup("").await;
    let p = Proxy::start(&folder);
    let mut s = h2(p.addr).await;
    let req = Request::get("http://a.example/h2?x=1")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = read(s.send_request(req).await.unwrap()).await;
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, "web-a")
    );
    let seen = a.last();
    assert_eq!(seen.header("host"), Some("a.example"));
    assert_eq!(seen.uri, "/h2?x=1");
    assert_eq!(seen.header("via"), Some("2.0 predictor"));
    assert_eq!(
        seen.header("cookie"),
        Some("a=1; b=2"),
        "cookies joined for HTTP/1.1"
    );
    assert_eq!(seen.version, http::Version::HTTP_11);

    // :authority and a Host header that disagree: refused.
    let req = Request::get("http://a.example/")
        .header("host", "b.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    s.ready().await.unwrap();
    let answer = read(s.send_request(req).await.unwrap()).await;
    assert_eq!(answer.status.as_u16(), 400);
    assert!(b.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_get_408_and_idle_connections_close() {
    let (_a, _b, _l, folder) =
        setup("[timeouts]\nrequest_header = \"500ms\"\nclient_idle = \"700ms\"\ndrain = \"1s\"\n")
            .await;
    let p = Proxy::start(&folder);
    // Slowloris: a head that never ends.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.exa").await.unwrap();
    let r = read_response(&mut s).await;
    assert_eq!(status_of(&r), 408, "{r}");

    // An idle kept-alive connection is closed by the server.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_response(&mut s).await), 200);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut rest),
    )
    .await;
    assert!(closed.is_ok(), "the idle connection was not closed");
    assert!(rest.is_empty());
}

/// A client whose chunked body is malformed gets 400 and its connection
/// closed; the request counts as a client error, and nothing counts
/// against the webserver that was receiving it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_request_body_is_the_clients_error() {
    // One failure ejects: a body blamed on the server would show at once.
    let (_a, _b, _l, folder) = setup("[pools.web.eject]\nfailures = 1\n").await;
    let p = Proxy::start(&folder);
    for body in ["zz\r\n", "5\r\nhello\r\nxyz"] {
        let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        let head = "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n";
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body.as_bytes()).await.unwrap();
        if body.ends_with("xyz") {
            // A client that gives up mid-body.
            s.shutdown().await.unwrap();
        }
        let r = read_response(&mut s).await;
        if !r.is_empty() {
            assert_eq!(status_of(&r), 400, "{body:?}: {r}");
            assert!(r.to_ascii_lowercase().contains("connection: close"), "{r}");
        }
    }
    let m = prom::scrape(p.server());
    let class = |c: &str| {
        m.get(
            "predictor_requests_total",
            &[("route", "local"), ("pool", "web"), ("class", c)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(class("5xx"), 0.0, "not the server's fault");
    assert!(class("4xx") >= 1.0);
    let snap = p.server().snapshot().load_full();
    let health = snap
        .live
        .pool(0)
        .server(0)
        .health(predictor::health::now_ms());
    assert_eq!(
        (health.admission, health.ejections),
        (predictor::placement::choose::Admission::Up, 0),
        "the webserver is not ejected: {health:?}"
    );
    // And it still serves.
    assert_eq!(get(p.addr, "a.example", "/").await.status.as_u16(), 200);
}
