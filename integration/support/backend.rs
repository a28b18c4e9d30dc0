//! In-process webservers for tests: real hyper servers on loopback that
//! record what reached them.
//!
//! Paths: `/` answers the backend's name; `/echo` streams the request body
//! back as it arrives; `/download?bytes=N` streams N bytes; `/upload` reads
//! the body and answers its length and checksum; `/ws` accepts an upgrade
//! and echoes the upgraded stream; `/sleep?ms=N` answers late.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// The connection's peer (which instance sent it, in a fleet).
    pub peer: std::net::SocketAddr,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
    /// When not 0, every request (checks included) gets this status.
    failing: AtomicU16,
}

pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Self::start_on(name, "127.0.0.1").await
    }

    /// A backend on another loopback address (for per-server agents on
    /// one port).
    pub async fn start_on(name: &str, ip: &str) -> Backend {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let (st, nm) = (state.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let (st, nm) = (st.clone(), nm.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(nm.clone(), st.clone(), peer, req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend {
            name: name.into(),
            addr,
            state,
            task,
        }
    }

    /// Requests seen so far, leaving out predictor's health probes.
    pub fn seen(&self) -> Vec<Seen> {
        let all = self.state.seen.lock().unwrap().clone();
        all.into_iter()
            .filter(|s| s.header("user-agent") != Some("predictor-probe"))
            .collect()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the backend saw no request")
    }

    /// From now on, every request (health checks included) is answered
    /// with `status`; 0 answers normally again.
    pub fn fail_with(&self, status: u16) {
        self.state.failing.store(status, Ordering::SeqCst);
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

fn query_num(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn answer(
    name: String,
    state: Arc<State>,
    peer: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    state.seen.lock().unwrap().push(Seen {
        method: req.method().clone(),
        uri: req.uri().to_string(),
        version: req.version(),
        headers: req.headers().clone(),
        peer,
        at: std::time::Instant::now(),
    });
    let failing = state.failing.load(Ordering::SeqCst);
    if failing != 0 {
        let _ = req.into_body().collect().await;
        let mut r = Response::new(full(format!("{name} failing")));
        *r.status_mut() = StatusCode::from_u16(failing).unwrap();
        return Ok(r);
    }
    let path = req.uri().path().to_string();
    let response = match path.as_str() {
        "/echo" => Response::new(req.into_body().boxed()),
        // Answered after `ms` milliseconds.
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_millis(query_num(&req, "ms"))).await;
            Response::new(full(name.clone()))
        }
        "/download" => {
            let total = query_num(&req, "bytes");
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, hyper::Error>>(4);
            tokio::spawn(async move {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if tx.send(Ok(Frame::data(chunk.slice(..n)))).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
            });
            let stream = tokio_stream_from(rx);
            Response::new(StreamBody::new(stream).boxed())
        }
        "/upload" => {
            let mut body = req.into_body();
            let (mut len, mut sum) = (0u64, 0u64);
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(d) = frame.data_ref() {
                    len += d.len() as u64;
                    sum = d
                        .iter()
                        .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
                }
            }
            Response::new(full(format!("{len} {sum}")))
        }
        "/ws" => {
            let mut req = req;
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = upgrade.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            r
        }
        "/sleep" => {
            tokio::time::sleep(Duration::from_millis(query_num(&req, "ms"))).await;
            Response::new(full(name.clone()))
        }
        _ => {
            // Read the whole body, so keep-alive works after uploads.
            let _ = req.into_body().collect().await;
            Response::new(full(name.clone()))
        }
    };
    let mut response = response;
    response
        .headers_mut()
        .insert("x-backend", name.parse().unwrap());
    // Hop-by-hop headers a careless upstream might send: must not pass.
    response
        .headers_mut()
        .insert("keep-alive", "timeout=5".parse().unwrap());
    Ok(response)
}

/// A `Stream` over an mpsc receiver (no tokio-stream dependency needed).
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
