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
//! out next), at most `max_idle` per server, closed after `idle`, and not
//! reused past `max_lifetime`. Connects in progress to one address can be
//! bounded (`max_pending`): further requests wait for a slot (or for a
//! connection coming back) up to the connect timeout. A request that comes
//! back unsent from a pooled connection the server had just closed goes
//! again on another connection; a bodiless idempotent request whose
//! connection died before any answer is sent once more, as [`Retry`] says
//! (the legacy balancer: on a new connection; a pool: to the next server,
//! within the pool's retry budget); a request that fails to connect goes
//! to the next server of its preference list.

mod h2;
mod watch;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::body::RequestBody;
use super::error::ProxyError;
use super::timer::LazyTimer;
use watch::{Awaiting, Watch, Watched};

pub use h2::H2Upstream;

/// What to do with a bodiless idempotent request whose connection died
/// before any answer (RFC 9110 §9.2.2: it may be sent again).
#[derive(Debug, Clone, Copy)]
pub enum Retry<'a> {
    /// Answer the failure.
    Never,
    /// Once more, on a new connection to the same address (the legacy
    /// balancer: one address, which spreads the request itself).
    SameTarget,
    /// Once more, to the next server of the preference list, within the
    /// pool's budget (HAProxy's `retry-on` + `option redispatch`).
    NextTarget(&'a crate::health::budget::RetryBudget),
}

/// Timeouts and limits of one forwarding, taken from the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub connect: Duration,
    pub response: Duration,
    pub idle: Duration,
    pub max_idle: usize,
    /// Connections older than this are not reused.
    pub max_lifetime: Option<Duration>,
    /// Connects in progress per address and worker.
    pub max_pending: Option<usize>,
    /// A bodiless idempotent request whose connection died unanswered.
    pub retry: Retry<'a>,
}

struct IdleConn {
    sender: SendRequest<RequestBody>,
    watch: Rc<Watch>,
    since: Instant,
    born: Instant,
}

/// The upstream connections of one worker.
pub struct Upstreams {
    idle: RefCell<HashMap<SocketAddr, Vec<IdleConn>, foldhash::fast::FixedState>>,
    pending: RefCell<HashMap<SocketAddr, Arc<Semaphore>, foldhash::fast::FixedState>>,
    http1: http1::Builder,
}

/// A response, the connection it came on, and what it took.
pub struct Exchange {
    pub response: Response<Incoming>,
    /// `None` for HTTP/2 (streams need no release).
    pub conn: Option<Pooled>,
    /// Connections opened for this request.
    pub opened: u32,
    /// It was sent on an already open connection.
    pub reused: bool,
    /// It was sent again after a connection died unanswered.
    pub retried: bool,
    /// Index in the targets of the server that answered.
    pub attempt: u8,
}

/// A connection in use; back to the pool when its response has ended.
pub struct Pooled {
    pool: Rc<Upstreams>,
    addr: SocketAddr,
    sender: SendRequest<RequestBody>,
    watch: Rc<Watch>,
    born: Instant,
    max_idle: usize,
    max_lifetime: Option<Duration>,
}

impl Pooled {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The response was read to its end: the connection can serve again.
    pub fn release(self) {
        if self.max_lifetime.is_some_and(|l| self.born.elapsed() >= l) {
            // Old enough: closed, so that connections get spread anew.
            return;
        }
        let mut this = self;
        if this.sender.is_ready() {
            this.pool.clone().checkin(this);
        } else if !this.sender.is_closed() {
            // The connection task has not yet seen the end of the response;
            // hand the connection back once it has.
            tokio::task::spawn_local(async move {
                if this.sender.ready().await.is_ok() {
                    this.pool.clone().checkin(this);
                }
            });
        }
    }
}

/// What is kept of a bodiless idempotent request to send it again.
struct RetryCopy {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl RetryCopy {
    /// Whether `req` may be sent again should its connection die
    /// unanswered: idempotent and bodiless, where `settings` retry at all.
    fn eligible(req: &Request<RequestBody>, settings: &Settings<'_>) -> bool {
        use http_body::Body;
        !matches!(settings.retry, Retry::Never)
            && req.method().is_idempotent()
            && req.body().is_end_stream()
    }

    /// A copy of an eligible `req` when it has somewhere to go (`targets`
    /// addresses; a pool's retry budget not spent), else none: the copy is
    /// a header map clone, made only when it can be used. Boxed: kept
    /// across the send, it would otherwise grow every request's future
    /// (and its moves) by its size.
    fn of(
        req: &Request<RequestBody>,
        settings: &Settings<'_>,
        targets: usize,
    ) -> Option<Box<RetryCopy>> {
        let may = match settings.retry {
            Retry::Never => false,
            Retry::SameTarget => true,
            Retry::NextTarget(budget) => targets > 1 && budget.can_withdraw(),
        };
        (may && Self::eligible(req, settings)).then(|| {
            Box::new(RetryCopy {
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                headers: req.headers().clone(),
            })
        })
    }

    fn request(self) -> Request<RequestBody> {
        let mut r = Request::new(RequestBody::Empty);
        *r.method_mut() = self.method;
        *r.uri_mut() = self.uri;
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers;
        r
    }
}

/// Whether a failed exchange got nothing back (the connection closed or
/// broke before a parseable answer), so that an idempotent request may go
/// again (RFC 9110 §9.2.2).
fn unanswered(e: &hyper::Error) -> bool {
    !e.is_parse() && !e.is_user() && !e.is_timeout()
}

impl Upstreams {
    pub fn new() -> Rc<Self> {
        let mut http1 = http1::Builder::new();
        // Webservers may answer with odd header spacing; pass it through.
        http1.allow_spaces_after_header_name_in_responses(true);
        Rc::new(Upstreams {
            idle: RefCell::new(HashMap::default()),
            pending: RefCell::new(HashMap::default()),
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
        settings: &Settings<'_>,
    ) -> Option<(SendRequest<RequestBody>, Rc<Watch>, Instant)> {
        let mut map = self.idle.borrow_mut();
        let list = map.get_mut(&addr)?;
        let now = Instant::now();
        while let Some(c) = list.pop() {
            if now.duration_since(c.since) >= settings.idle {
                // The rest were parked earlier: all stale.
                list.clear();
                return None;
            }
            if settings
                .max_lifetime
                .is_some_and(|l| now.duration_since(c.born) >= l)
            {
                continue;
            }
            if c.sender.is_ready() {
                return Some((c.sender, c.watch, c.born));
            }
        }
        None
    }

    fn checkin(&self, conn: Pooled) {
        if conn.max_idle == 0 {
            return;
        }
        let mut map = self.idle.borrow_mut();
        let list = map.entry(conn.addr).or_default();
        if list.len() >= conn.max_idle {
            list.remove(0);
        }
        list.push(IdleConn {
            sender: conn.sender,
            watch: conn.watch,
            since: Instant::now(),
            born: conn.born,
        });
    }

    /// Closes idle connections older than `idle_for(their address)` or
    /// closed by the server.
    pub fn sweep(&self, idle_for: impl Fn(SocketAddr) -> Duration) {
        let now = Instant::now();
        self.idle.borrow_mut().retain(|addr, list| {
            let idle = idle_for(*addr);
            list.retain(|c| now.duration_since(c.since) < idle && !c.sender.is_closed());
            !list.is_empty()
        });
    }

    /// A slot for one more connect to `addr`, waiting up to the connect
    /// timeout when `max_pending` are in progress.
    async fn connect_slot(
        &self,
        addr: SocketAddr,
        settings: &Settings<'_>,
    ) -> Result<Option<OwnedSemaphorePermit>, ProxyError> {
        let Some(max) = settings.max_pending else {
            return Ok(None);
        };
        let sem = {
            let mut map = self.pending.borrow_mut();
            let sem = map
                .entry(addr)
                .or_insert_with(|| Arc::new(Semaphore::new(max)));
            sem.clone()
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        match tokio::time::timeout(settings.connect, sem.acquire_owned()).await {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => Err(ProxyError::ConnectQueueFull {
                addr,
                pending: max,
                after: settings.connect,
            }),
        }
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(SendRequest<RequestBody>, Rc<Watch>), ProxyError> {
        let stream = open(addr, timeout).await?;
        let (sender, conn) = self
            .http1
            .handshake(TokioIo::new(stream))
            .await
            .map_err(unsent(addr))?;
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
        mut req: Request<RequestBody>,
        settings: &Settings<'_>,
        fresh: bool,
    ) -> Result<Exchange, ProxyError> {
        let mut last = None;
        let mut opened = 0;
        let eligible = RetryCopy::eligible(&req, settings);
        let mut retry = RetryCopy::of(&req, settings, targets.len());
        let mut retried = false;
        'targets: for (attempt, &addr) in targets.iter().enumerate() {
            let mut fresh = fresh;
            loop {
                let mut pooled = if fresh {
                    None
                } else {
                    self.checkout(addr, settings)
                };
                let reused = pooled.is_some();
                let mut _slot = None;
                if pooled.is_none() {
                    // Boxed: only on a new connection, and it would
                    // otherwise grow every request's future.
                    _slot = match Box::pin(self.connect_slot(addr, settings)).await {
                        Ok(s) => s,
                        Err(e) => {
                            last = Some(e);
                            continue 'targets;
                        }
                    };
                    // A connection may have come back while this waited.
                    if !fresh && _slot.is_some() {
                        pooled = self.checkout(addr, settings);
                    }
                }
                let (mut sender, watch, born) = match pooled {
                    Some(s) => s,
                    None => match Box::pin(self.connect(addr, settings.connect)).await {
                        Ok((s, w)) => {
                            opened += 1;
                            (s, w, Instant::now())
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "upstream connect failed");
                            last = Some(e);
                            continue 'targets;
                        }
                    },
                };
                drop(_slot);
                let awaiting = Awaiting::start(&watch, settings.response);
                let sent = sender.try_send_request(req).await;
                drop(awaiting);
                let e = match sent {
                    Ok(response) => {
                        return Ok(Exchange {
                            response,
                            conn: Some(Pooled {
                                pool: self.clone(),
                                addr,
                                sender,
                                watch,
                                born,
                                max_idle: settings.max_idle,
                                max_lifetime: settings.max_lifetime,
                            }),
                            opened,
                            reused,
                            retried,
                            attempt: attempt as u8,
                        });
                    }
                    Err(_) if watch.expired.get() => {
                        return Err(ProxyError::ResponseTimeout {
                            addr,
                            after: settings.response,
                        });
                    }
                    Err(e) => e,
                };
                let mut e = e;
                if let Some(back) = e.take_message() {
                    req = back;
                    let error = ProxyError::Upstream {
                        addr,
                        sent: false,
                        source: e.into_error(),
                    };
                    tracing::debug!(%error, reused, "request came back unsent");
                    last = Some(error);
                    if reused {
                        // A pooled connection died under us: same server,
                        // next (or a new) connection.
                        continue;
                    }
                    continue 'targets;
                }
                let source = e.into_error();
                let copy = match retry.take() {
                    Some(copy) if unanswered(&source) => copy,
                    _ => {
                        let next = attempt + 1 < targets.len();
                        if let Retry::NextTarget(budget) = settings.retry {
                            if eligible && !retried && next && unanswered(&source) {
                                // Not copied: the budget was spent when it
                                // was sent.
                                budget.refuse();
                            }
                        }
                        return Err(ProxyError::exchange(addr, source));
                    }
                };
                match settings.retry {
                    Retry::SameTarget => {
                        tracing::debug!(%addr, error = %source, reused, "connection died unanswered; sending the idempotent request again");
                        req = copy.request();
                        retried = true;
                        fresh = true;
                        continue;
                    }
                    Retry::NextTarget(budget)
                        if attempt + 1 < targets.len() && budget.withdraw() =>
                    {
                        tracing::debug!(%addr, error = %source, reused, "connection died unanswered; sending the idempotent request to the next server");
                        req = copy.request();
                        retried = true;
                        last = Some(ProxyError::exchange(addr, source));
                        continue 'targets;
                    }
                    Retry::NextTarget(_) | Retry::Never => {
                        return Err(ProxyError::exchange(addr, source));
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| ProxyError::NoServer {
            pool: String::new(),
        }))
    }
}

/// A failure before the request left (a handshake): safe to retry.
fn unsent(addr: SocketAddr) -> impl FnOnce(hyper::Error) -> ProxyError {
    move |source| ProxyError::Upstream {
        addr,
        sent: false,
        source,
    }
}

/// Opens a TCP connection within `timeout`, without Nagle (small requests
/// and responses must not wait).
async fn open(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ProxyError> {
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
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
