//! The HTTP/2 client side (`proxy::h2`): bodies larger than a stream's
//! window both ways, a stream the client resets, predictor's own answers,
//! and the drain (`GOAWAY` after the streams in progress).

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::*;

async fn one_backend() -> (Backend, Folder) {
    let web = Backend::start("web").await;
    let folder = single_site(&web, "");
    (web, folder)
}

/// A bodiless `GET` of `uri`.
fn get_req(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::new(Bytes::new())).unwrap()
}

/// The backend's `/upload` digest of `body`.
fn digest(body: &[u8]) -> String {
    let sum = body
        .iter()
        .fold(0u64, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("{} {sum}", body.len())
}

/// 3 MiB, three times the stream and connection windows predictor grants.
fn big_body() -> Vec<u8> {
    (0..3 << 20).map(|i: u32| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_larger_than_the_window_arrives_whole() {
    let (web, folder) = one_backend().await;
    let p = Proxy::start(&folder);
    let body = big_body();
    let mut s = h2(p.addr).await;
    // With a declared length, and without one (sent on chunked upstream).
    for declared in [true, false] {
        let mut req = Request::post("http://s.example/upload");
        if declared {
            req = req.header("content-length", body.len());
        }
        s.ready().await.unwrap();
        let answer = read(
            s.send_request(req.body(Full::new(Bytes::from(body.clone()))).unwrap())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status.as_u16(), 200, "{}", answer.body);
        assert_eq!(answer.body, digest(&body), "declared length: {declared}");
    }
    assert_eq!(web.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_larger_than_the_window_arrives_whole() {
    let (_web, folder) = one_backend().await;
    let p = Proxy::start(&folder);
    let mut s = h2(p.addr).await;
    let req = get_req("http://s.example/download?bytes=3145728");
    let answer = read(s.send_request(req).await.unwrap()).await;
    assert_eq!(answer.status.as_u16(), 200);
    assert_eq!(answer.body.len(), 3 << 20);
    assert!(answer.body.bytes().all(|b| b == b'x'));
    // A webserver's hop-by-hop field does not reach an HTTP/2 client
    // (the h2 crate would refuse the head).
    assert!(answer.headers.get("keep-alive").is_none());
    assert_eq!(answer.headers.get("x-backend").unwrap(), "web");
}

/// The request count on the one server of the test's pool.
fn in_flight(p: &Proxy) -> u32 {
    p.server().snapshot().load().live.pools()[0].servers()[0].in_flight()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reset_by_the_client_leaves_its_connection_serving() {
    let (web, folder) = one_backend().await;
    let p = Proxy::start(&folder);
    let mut s = h2(p.addr).await;
    // An answer slower than the test's wait, which the client gives up
    // on: hyper's client resets the stream when its response future is
    // dropped.
    let slow = s.send_request(get_req("http://s.example/sleep?ms=60000"));
    let slow = tokio::spawn(slow);
    eventually("the slow request upstream", || web.seen().len() == 1).await;
    assert_eq!(in_flight(&p), 1);
    slow.abort();
    // The exchange is dropped at the reset, not held until the webserver
    // answers: the request leaves the server's count.
    eventually("the reset exchange dropped", || in_flight(&p) == 0).await;
    // The same connection answers the next stream.
    s.ready().await.unwrap();
    let answer = read(s.send_request(get_req("http://s.example/")).await.unwrap()).await;
    assert_eq!((answer.status.as_u16(), answer.body.as_str()), (200, "web"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_its_content_length_is_refused() {
    let (web, folder) = one_backend().await;
    let p = Proxy::start(&folder);
    let tcp = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = Request::post("http://s.example/upload")
        .header("content-length", "10")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(req, false).unwrap();
    body.send_data(Bytes::from_static(b"12345"), true).unwrap();
    // The h2 crate resets the stream (PROTOCOL_ERROR); nothing is
    // answered as if the body were whole.
    let answer = tokio::time::timeout(WAIT, response).await.unwrap();
    match answer {
        Err(e) => assert!(e.is_reset(), "{e}"),
        Ok(r) => assert_eq!(r.status().as_u16(), 400, "{r:?}"),
    }
    // The webserver never saw a whole upload: no answer with a digest.
    let ok = "predictor_requests_total{route=\"local\",tier=\"web\",pool=\"web\",class=\"2xx\"}";
    assert_eq!(metric(p.server(), ok), 0.0);
    assert!(web.seen().len() <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictors_own_answers_carry_date_and_length() {
    let (_web, folder) = one_backend().await;
    let p = Proxy::start(&folder);
    let mut s = h2(p.addr).await;
    // `:authority` and a `Host` that disagree: predictor's own 400.
    let req = Request::get("http://s.example/")
        .header("host", "other.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = read(s.send_request(req).await.unwrap()).await;
    assert_eq!(answer.status.as_u16(), 400);
    let date = answer
        .headers
        .get("date")
        .expect("no date")
        .to_str()
        .unwrap();
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    let length: usize = answer.headers["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, answer.body.len());
    assert!(length > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_finishes_a_stream_in_progress_then_sends_goaway() {
    let (web, folder) = one_backend().await;
    // A deadline past the test's wait: the connection must close because
    // its streams are done, not because the drain gave up on it.
    folder.edit("predictor.toml", "drain = \"2s\"", "drain = \"20s\"", 1);
    let p = Proxy::start(&folder);
    let mut s = h2(p.addr).await;
    let slow = get_req("http://s.example/sleep?ms=800");
    let in_progress = tokio::spawn(s.send_request(slow));
    eventually("the slow request upstream", || web.seen().len() == 1).await;
    let server = std::thread::spawn(move || drop(p));
    // The stream in progress is answered whole.
    let answer = read(
        tokio::time::timeout(WAIT, in_progress)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
    )
    .await;
    assert_eq!((answer.status.as_u16(), answer.body.as_str()), (200, "web"));
    // Then the connection is gone: no new stream is served on it.
    eventually_async("the connection closed by GOAWAY", async || {
        let req = get_req("http://s.example/");
        match s.ready().await {
            Err(_) => true,
            Ok(()) => s.send_request(req).await.is_err(),
        }
    })
    .await;
    server.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_just_before_the_drain_gets_its_first_stream_answered() {
    let (_web, folder) = one_backend().await;
    let p = Proxy::start(&folder);
    // Connected and accepted (a connection still in the kernel's backlog
    // is reset when the drain closes the listeners), no stream yet.
    let mut s = h2(p.addr).await;
    s.ready().await.unwrap();
    eventually("the connection accepted", || {
        metric(p.server(), "predictor_connections_accepted_total") >= 1.0
    })
    .await;
    let addr = p.addr;
    let shutdown = std::thread::spawn(move || drop(p));
    // The drain has begun once the listeners are closed.
    eventually_async("listeners closed", async || {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    let req = get_req("http://s.example/");
    let answer = read(s.send_request(req).await.unwrap()).await;
    assert_eq!((answer.status.as_u16(), answer.body.as_str()), (200, "web"));
    shutdown.join().unwrap();
}
