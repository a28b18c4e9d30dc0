//! HTTP/2 with prior knowledge (h2c) to one upstream, for a legacy
//! balancer that speaks it: one multiplexed connection per worker instead
//! of a pool. Requests are sent with an absolute target (`:authority` from
//! the routed host); the response deadline is per stream.

use std::cell::RefCell;
use std::net::SocketAddr;

use http::{HeaderMap, Method, Request, Uri, Version, header};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::time::Instant;

use super::super::LocalExec;
use super::super::body::RequestBody;
use super::super::error::ProxyError;
use super::{Exchange, Received, Retry, Settings, open};

struct Conn {
    addr: SocketAddr,
    sender: SendRequest<RequestBody>,
    born: Instant,
    used: Instant,
}

/// The HTTP/2 connection of one worker to one upstream.
pub struct H2Upstream {
    conn: RefCell<Option<Conn>>,
    /// Held while a connection is being opened, so that concurrent
    /// requests wait for it instead of opening their own.
    connecting: tokio::sync::Mutex<()>,
    builder: http2::Builder<LocalExec>,
}

impl Default for H2Upstream {
    fn default() -> Self {
        let mut builder = http2::Builder::new(LocalExec);
        builder.timer(TokioTimer::new());
        H2Upstream {
            conn: RefCell::new(None),
            connecting: tokio::sync::Mutex::new(()),
            builder,
        }
    }
}

impl H2Upstream {
    /// The open connection to `addr`, when it can take a request.
    fn usable(
        &self,
        addr: SocketAddr,
        settings: &Settings<'_>,
    ) -> Option<SendRequest<RequestBody>> {
        let mut slot = self.conn.borrow_mut();
        let c = slot.as_mut()?;
        let now = Instant::now();
        let stale = c.addr != addr
            || c.sender.is_closed()
            || now.duration_since(c.used) >= settings.idle
            || settings
                .max_lifetime
                .is_some_and(|l| now.duration_since(c.born) >= l);
        if stale {
            // Dropping the sender lets the connection finish its streams
            // and close.
            *slot = None;
            return None;
        }
        c.used = now;
        Some(c.sender.clone())
    }

    /// A sender, and whether it is an already open connection.
    async fn sender(
        &self,
        addr: SocketAddr,
        settings: &Settings<'_>,
    ) -> Result<(SendRequest<RequestBody>, bool), ProxyError> {
        if let Some(s) = self.usable(addr, settings) {
            return Ok((s, true));
        }
        let _opening = self.connecting.lock().await;
        if let Some(s) = self.usable(addr, settings) {
            return Ok((s, true));
        }
        let stream = open(addr, settings.connect).await?;
        let (sender, conn) = self
            .builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(unsent(addr))?;
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream h2 connection ended");
            }
        });
        let now = Instant::now();
        *self.conn.borrow_mut() = Some(Conn {
            addr,
            sender: sender.clone(),
            born: now,
            used: now,
        });
        Ok((sender, false))
    }

    /// Sends `req` (origin-form, with `Host`) as an HTTP/2 stream.
    pub async fn send(
        &self,
        addr: SocketAddr,
        req: Request<RequestBody>,
        settings: &Settings<'_>,
    ) -> Result<Exchange, ProxyError> {
        let mut req = to_h2(req);
        let mut retry = RetryCopy::of(&req, settings);
        let mut opened = 0;
        let mut retried = false;
        let mut first_reused = None;
        loop {
            let (mut sender, reused) = self.sender(addr, settings).await?;
            opened += u32::from(!reused);
            first_reused.get_or_insert(reused);
            let sent = tokio::time::timeout(settings.response, sender.try_send_request(req)).await;
            let mut e = match sent {
                Err(_) => {
                    return Err(ProxyError::ResponseTimeout {
                        addr,
                        after: settings.response,
                    });
                }
                Ok(Ok(response)) => {
                    return Ok(Exchange {
                        response: response.map(Received::H2),
                        fields: None,
                        opened,
                        reused: first_reused.unwrap_or(false),
                        retried,
                        attempt: 0,
                    });
                }
                Ok(Err(e)) => e,
            };
            // Not sent (the connection was closing): on a new one.
            if let Some(back) = e.take_message() {
                self.conn.borrow_mut().take();
                if retried {
                    return Err(ProxyError::Upstream {
                        addr,
                        sent: false,
                        source: e.into_error(),
                    });
                }
                req = back;
                retried = true;
                continue;
            }
            let source = e.into_error();
            match retry.take() {
                Some(copy) if unanswered(&source) => {
                    tracing::debug!(%addr, error = %source, "h2 stream died unanswered; sending the idempotent request again");
                    self.conn.borrow_mut().take();
                    req = copy.request();
                    retried = true;
                }
                _ => return Err(ProxyError::exchange(addr, source)),
            }
        }
    }
}

/// HTTP/2 carries the authority in `:authority`, from an absolute target;
/// the `Host` header goes.
fn to_h2(req: Request<RequestBody>) -> Request<RequestBody> {
    let (mut parts, body) = req.into_parts();
    if let Some(host) = parts.headers.remove(header::HOST) {
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        if let Ok(uri) = http::Uri::builder()
            .scheme("http")
            .authority(host.as_bytes())
            .path_and_query(pq)
            .build()
        {
            parts.uri = uri;
        }
    }
    parts.version = http::Version::HTTP_2;
    Request::from_parts(parts, body)
}

/// What is kept of a bodiless idempotent request to send it again.
struct RetryCopy {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl RetryCopy {
    /// A copy of `req` when `settings` retry and it may go again
    /// (idempotent and bodiless, RFC 9110 §9.2.2). Boxed: kept across the
    /// send, it would otherwise grow the request's future by its size.
    fn of(req: &Request<RequestBody>, settings: &Settings<'_>) -> Option<Box<RetryCopy>> {
        use http_body::Body;
        let may = !matches!(settings.retry, Retry::Never)
            && req.method().is_idempotent()
            && req.body().is_end_stream();
        may.then(|| {
            Box::new(RetryCopy {
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                headers: req.headers().clone(),
            })
        })
    }

    fn request(self) -> Request<RequestBody> {
        let mut r = Request::new(RequestBody::empty());
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

/// A failure before the request left (a handshake): safe to retry.
fn unsent(addr: SocketAddr) -> impl FnOnce(hyper::Error) -> ProxyError {
    move |source| ProxyError::Upstream {
        addr,
        sent: false,
        source,
    }
}
