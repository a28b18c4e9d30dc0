use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

fn facts(chunks: &[&[u8]]) -> HeadFacts {
    let mut s = HeadScan::default();
    s.begin();
    chunks.iter().fold(HeadFacts::default(), |_, c| s.feed(c))
}

fn scan(chunks: &[&[u8]]) -> bool {
    facts(chunks).length()
}

#[test]
fn finds_what_hyper_accepts_and_predictor_refuses() {
    let refused = |head: &[u8]| facts(&[head]).refused();
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), None);
    assert_eq!(
        refused(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\n"),
        Some("two Content-Length lines")
    );
    assert_eq!(
        refused(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        Some("two Transfer-Encoding lines")
    );
    for bare in [
        &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\n",
    ] {
        assert_eq!(
            refused(bare),
            Some("a line ending in a bare LF"),
            "{bare:?}"
        );
    }
}

#[test]
fn finds_content_length_in_a_head() {
    let head =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
    assert!(scan(&[head]));
    assert!(scan(&[b"POST / HTTP/1.1\nCONTENT-LENGTH: 5\n\n"]));
    assert!(!scan(&[
        b"POST / HTTP/1.1\r\nHost: a\r\nX-Content-Length: 5\r\n\r\n"
    ]));
    assert!(!scan(&[
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Lengthy: 5\r\n\r\n"
    ]));
    assert!(!scan(&[b"GET / HTTP/1.1\r\nHost: content-length:\r\n\r\n"]));
}

#[test]
fn finds_it_whatever_the_split() {
    let head: &[u8] =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    for i in 0..head.len() {
        for j in i..head.len() {
            assert!(
                scan(&[&head[..i], &head[i..j], &head[j..]]),
                "split at {i}, {j}"
            );
        }
    }
}

#[test]
fn stops_at_the_end_of_the_head() {
    // The body of a request may contain anything.
    let msg: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1f\r\ncontent-length: 1\r\n\r\n";
    for i in 0..msg.len() {
        assert!(!scan(&[&msg[..i], &msg[i..]]), "split at {i}");
    }
    assert!(!scan(&[b"GET / HTTP/1.1\n\ncontent-length: 1\n"]));
}

const IDLE: Duration = Duration::from_secs(60);
const HEADER: Duration = Duration::from_secs(10);

fn pair(mode: Mode) -> (ClientIo<DuplexStream>, DuplexStream, Arc<ConnShared>) {
    let (server, client) = tokio::io::duplex(4096);
    let shared = Arc::new(ConnShared::default());
    (
        ClientIo::new(server, shared.clone(), mode, IDLE, HEADER),
        client,
        shared,
    )
}

/// Reads until EOF or an error; returns what ended it and when.
async fn read_until_end(io: &mut ClientIo<DuplexStream>) -> (io::Result<usize>, Duration) {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let mut total = 0;
    loop {
        match io.read(&mut buf).await {
            Ok(0) => return (Ok(total), start.elapsed()),
            Ok(n) => total += n,
            Err(e) => return (Err(e), start.elapsed()),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_new_connection_closes_after_the_header_timeout() {
    let (mut io, _client, _) = pair(Mode::Unknown);
    let (r, after) = read_until_end(&mut io).await;
    assert_eq!(r.unwrap(), 0);
    assert_eq!(after, HEADER);
}

#[tokio::test(start_paused = true)]
async fn a_slow_head_gets_408() {
    let (mut io, mut client, _) = pair(Mode::Unknown);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a")
        .await
        .unwrap();
    let (r, after) = read_until_end(&mut io).await;
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert_eq!(after, HEADER);
    let mut answer = vec![0; TIMEOUT_408.len()];
    client.read_exact(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 408 "));
}

#[tokio::test(start_paused = true)]
async fn no_client_timeout_while_a_request_runs_then_idle() {
    let (mut io, mut client, shared) = pair(Mode::Http1);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(io.read(&mut buf).await.unwrap() > 0);
    let active = shared.begin();
    // Far beyond both timeouts: the request's own timeouts apply.
    let blocked = tokio::time::timeout(Duration::from_secs(3600), io.read(&mut buf)).await;
    assert!(blocked.is_err());
    drop(active);
    let (r, after) = read_until_end(&mut io).await;
    assert_eq!(r.unwrap(), 0);
    assert_eq!(after, IDLE);
}

#[tokio::test(start_paused = true)]
async fn http2_bytes_without_streams_are_idle_not_a_head() {
    let (mut io, mut client, _) = pair(Mode::Unknown);
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let (r, after) = read_until_end(&mut io).await;
    assert_eq!(r.unwrap(), 24, "no 408 on an HTTP/2 connection");
    assert_eq!(after, IDLE);
    drop(io);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(
        rest.is_empty(),
        "nothing written to an HTTP/2 client: {rest:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn upgraded_connections_have_no_http_timeouts() {
    let (mut io, _client, shared) = pair(Mode::Http1);
    shared.set_upgraded();
    let mut buf = [0u8; 8];
    let blocked = tokio::time::timeout(Duration::from_secs(3600), io.read(&mut buf)).await;
    assert!(blocked.is_err());
}

#[tokio::test(start_paused = true)]
async fn the_flag_reaches_the_handler_once() {
    let (mut io, mut client, shared) = pair(Mode::Http1);
    client
        .write_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(io.read(&mut buf).await.unwrap() > 0);
    assert!(shared.take_head_facts().length());
    assert!(!shared.take_head_facts().length());
}
