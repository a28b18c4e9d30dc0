//! The client side of HTTP/1.x conversations, over raw sockets: pipelined
//! requests, `Expect: 100-continue`, HTTP/1.0 clients, and a client that
//! reads slowly (backpressure: the response is not buffered whole), and a
//! lingering close after a body left unread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::scripted::{Reply, Scripted};
use crate::support::*;

fn site(addr: std::net::SocketAddr) -> Folder {
    site_in(addr, "migrated")
}

/// `s.example` on the webserver `addr`, in the migration `state`.
fn site_in(addr: std::net::SocketAddr, state: &str) -> Folder {
    Folder::new(
        &config_toml(&[("web", vec![("w", addr)])], None, ""),
        "s.example\tt\tweb\tf\n",
        &format!("default = \"{state}\"\n"),
    )
}

/// Answers each request with its own path as the body.
async fn echo_path() -> Scripted {
    Scripted::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        if path == "/chunked" {
            return Reply::keep("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsome\r\n5\r\nbytes\r\n0\r\n\r\n");
        }
        Reply::keep(format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
            path.len()
        ))
    })
    .await
}

/// Reads until the connection closes (within `WAIT`).
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("the connection did not close")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

/// Three requests written at once are answered in order, each whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let up = echo_path().await;
    let f = site(up.addr);
    let p = Proxy::start(&f);
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"GET /1 HTTP/1.1\r\nHost: s.example\r\n\r\n\
          POST /2 HTTP/1.1\r\nHost: s.example\r\nContent-Length: 4\r\n\r\nbody\
          GET /3 HTTP/1.1\r\nHost: s.example\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let all = read_to_close(&mut s).await;
    let bodies: Vec<&str> = all
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|r| r.rsplit("\r\n\r\n").next().unwrap_or(""))
        .collect();
    assert_eq!(bodies, ["/1", "/2", "/3"], "{all}");
    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen[1].ends_with("\r\n\r\nbody"), "{:?}", seen[1]);
}

/// `Expect: 100-continue`: the client hears `100 Continue` before it sends
/// the body, and the final answer after; a request answered without its
/// body (no such site here) gets no `100` and its answer at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue() {
    let up = echo_path().await;
    let f = site(up.addr);
    let p = Proxy::start(&f);
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: s.example\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("no 100 Continue while the client waits")
        .unwrap();
    let interim = String::from_utf8_lossy(&buf[..n]);
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{interim}"
    );
    s.write_all(b"hello").await.unwrap();
    let answer = read_response(&mut s).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.ends_with("/upload"));
    assert!(up.requests()[0].ends_with("\r\n\r\nhello"));

    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"POST /x HTTP/1.1\r\nHost: nobody.example\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = read_response(&mut s).await;
    // An unknown host's answer (421 by default), with no 100 before it.
    assert_eq!(status_of(&answer), 421, "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
}

/// HTTP/1.0: the connection closes after the answer unless the client
/// asked to keep it; a body of unknown length is delimited by the close,
/// never chunked (1.0 has no chunked coding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_clients() {
    let up = echo_path().await;
    let f = site(up.addr);
    let p = Proxy::start(&f);

    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /plain HTTP/1.0\r\nHost: s.example\r\n\r\n")
        .await
        .unwrap();
    let all = read_to_close(&mut s).await;
    assert_eq!(status_of(&all), 200, "{all}");
    assert!(all.ends_with("/plain"), "{all}");

    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /chunked HTTP/1.0\r\nHost: s.example\r\n\r\n")
        .await
        .unwrap();
    let all = read_to_close(&mut s).await;
    assert!(
        !all.to_ascii_lowercase().contains("transfer-encoding"),
        "{all}"
    );
    assert!(all.ends_with("\r\n\r\nsomebytes"), "{all}");

    let mut s = TcpStream::connect(p.addr).await.unwrap();
    for path in ["/one", "/two"] {
        s.write_all(
            format!("GET {path} HTTP/1.0\r\nHost: s.example\r\nConnection: keep-alive\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let answer = read_response(&mut s).await;
        assert_eq!(status_of(&answer), 200, "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("connection: keep-alive"),
            "{answer}"
        );
        assert!(answer.ends_with(path), "{answer}");
    }
}

/// A client that stops reading holds the upstream back: predictor does
/// not read the whole response into memory (only socket buffers fill),
/// and the body arrives whole once the client reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_the_upstream_back() {
    const SIZE: u64 = 256 << 20;
    let written = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let w = written.clone();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|x| x == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < SIZE {
            if s.write_all(&chunk).await.is_err() {
                return;
            }
            sent += chunk.len() as u64;
            w.store(sent, Ordering::SeqCst);
        }
    });
    let f = site(addr);
    let p = Proxy::start(&f);
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: s.example\r\n\r\n")
        .await
        .unwrap();
    // The client reads nothing for a while: the upstream is held back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = written.load(Ordering::SeqCst);
    assert!(
        held < 64 << 20,
        "{held} bytes left the upstream while the client read nothing"
    );
    // Then it reads all of it.
    let mut got = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head_done = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got < SIZE {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("the body did not arrive")
            .unwrap();
        assert!(n > 0, "closed after {got} body bytes");
        if head_done {
            got += n as u64;
        } else if let Some(i) = buf[..n].windows(4).position(|x| x == b"\r\n\r\n") {
            head_done = true;
            got += (n - i - 4) as u64;
        }
    }
    assert_eq!(got, SIZE);
    server.await.unwrap();
}

/// A request answered without its body being read (the site is in
/// maintenance) is closed cleanly while the client goes on sending: the
/// rest of the body is read and dropped for a while (a lingering close),
/// where closing at once would make the kernel answer the unread bytes with
/// a reset (and a reset destroys an answer the client has not read yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_body_gets_a_lingering_close_not_a_reset() {
    let up = echo_path().await;
    let f = site_in(up.addr, "maintenance");
    let p = Proxy::start(&f);
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: s.example\r\nContent-Length: 1000000\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut s).await;
    assert_eq!(status_of(&answer), 503, "{answer}");
    // The answer is out and the connection is closing; the client, which
    // did not wait for it, is still sending its body: 512 KiB, half the
    // linger's bound, in pieces. Closed at once, the proxy's side answers
    // the first piece with a reset and a later write fails.
    let piece = vec![b'x'; 8 * 1024];
    for i in 0..64 {
        tokio::time::timeout(WAIT, s.write_all(&piece))
            .await
            .expect("the body was not taken")
            .unwrap_or_else(|e| panic!("the connection was reset after {i} pieces: {e}"));
        tokio::task::yield_now().await;
    }
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .expect("the connection did not close")
        .expect("the connection was reset");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(up.requests().is_empty(), "nothing reached the webserver");
}
