//! Scaling out behind an L4 tier: the PROXY protocol on listeners (the
//! visitor's address from the balancer's header used everywhere, only
//! from listed sources), and a fleet of three instances behind a real
//! HAProxy in TCP mode, each in a network namespace of its own
//! ([`fleet`]).

mod fleet;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::backend::Backend;
use crate::support::{Proxy, eventually, metric, reload, single_site};

/// A PROXY v2 header for a TCP connection from `client` to `to`.
pub fn v2(client: &str, to: SocketAddr) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (client.parse::<SocketAddr>().unwrap(), to),
    )
    .build()
    .unwrap()
}

/// One `Connection: close` GET of `host` on a new connection made from
/// the local address `from`, `first` written before the request. The
/// answer's raw text; empty when the connection was closed without one.
async fn get_via(from: &str, addr: SocketAddr, first: &[u8], host: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let mut bytes = first.to_vec();
    bytes.extend_from_slice(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    // A refused connection may be closed (reset) while this writes.
    let _ = s.write_all(&bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status(raw: &str) -> u16 {
    raw.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A listener with `proxy_protocol = ["127.0.0.2"]`: the balancer at
/// 127.0.0.2 speaks for its visitors (v1 and v2); the address it names is
/// the one the webserver gets in `X-Forwarded-For`, the access log
/// writes, and the per-client rate limit counts. A listed source without
/// a header, and anyone else with one, are closed and counted; a client
/// coming directly is served with its own address. The sources are
/// reloaded live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_visitors_address_from_a_listed_balancer_is_used_everywhere() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    let web = Backend::start("web").await;
    let f = single_site(
        &web,
        &format!(
            "[tiers.web.limits]\nclient_rate = 1\nclient_burst = 1\n\
             [access_log]\noutput = \"{}\"\n",
            log.display()
        ),
    );
    let listen = "address = \"127.0.0.1:0\"\n";
    f.edit(
        "predictor.toml",
        listen,
        &format!("{listen}proxy_protocol = [\"127.0.0.2\"]\nproxy_protocol_timeout = \"300ms\"\n"),
        1,
    );
    let p = Proxy::start(&f);
    let to = p.addr;

    // v2 and v1, each visitor its own client.
    let a = get_via("127.0.0.2", to, &v2("192.0.2.7:40000", to), "s.example").await;
    assert_eq!(status(&a), 200, "{a}");
    assert_eq!(web.last().header("x-forwarded-for"), Some("192.0.2.7"));
    let line = format!("PROXY TCP6 2001:db8::9 ::1 40001 {}\r\n", to.port());
    let a = get_via("127.0.0.2", to, line.as_bytes(), "s.example").await;
    assert_eq!(status(&a), 200, "{a}");
    assert_eq!(web.last().header("x-forwarded-for"), Some("2001:db8::9"));

    // The per-client limit (1/s, burst 1) counts the visitors, not the
    // balancer they all come through: 192.0.2.7 is at its second request.
    let a = get_via("127.0.0.2", to, &v2("192.0.2.7:40002", to), "s.example").await;
    assert_eq!(status(&a), 429, "{a}");
    let a = get_via("127.0.0.2", to, &v2("192.0.2.8:40003", to), "s.example").await;
    assert_eq!(status(&a), 200, "{a}");
    assert_eq!(web.last().header("x-forwarded-for"), Some("192.0.2.8"));

    // A health check's LOCAL header: the connection's own address.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let a = get_via("127.0.0.2", to, local, "s.example").await;
    assert_eq!(status(&a), 200, "{a}");
    assert_eq!(web.last().header("x-forwarded-for"), Some("127.0.0.2"));

    // Refused: the balancer without a header; a visitor claiming an
    // address; a header never finished. Served: a visitor coming direct.
    let seen = web.seen().len();
    assert_eq!(get_via("127.0.0.2", to, b"", "s.example").await, "");
    let forged = v2("203.0.113.1:1", to);
    assert_eq!(get_via("127.0.0.3", to, &forged, "s.example").await, "");
    let cut = &v2("192.0.2.9:1", to)[..20];
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = socket.connect(to).await.unwrap();
    s.write_all(cut).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok() && out.is_empty(), "closed at the timeout");
    assert_eq!(
        web.seen().len(),
        seen,
        "nothing refused reached the webserver"
    );
    let a = get_via("127.0.0.4", to, b"", "s.example").await;
    assert_eq!(status(&a), 200, "{a}");
    assert_eq!(web.last().header("x-forwarded-for"), Some("127.0.0.4"));

    let m = |r: &str| {
        metric(
            p.server(),
            &format!("predictor_proxy_headers_total{{result=\"{r}\"}}"),
        )
    };
    eventually("the headers counted", || {
        (
            m("ok"),
            m("local"),
            m("missing"),
            m("unexpected"),
            m("timeout"),
            m("direct"),
        ) == (4.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    })
    .await;

    // The access log writes the visitors.
    let clients = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let client = v["client"].as_str().unwrap();
                client.parse::<SocketAddr>().unwrap().ip().to_string()
            })
            .collect()
    };
    eventually("six log lines", || clients().len() == 6).await;
    let mut logged = clients();
    logged.sort();
    assert_eq!(
        logged,
        [
            "127.0.0.2",
            "127.0.0.4",
            "192.0.2.7",
            "192.0.2.7",
            "192.0.2.8",
            "2001:db8::9",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
        "{logged:?}"
    );

    // The sources are reloaded live: now 127.0.0.3 is the balancer.
    f.edit(
        "predictor.toml",
        "proxy_protocol = [\"127.0.0.2\"]",
        "proxy_protocol = [\"127.0.0.3\"]",
        1,
    );
    reload(p.server(), f.path()).unwrap();
    let a = get_via("127.0.0.3", to, &v2("198.51.100.5:1", to), "s.example").await;
    assert_eq!(status(&a), 200, "{a}");
    assert_eq!(web.last().header("x-forwarded-for"), Some("198.51.100.5"));
    assert_eq!(
        get_via("127.0.0.2", to, &v2("192.0.2.7:1", to), "s.example").await,
        ""
    );

    // A bad list is refused at its line and the serving one stays.
    f.edit(
        "predictor.toml",
        "proxy_protocol = [\"127.0.0.3\"]",
        "proxy_protocol = [\"127.0.0.3\", \"the new balancer\"]",
        1,
    );
    assert!(matches!(
        reload(p.server(), f.path()),
        Err(predictor::reload::Outcome::Refused)
    ));
    let e = predictor::config::Config::load(f.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("predictor.toml:7: listen[0].proxy_protocol[1]"),
        "{e}"
    );
    let a = get_via("127.0.0.3", to, &v2("198.51.100.6:1", to), "s.example").await;
    assert_eq!(status(&a), 200, "{a}");
    assert_eq!(web.last().header("x-forwarded-for"), Some("198.51.100.6"));
}

/// The same on an `h2c` listener and on an `auto` one spoken to in
/// HTTP/2: the header first, then the preface; every stream of the
/// connection carries the visitor's address.
#[tokio::test]
async fn http2_connections_behind_the_balancer_carry_the_visitor() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let web = Backend::start("web").await;
    let f = single_site(&web, "");
    let listen = "address = \"127.0.0.1:0\"\n";
    f.edit(
        "predictor.toml",
        listen,
        &format!(
            "{listen}proxy_protocol = [\"127.0.0.2\"]\n\
             [[listen]]\naddress = \"127.0.0.5:0\"\nprotocol = \"h2c\"\nproxy_protocol = [\"127.0.0.2\"]\n"
        ),
        1,
    );
    let p = Proxy::start(&f);
    let addrs = p.server().local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    for (n, to) in addrs.into_iter().enumerate() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = socket.connect(to).await.unwrap();
        let visitor = format!("192.0.2.{}:4000", 10 + n);
        s.write_all(&v2(&visitor, to)).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
                .await
                .unwrap();
        tokio::spawn(conn);
        for _ in 0..2 {
            let req = http::Request::get("http://s.example/")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let a = crate::support::read(sender.send_request(req).await.unwrap()).await;
            assert_eq!(a.status, 200, "{a:?}");
            let ip = visitor.split(':').next().unwrap();
            assert_eq!(web.last().header("x-forwarded-for"), Some(ip));
        }
    }
}
