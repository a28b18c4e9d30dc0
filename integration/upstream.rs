//! The upstream side of predictor's own HTTP/1.1: each framing a webserver
//! may answer with, read exactly; each response a strict intermediary must
//! refuse, refused (502, its connection closed); request bodies framed on
//! the way out; the pool's reuse of a connection only when it is clean.
//! The webserver is a raw socket that writes scripted bytes.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::scripted::{Reply, Scripted};
use crate::support::*;

fn site(up: &Scripted) -> Folder {
    Folder::new(
        &config_toml(&[("web", vec![("w", up.addr)])], None, ""),
        "s.example\tt\tweb\tf\n",
        "default = \"migrated\"\n",
    )
}

/// The path of a raw request head.
fn path(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

/// `GET path` on one client connection, its body read whole (an error if
/// it breaks).
async fn fetch(
    s: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
) -> Result<(u16, http::HeaderMap, Bytes), hyper::Error> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "s.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    tokio::time::timeout(WAIT, s.ready()).await.unwrap()?;
    let r = tokio::time::timeout(WAIT, s.send_request(req))
        .await
        .unwrap()?;
    let (parts, body) = r.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .unwrap()?
        .to_bytes();
    Ok((parts.status.as_u16(), parts.headers, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_framing_is_read_exactly() {
    let up = Scripted::start(|head| match path(head) {
        "/length" => Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        "/chunked" => Reply::keep(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             3;ext=1\r\nabc\r\n0000000004\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n",
        ),
        "/head" => Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"),
        "/no-content" => Reply::keep("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"),
        "/not-modified" => Reply::keep("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"),
        "/interim" => Reply::keep(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        "/close" => Reply::close("HTTP/1.1 200 OK\r\n\r\nuntil the end"),
        "/http10" => Reply::close("HTTP/1.0 200 OK\r\n\r\nold"),
        _ => Reply::close("HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"),
    })
    .await;
    let f = site(&up);
    let p = Proxy::start(&f);
    let mut c = h1(p.addr).await;
    let (s, _, b) = fetch(&mut c, "GET", "/length").await.unwrap();
    assert_eq!((s, &b[..]), (200, &b"hello"[..]));
    let (s, h, b) = fetch(&mut c, "GET", "/chunked").await.unwrap();
    assert_eq!((s, &b[..]), (200, &b"abcdefg"[..]));
    assert!(h.get("transfer-encoding").is_some_and(|v| v == "chunked"));
    let (s, h, b) = fetch(&mut c, "HEAD", "/head").await.unwrap();
    assert_eq!((s, b.len()), (200, 0));
    assert_eq!(h["content-length"], "50");
    let (s, _, b) = fetch(&mut c, "GET", "/no-content").await.unwrap();
    assert_eq!((s, b.len()), (204, 0));
    let (s, _, b) = fetch(&mut c, "GET", "/not-modified").await.unwrap();
    assert_eq!((s, b.len()), (304, 0));
    let (s, _, b) = fetch(&mut c, "GET", "/interim").await.unwrap();
    assert_eq!((s, &b[..]), (200, &b"ok"[..]));
    // All of these kept one upstream connection: each was framed exactly.
    assert_eq!(up.connections(), 1);
    let (s, _, b) = fetch(&mut c, "GET", "/close").await.unwrap();
    assert_eq!((s, &b[..]), (200, &b"until the end"[..]));
    let (s, _, b) = fetch(&mut c, "GET", "/http10").await.unwrap();
    assert_eq!((s, &b[..]), (200, &b"old"[..]));
    // A close-delimited response's connection is not reused.
    assert_eq!(up.connections(), 2);
    let (s, _, _) = fetch(&mut c, "GET", "/length").await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(up.connections(), 3);
}

/// Responses that could desynchronise the connection (response
/// smuggling): the client gets 502, the connection is closed, and the next
/// request goes on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_responses_are_502_and_their_connection_closed() {
    let bad: &[(&str, &str)] = &[
        (
            "/length-and-chunked",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "/two-lengths",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        ),
        (
            "/length-list",
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
        ),
        ("/plus", "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc"),
        (
            "/overflow",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ),
        (
            "/gzip-chunked",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "/http10-chunked",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "/obs-fold",
            "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
        ),
        ("/bare-lf", "HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
        (
            "/nul",
            "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "/unasked-upgrade",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        ),
        ("/garbage", "SMTP ready\r\n\r\n"),
    ];
    let table: Vec<(String, String)> = bad
        .iter()
        .map(|(p, r)| (p.to_string(), r.to_string()))
        .collect();
    let up = Scripted::start(move |head| {
        let p = path(head);
        match table.iter().find(|(path, _)| path == p) {
            Some((_, r)) => Reply::keep(r.clone()),
            None => Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        }
    })
    .await;
    let f = site(&up);
    let p = Proxy::start(&f);
    let mut c = h1(p.addr).await;
    for (i, (path, _)) in bad.iter().enumerate() {
        let (s, _, _) = fetch(&mut c, "GET", path).await.unwrap();
        assert_eq!(s, 502, "{path}");
        // predictor closed that connection; a good answer still comes, on
        // a new one.
        let (s, _, b) = fetch(&mut c, "GET", "/fine").await.unwrap();
        assert_eq!((s, &b[..]), (200, &b"ok"[..]), "after {path}");
        assert_eq!(up.connections(), i + 2, "after {path}");
    }
    eventually("the refused connections closed", || {
        up.closed_by_peer() >= bad.len()
    })
    .await;
    let m = metric(
        p.server(),
        "predictor_requests_total{route=\"local\",tier=\"web\",pool=\"web\",class=\"5xx\"}",
    );
    assert_eq!(m, bad.len() as f64);
}

/// A body that breaks after the head went out cuts the client's response
/// (its connection closes: the client sees the body fail, never a short
/// body taken for whole), and the upstream connection is not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_breaks_cuts_the_response() {
    let up = Scripted::start(|head| match path(head) {
        "/bad-chunk" => {
            Reply::keep("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
        }
        "/short" => Reply::close("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
        _ => Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    })
    .await;
    let f = site(&up);
    let p = Proxy::start(&f);
    for path in ["/bad-chunk", "/short"] {
        let mut c = h1(p.addr).await;
        assert!(fetch(&mut c, "GET", path).await.is_err(), "{path}");
    }
    let mut c = h1(p.addr).await;
    let (s, _, _) = fetch(&mut c, "GET", "/fine").await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(up.connections(), 3);
}

/// Request bodies go out framed as the upstream needs: a known length as
/// `Content-Length`, an unknown one (HTTP/2, or a chunked client) chunked,
/// and the client's own `Transfer-Encoding` never passed as it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_framed_for_the_upstream() {
    let up =
        Scripted::start(|_| Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
    let f = site(&up);
    let p = Proxy::start(&f);
    let answer = raw(
        p.addr,
        b"POST /len HTTP/1.1\r\nHost: s.example\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(status_of(&answer), 200);
    let answer = raw(
        p.addr,
        b"POST /chunks HTTP/1.1\r\nHost: s.example\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 200);
    let mut h2c = h2(p.addr).await;
    let req = Request::post("http://s.example/h2")
        .body(Full::new(Bytes::from_static(b"from h2")))
        .unwrap();
    let r = h2c.send_request(req).await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.requests();
    let by = |p: &str| {
        seen.iter()
            .find(|r| path(r) == p)
            .unwrap_or_else(|| panic!("{p} not seen in {seen:?}"))
            .to_ascii_lowercase()
    };
    let len = by("/len");
    assert!(len.contains("content-length: 5\r\n") && len.ends_with("\r\n\r\nhello"));
    assert!(!len.contains("transfer-encoding"));
    let chunks = by("/chunks");
    assert!(
        chunks.contains("transfer-encoding: chunked\r\n"),
        "{chunks}"
    );
    assert_eq!(chunks.matches("transfer-encoding").count(), 1, "{chunks}");
    let body = &chunks[chunks.find("\r\n\r\n").unwrap() + 4..];
    let decoded = decode_chunked(body);
    assert_eq!(decoded, "hello world");
    let h2 = by("/h2");
    let h2_body = &h2[h2.find("\r\n\r\n").unwrap() + 4..];
    // hyper's HTTP/2 server knows the length only from `content-length`,
    // which this client did not send: chunked, or with its length.
    if h2.contains("transfer-encoding: chunked") {
        assert_eq!(decode_chunked(h2_body), "from h2");
    } else {
        assert_eq!(h2_body, "from h2");
    }
}

fn decode_chunked(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (line, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// A server may answer before it has read the request body (a 413 for an
/// upload too large): the client gets that answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_is_passed_on() {
    let up = Scripted::start(|_| Reply {
        bytes:
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig"
                .to_vec(),
        close: true,
        early: true,
    })
    .await;
    let f = site(&up);
    let p = Proxy::start(&f);
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: s.example\r\nContent-Length: 10000000\r\n\r\n")
        .await
        .unwrap();
    // Some of the body, then wait for the answer.
    let _ = s.write_all(&[b'x'; 64 * 1024]).await;
    let answer = read_response(&mut s).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(answer.ends_with("big"));
}

/// A pooled connection the server closed while it was idle is not used:
/// the next request, a POST (never sent twice), goes on a new connection
/// and gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_closed_by_the_server_is_not_used() {
    // Each answer keeps the connection by its framing, then the server
    // closes it (its keep-alive timeout, shortened).
    let up =
        Scripted::start(|_| Reply::close("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
    let f = site(&up);
    let p = Proxy::start(&f);
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    for i in 1..=3 {
        s.write_all(b"POST /p HTTP/1.1\r\nHost: s.example\r\nContent-Length: 1\r\n\r\nx")
            .await
            .unwrap();
        let answer = read_response(&mut s).await;
        assert_eq!(status_of(&answer), 200, "request {i}: {answer}");
        // The server's close is on the wire before the next request goes.
        eventually("the server closed its side", || up.closed_here() >= i).await;
    }
    assert_eq!(up.connections(), 3);
    assert_eq!(up.requests().len(), 3);
}

/// An idempotent request whose pooled connection dies without an answer
/// goes once more on a new connection: the client sees no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_race_costs_no_idempotent_request() {
    // The first request on each connection is answered and the connection
    // kept; the second request on it is read and the connection closed
    // without an answer (the race of a server's keep-alive timeout).
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let s2 = seen.clone();
    let up = Scripted::start(move |head| {
        let p = path(head).to_string();
        let mut seen = s2.lock().unwrap();
        let n = seen.entry(p).or_insert(0);
        *n += 1;
        if *n == 2 {
            Reply::close("")
        } else {
            Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        }
    })
    .await;
    let f = site(&up);
    let p = Proxy::start(&f);
    let mut c = h1(p.addr).await;
    assert_eq!(fetch(&mut c, "GET", "/x").await.unwrap().0, 200);
    // Same path: its second sending is closed unanswered, its third is
    // answered on a new connection.
    let (s, _, b) = fetch(&mut c, "GET", "/x").await.unwrap();
    assert_eq!((s, &b[..]), (200, &b"ok"[..]));
    assert_eq!(up.connections(), 2);
    // A POST is not sent twice: the client gets the failure.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"POST /p HTTP/1.1\r\nHost: s.example\r\nContent-Length: 1\r\n\r\nx")
            .await
            .unwrap();
        let answer = read_response(&mut s).await;
        if status_of(&answer) == 502 {
            return;
        }
        assert_eq!(status_of(&answer), 200, "{answer}");
    }
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(200), s.read_to_end(&mut rest)).await;
    panic!("the second POST on a dying connection was not answered 502");
}

/// Bytes a server sends right behind its `101` (the first of the new
/// protocol) reach the client, then the stream runs both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_passes_the_bytes_behind_its_101() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(head.contains("upgrade: test-proto"), "{head}");
        assert!(head.contains("connection: upgrade"), "{head}");
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: test-proto\r\nConnection: Upgrade\r\n\r\nHELLO")
            .await
            .unwrap();
        let mut ping = [0u8; 4];
        s.read_exact(&mut ping).await.unwrap();
        assert_eq!(&ping, b"ping");
        s.write_all(b"pong").await.unwrap();
    });
    let f = Folder::new(
        &config_toml(&[("web", vec![("w", addr)])], None, ""),
        "s.example\tt\tweb\tf\n",
        "default = \"migrated\"\n",
    );
    let p = Proxy::start(&f);
    let mut c = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    c.write_all(b"GET /ws HTTP/1.1\r\nHost: s.example\r\nConnection: Upgrade\r\nUpgrade: test-proto\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + WAIT;
    while !got.ends_with(b"HELLO") {
        let n = tokio::time::timeout_at(deadline, c.read(&mut buf))
            .await
            .expect("no 101 and early bytes in time")
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    c.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    tokio::time::timeout(WAIT, c.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"pong");
    server.await.unwrap();
}

/// A server that stops sending in the middle of a body is cut after the
/// response timeout (HAProxy's `timeout server`): the client's response
/// fails instead of hanging, and the connection is not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_cut_after_the_response_timeout() {
    let up = Scripted::start(|head| match path(head) {
        "/stall" => Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
        _ => Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    })
    .await;
    let f = Folder::new(
        &config_toml(
            &[("web", vec![("w", up.addr)])],
            None,
            "[timeouts]\nconnect = \"1s\"\ndrain = \"2s\"\nupstream_response = \"300ms\"\n",
        ),
        "s.example\tt\tweb\tf\n",
        "default = \"migrated\"\n",
    );
    let p = Proxy::start(&f);
    let mut c = h1(p.addr).await;
    let started = std::time::Instant::now();
    assert!(fetch(&mut c, "GET", "/stall").await.is_err());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let mut c = h1(p.addr).await;
    assert_eq!(fetch(&mut c, "GET", "/fine").await.unwrap().0, 200);
    assert_eq!(up.connections(), 2);
}
