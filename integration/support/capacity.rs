//! A webserver of finite capacity, like a PHP-FPM pool: it serves
//! `parallel` requests at once, each taking `service` (± 20 %, as real
//! pages vary: requests that all took the same time would start and end
//! in lockstep), and the rest wait in its backlog first come, first
//! served. It counts the requests it
//! holds (served and waiting) and the most it ever held, and runs on a
//! thread of its own so that the load on the test's runtime does not
//! slow it. And clients that load a proxy from threads of their own,
//! measuring each request's latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

pub struct Capacity {
    pub addr: SocketAddr,
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Capacity {
    pub fn start(parallel: usize, service: Duration) -> Capacity {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (now, max, stop) = (Arc::default(), Arc::default(), Arc::default());
        let c = Capacity {
            addr,
            now,
            max,
            stop,
        };
        let (now, max, stop) = (c.now.clone(), c.max.clone(), c.stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let workers = Arc::new(tokio::sync::Semaphore::new(parallel));
                let seq = Arc::new(AtomicUsize::new(0));
                while !stop.load(SeqCst) {
                    let Ok(Ok((stream, _))) =
                        tokio::time::timeout(Duration::from_millis(100), listener.accept()).await
                    else {
                        continue;
                    };
                    let (now, max, workers) = (now.clone(), max.clone(), workers.clone());
                    let seq = seq.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                            let (now, max, workers) = (now.clone(), max.clone(), workers.clone());
                            // 0.8 to 1.2 times `service`, spread evenly.
                            let n = seq.fetch_add(1, SeqCst).wrapping_mul(2_654_435_761) % 1000;
                            let took = service.mul_f64(0.8 + 0.4 * n as f64 / 1000.0);
                            async move {
                                let held = now.fetch_add(1, SeqCst) + 1;
                                max.fetch_max(held, SeqCst);
                                let permit = workers.acquire().await;
                                tokio::time::sleep(took).await;
                                drop(permit);
                                now.fetch_sub(1, SeqCst);
                                Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                    Bytes::from_static(b"ok"),
                                )))
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        c
    }

    /// The most requests it held at once since the last reset.
    pub fn max_held(&self) -> usize {
        self.max.load(SeqCst)
    }

    pub fn reset_max(&self) {
        self.max.store(self.now.load(SeqCst), SeqCst);
    }
}

impl Drop for Capacity {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
    }
}

/// One request's outcome: status and latency.
pub type Sample = (u16, Duration);

/// `clients` keep-alive connections to `addr` for `host`, each sending
/// requests one after another until `per_client` are done, `stop` is set
/// or `limit` has passed; on a thread (and runtime) of their own.
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Sample>>>,
}

impl Load {
    pub fn start(
        addr: SocketAddr,
        host: &str,
        clients: usize,
        per_client: usize,
        limit: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (host, flag) = (host.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let until = Instant::now() + limit;
                let tasks: Vec<_> = (0..clients)
                    .map(|_| {
                        let (host, flag) = (host.clone(), flag.clone());
                        tokio::spawn(async move {
                            let mut out = Vec::new();
                            let mut s = super::h1(addr).await;
                            for _ in 0..per_client {
                                if flag.load(SeqCst) || Instant::now() > until {
                                    break;
                                }
                                let t = Instant::now();
                                let req = Request::get("/")
                                    .header("host", &host)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap();
                                if s.ready().await.is_err() {
                                    s = super::h1(addr).await;
                                }
                                match tokio::time::timeout(super::WAIT, s.send_request(req)).await {
                                    Ok(Ok(r)) => {
                                        let status = r.status().as_u16();
                                        let _ =
                                            http_body_util::BodyExt::collect(r.into_body()).await;
                                        out.push((status, t.elapsed()));
                                    }
                                    _ => {
                                        out.push((0, t.elapsed()));
                                        s = super::h1(addr).await;
                                    }
                                }
                            }
                            out
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await.unwrap());
                }
                all
            })
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the clients and returns every sample.
    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, SeqCst);
        self.join()
    }

    /// Waits for the clients to finish on their own.
    pub fn join(mut self) -> Vec<Sample> {
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
    }
}

/// The `q` quantile of the samples' latencies (nearest rank).
pub fn quantile(samples: &[Sample], q: f64) -> Duration {
    let mut l: Vec<Duration> = samples.iter().map(|s| s.1).collect();
    l.sort();
    let rank = ((q * l.len() as f64).ceil() as usize).clamp(1, l.len());
    l[rank - 1]
}

/// How many samples have `status`.
pub fn count(samples: &[Sample], status: u16) -> usize {
    samples.iter().filter(|s| s.0 == status).count()
}
