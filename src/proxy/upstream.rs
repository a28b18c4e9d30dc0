//! Connections to webservers and the legacy balancer: one keep-alive pool
//! per worker thread.
//!
//! Why not `hyper_util::client::legacy::Client`: its pool is shared by all
//! threads behind a mutex, and it spawns a task per request to watch for
//! reuse. predictor runs one single-threaded runtime per core (like HAProxy
//! and nginx workers), so each worker keeps its own idle connections in a
//! `RefCell`: checkout and checkin touch no lock and no other core.
//!
//! Idle connections are kept most-recent-first (the warmest socket goes
//! out next), at most `upstream_idle_per_server` per server, and closed
//! after `upstream_idle` (keep it below the webservers' own keep-alive
//! timeout). A request that comes back unsent from a pooled connection the
//! server had just closed goes again on a fresh connection; a request that
//! fails to connect goes to the next server of its preference list.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::timer::LazyTimer;

use super::error::ProxyError;

/// Timeouts and limits of one forwarding, taken from the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub connect: Duration,
    pub response: Duration,
    pub idle: Duration,
    pub max_idle: usize,
}

struct IdleConn {
    sender: SendRequest<Incoming>,
    watch: Rc<Watch>,
    since: Instant,
}

/// A connection's response deadline, shared between the request waiting on
/// it and the task driving the connection.
///
/// Why not `tokio::time::timeout` around each request: that registers and
/// removes a timer per request. Each connection task keeps one
/// [`LazyTimer`] instead.
#[derive(Debug, Default)]
struct Watch {
    deadline: Cell<Option<Instant>>,
    expired: Cell<bool>,
}

/// Clears the deadline when the wait for the response head ends (or is
/// abandoned).
struct Awaiting<'a>(&'a Watch);

impl<'a> Awaiting<'a> {
    fn start(watch: &'a Watch, after: Duration) -> Self {
        watch.deadline.set(Some(Instant::now() + after));
        Awaiting(watch)
    }
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        self.0.deadline.set(None);
    }
}

/// The task of one upstream connection: hyper's connection future, closed
/// when a response head is late.
struct Watched<C> {
    conn: Pin<Box<C>>,
    watch: Rc<Watch>,
    timer: LazyTimer,
    addr: SocketAddr,
}

impl<C> Future for Watched<C>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Poll::Ready(result) = this.conn.as_mut().poll(cx) {
            if let Err(e) = result {
                tracing::debug!(addr = %this.addr, error = %e, "upstream connection ended");
            }
            return Poll::Ready(());
        }
        let Some(deadline) = this.watch.deadline.get() else {
            return Poll::Pending;
        };
        if this.timer.poll_deadline(deadline, cx).is_pending() {
            return Poll::Pending;
        }
        // No response head in time: close the connection; the waiting
        // request fails and reads `expired`.
        this.watch.expired.set(true);
        Poll::Ready(())
    }
}

/// The upstream connections of one worker.
pub struct Upstreams {
    idle: RefCell<HashMap<SocketAddr, Vec<IdleConn>, foldhash::fast::FixedState>>,
    http1: http1::Builder,
}

/// A response and the connection it came on.
pub struct Exchange {
    pub response: Response<Incoming>,
    pub conn: Pooled,
}

/// A connection in use; back to the pool when its response has ended.
pub struct Pooled {
    pool: Rc<Upstreams>,
    addr: SocketAddr,
    sender: SendRequest<Incoming>,
    watch: Rc<Watch>,
    max_idle: usize,
}

impl Pooled {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The response was read to its end: the connection can serve again.
    pub fn release(self) {
        let Pooled {
            pool,
            addr,
            mut sender,
            watch,
            max_idle,
        } = self;
        if sender.is_ready() {
            pool.checkin(addr, sender, watch, max_idle);
        } else if !sender.is_closed() {
            // The connection task has not yet seen the end of the response;
            // hand the connection back once it has.
            tokio::task::spawn_local(async move {
                if sender.ready().await.is_ok() {
                    pool.checkin(addr, sender, watch, max_idle);
                }
            });
        }
    }
}

impl Upstreams {
    pub fn new() -> Rc<Self> {
        let mut http1 = http1::Builder::new();
        // Webservers may answer with odd header spacing; pass it through.
        http1.allow_spaces_after_header_name_in_responses(true);
        Rc::new(Upstreams {
            idle: RefCell::new(HashMap::default()),
            http1,
        })
    }

    /// Number of idle connections to `addr`.
    pub fn idle_count(&self, addr: SocketAddr) -> usize {
        self.idle.borrow().get(&addr).map_or(0, Vec::len)
    }

    fn checkout(
        &self,
        addr: SocketAddr,
        idle: Duration,
    ) -> Option<(SendRequest<Incoming>, Rc<Watch>)> {
        let mut map = self.idle.borrow_mut();
        let list = map.get_mut(&addr)?;
        let now = Instant::now();
        while let Some(c) = list.pop() {
            if now.duration_since(c.since) >= idle {
                // The rest were parked earlier: all stale.
                list.clear();
                return None;
            }
            if c.sender.is_ready() {
                return Some((c.sender, c.watch));
            }
        }
        None
    }

    fn checkin(
        &self,
        addr: SocketAddr,
        sender: SendRequest<Incoming>,
        watch: Rc<Watch>,
        max_idle: usize,
    ) {
        if max_idle == 0 {
            return;
        }
        let mut map = self.idle.borrow_mut();
        let list = map.entry(addr).or_default();
        if list.len() >= max_idle {
            list.remove(0);
        }
        list.push(IdleConn {
            sender,
            watch,
            since: Instant::now(),
        });
    }

    /// Closes idle connections older than `idle` or closed by the server.
    pub fn sweep(&self, idle: Duration) {
        let now = Instant::now();
        self.idle.borrow_mut().retain(|_, list| {
            list.retain(|c| now.duration_since(c.since) < idle && !c.sender.is_closed());
            !list.is_empty()
        });
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(SendRequest<Incoming>, Rc<Watch>), ProxyError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(ProxyError::ConnectTimeout {
                    addr,
                    after: timeout,
                });
            }
            Ok(Err(source)) => return Err(ProxyError::ConnectFailed { addr, source }),
            Ok(Ok(s)) => s,
        };
        // Small requests and responses must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            self.http1
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|source| ProxyError::Upstream {
                    addr,
                    sent: false,
                    source,
                })?;
        let watch = Rc::new(Watch::default());
        tokio::task::spawn_local(Watched {
            conn: Box::pin(conn.with_upgrades()),
            watch: watch.clone(),
            timer: LazyTimer::default(),
            addr,
        });
        Ok((sender, watch))
    }

    /// Sends `req` to the first of `targets` that takes it. With `fresh`,
    /// always on a new connection (upgrades take the connection over).
    pub async fn send(
        self: &Rc<Self>,
        targets: &[SocketAddr],
        mut req: Request<Incoming>,
        settings: &Settings,
        fresh: bool,
    ) -> Result<Exchange, ProxyError> {
        let mut last = None;
        'targets: for &addr in targets {
            loop {
                let pooled = if fresh {
                    None
                } else {
                    self.checkout(addr, settings.idle)
                };
                let reused = pooled.is_some();
                let (mut sender, watch) = match pooled {
                    Some(s) => s,
                    None => match self.connect(addr, settings.connect).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "upstream connect failed");
                            last = Some(e);
                            continue 'targets;
                        }
                    },
                };
                let awaiting = Awaiting::start(&watch, settings.response);
                let sent = sender.try_send_request(req).await;
                drop(awaiting);
                match sent {
                    Ok(response) => {
                        return Ok(Exchange {
                            response,
                            conn: Pooled {
                                pool: self.clone(),
                                addr,
                                sender,
                                watch,
                                max_idle: settings.max_idle,
                            },
                        });
                    }
                    Err(_) if watch.expired.get() => {
                        return Err(ProxyError::ResponseTimeout {
                            addr,
                            after: settings.response,
                        });
                    }
                    Err(mut e) => match e.take_message() {
                        Some(back) => {
                            req = back;
                            let error = ProxyError::Upstream {
                                addr,
                                sent: false,
                                source: e.into_error(),
                            };
                            tracing::debug!(%error, reused, "request came back unsent");
                            last = Some(error);
                            if reused {
                                // A pooled connection died under us: same
                                // server, next (or a new) connection.
                                continue;
                            }
                            continue 'targets;
                        }
                        None => {
                            return Err(ProxyError::Upstream {
                                addr,
                                sent: true,
                                source: e.into_error(),
                            });
                        }
                    },
                }
            }
        }
        Err(last.unwrap_or_else(|| ProxyError::NoServer {
            pool: String::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that never ends by itself.
    fn watched(watch: Rc<Watch>) -> Watched<std::future::Pending<Result<(), hyper::Error>>> {
        Watched {
            conn: Box::pin(std::future::pending()),
            watch,
            timer: LazyTimer::default(),
            addr: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_response_head_closes_the_connection_at_its_deadline() {
        let watch = Rc::new(Watch::default());
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let task = tokio::task::spawn_local(watched(watch.clone()));
                // First request: answered in time; its timer stays armed.
                let first = Awaiting::start(&watch, Duration::from_secs(10));
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(first);
                // Second request, later: the earlier timer must not cut it.
                let started = Instant::now();
                let _second = Awaiting::start(&watch, Duration::from_secs(10));
                tokio::task::yield_now().await;
                task.await.unwrap();
                assert!(watch.expired.get());
                assert_eq!(started.elapsed(), Duration::from_secs(10));
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_no_expiry() {
        let watch = Rc::new(Watch::default());
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let task = tokio::task::spawn_local(watched(watch.clone()));
                drop(Awaiting::start(&watch, Duration::from_secs(1)));
                let waited = tokio::time::timeout(Duration::from_secs(3600), task).await;
                assert!(
                    waited.is_err(),
                    "a connection without a pending request was closed"
                );
                assert!(!watch.expired.get());
            })
            .await;
    }
}
