//! Bodies stream both ways; upgrades tunnel.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

async fn one_backend() -> (Backend, Folder) {
    let web = Backend::start("web").await;
    let folder = single_site(&web, "");
    (web, folder)
}

type Chunk = Result<Frame<Bytes>, std::io::Error>;
type Chunks = tokio::sync::mpsc::Sender<Chunk>;
type ChunkStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Chunk> + Send>>;

/// A request whose body the test feeds chunk by chunk.
fn streaming_request(path: &str) -> (Chunks, Request<StreamBody<ChunkStream>>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let stream: ChunkStream = Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let req = Request::post(path)
        .header("host", "s.example")
        .body(StreamBody::new(stream))
        .unwrap();
    (tx, req)
}

/// The first chunk of the request comes back as the first chunk of the
/// response before the rest of the request is sent: nothing is buffered
/// whole in either direction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways() {
    let (_web, folder) = one_backend().await;
    let p = Proxy::start(&folder);
    let stream = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, req) = streaming_request("/echo");
    let response = tokio::spawn(s.send_request(req));
    tx.send(Ok(Frame::data(Bytes::from_static(b"first chunk"))))
        .await
        .unwrap();
    let response = tokio::time::timeout(WAIT, response)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(WAIT, body.frame())
        .await
        .expect("first chunk not echoed while the request is still open");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "first chunk");
    for i in 0..10 {
        tx.send(Ok(Frame::data(Bytes::from(format!("chunk {i}")))))
            .await
            .unwrap();
        let echoed = tokio::time::timeout(WAIT, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_data().unwrap(), format!("chunk {i}"));
    }
    drop(tx);
    assert!(
        tokio::time::timeout(WAIT, body.frame())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_pass_intact() {
    const SIZE: u64 = 64 << 20;
    let (_web, folder) = one_backend().await;
    let p = Proxy::start(&folder);

    let mut s = h1(p.addr).await;
    let req = Request::get(format!("/download?bytes={SIZE}"))
        .header("host", "s.example")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let mut body = s.send_request(req).await.unwrap().into_body();
    let mut got = 0u64;
    while let Some(frame) = tokio::time::timeout(WAIT, body.frame()).await.unwrap() {
        got += frame.unwrap().into_data().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(got, SIZE);

    let stream = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, req) = streaming_request("/upload");
    let response = tokio::spawn(s.send_request(req));
    let mut sum = 0u64;
    let chunk: Vec<u8> = (0..=255u8).cycle().take(256 * 1024).collect();
    for _ in 0..SIZE / chunk.len() as u64 {
        sum = chunk
            .iter()
            .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
        tx.send(Ok(Frame::data(Bytes::from(chunk.clone()))))
            .await
            .unwrap();
    }
    drop(tx);
    let answer = read(
        tokio::time::timeout(WAIT, response)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
    )
    .await;
    assert_eq!(answer.body, format!("{SIZE} {sum}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_round_trip() {
    let (web, folder) = one_backend().await;
    let p = Proxy::start(&folder);
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: s.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, s.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    let seen = web.last();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(
        seen.header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    for msg in [&b"hello"[..], b"through the tunnel", &[0u8, 159, 255][..]] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(WAIT, s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
}

/// `Expect: 100-continue`: the client hears `100 Continue` before it sends
/// the body, and the body reaches the webserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_uploads() {
    let (web, folder) = one_backend().await;
    let p = Proxy::start(&folder);
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: s.example\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, s.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    s.write_all(b"hello").await.unwrap();
    let r = read_response(&mut s).await;
    let sum = b"hello"
        .iter()
        .fold(0u64, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with(&format!("5 {sum}")), "{r}");
    assert_eq!(web.last().header("expect"), Some("100-continue"));
}
