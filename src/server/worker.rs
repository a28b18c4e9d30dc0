//! One worker thread: its single-threaded runtime, its accept loops, its
//! client connections and its upstream pools, and its drain.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::drain::{Drain, Watcher};
use super::inbound::{self, Origin};
use super::listen::Bound;
use super::{Shared, https};
use crate::config::{Listener, Protocol, ProxyProtocol};
use crate::proxy::client_io::{ClientIo, ConnShared};
use crate::proxy::clock;
use crate::proxy::front;
use crate::proxy::handler::{ConnCtx, WorkerShared};
use crate::proxy::request_id::RequestIds;
use crate::proxy::upstream::{H2Upstream, Upstreams};
use crate::tls::hello::Rewind;

pub(super) fn run(
    index: usize,
    shared: Shared,
    sockets: super::listen::WorkerSockets,
    mut shutdown: watch::Receiver<bool>,
) {
    let Shared {
        snapshot,
        metrics,
        tunnel,
        lifecycle,
        tls,
        log,
    } = shared;
    let limit = lifecycle.limit().clone();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a worker runtime");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    let log = log.map(|sender| Rc::new(crate::access_log::Lines::new(sender)));
    local.block_on(&runtime, async move {
        if let Some(lines) = &log {
            tokio::task::spawn_local(crate::access_log::flush_loop(lines.clone()));
        }
        let worker = Rc::new(WorkerShared {
            shadow: Default::default(),
            index,
            snapshot: snapshot.clone(),
            upstreams: Upstreams::new(),
            legacy_h2: H2Upstream::default(),
            tunnel,
            metrics,
            log: log.clone(),
            ids: RequestIds::new(),
            read_buffers: Default::default(),
            upgraded: watch::Sender::new(()),
        });
        let builders = Rc::new(Builders::new(&snapshot.load().config, tls));
        let drain = Rc::new(Drain::new());
        let mut accepting = Vec::new();
        for bound in sockets {
            let Bound {
                socket,
                index,
                listener: config,
            } = bound;
            match TcpListener::from_std(socket) {
                Ok(listener) => accepting.push(tokio::task::spawn_local(accept_loop(
                    worker.clone(),
                    builders.clone(),
                    drain.clone(),
                    listener,
                    Rc::new(Listening { index, config }),
                    limit.clone(),
                ))),
                Err(e) => tracing::error!(error = %e, "cannot use a listening socket"),
            }
        }
        let sweeper = tokio::task::spawn_local(sweep(worker.clone()));
        lifecycle.worker_started();
        // The stop is read from its channel by a task of its own, and
        // this future waits on a flag: the `LocalSet` polls this future at
        // each of its turns (the channel cost ~450 instructions per
        // accepted connection, a join handle ~200: `CG_CLOSE=1`).
        let stop = Rc::new(StopFlag::default());
        tokio::task::spawn_local({
            let stop = stop.clone();
            async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
                stop.raise();
            }
        });
        std::future::poll_fn(|cx| stop.poll(cx)).await;
        for task in &accepting {
            task.abort();
        }
        for task in accepting {
            // Cancelled: its listener is closed.
            let _ = task.await;
        }
        let limit = snapshot.load().config.timeouts.drain;
        let deadline = tokio::time::Instant::now() + limit;
        tracing::debug!(connections = drain.count(), "draining");
        // HTTP connections finish their requests and close; TLS passed
        // through and upgraded streams run on until they end or the
        // deadline.
        let done = async {
            drain.run().await;
            worker.upgraded.closed().await;
        };
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            tracing::warn!(after = ?limit, "drain deadline reached, closing the remaining connections");
        }
        sweeper.abort();
    });
}

/// A worker's stop as its main future waits for it: a flag and the waker
/// to call when it is raised.
#[derive(Default)]
struct StopFlag {
    raised: std::cell::Cell<bool>,
    waker: std::cell::Cell<Option<std::task::Waker>>,
}

impl StopFlag {
    fn raise(&self) {
        self.raised.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn poll(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.raised.get() {
            return std::task::Poll::Ready(());
        }
        let waker = match self.waker.take() {
            Some(w) if w.will_wake(cx.waker()) => w,
            _ => cx.waker().clone(),
        };
        self.waker.set(Some(waker));
        std::task::Poll::Pending
    }
}

/// The HTTP/2 connections' limits ([`crate::proxy::h2`]; HTTP/1 is
/// predictor's own too: [`front`]), and the TLS acceptor of the `https`
/// listeners.
pub(super) struct Builders {
    pub(super) h2: crate::proxy::h2::Limits,
    pub(super) tls: Option<(tokio_rustls::TlsAcceptor, Arc<crate::tls::keys::KeyCache>)>,
}

impl Builders {
    fn new(config: &crate::config::Config, tls: Option<crate::tls::Termination>) -> Self {
        Builders {
            h2: crate::proxy::h2::Limits {
                max_concurrent_streams: config.limits.h2_max_concurrent_streams,
                max_header_list_size: u32::try_from(config.limits.max_request_header_bytes)
                    .unwrap_or(u32::MAX),
            },
            tls: tls.map(|t| (tokio_rustls::TlsAcceptor::from(t.config), t.keys)),
        }
    }
}

/// What an accept loop's connections know of their listener.
struct Listening {
    /// The listener's position in the config's `[[listen]]` tables.
    index: usize,
    /// The listener as configured at start-up.
    config: Listener,
}

impl Listening {
    /// The listener's PROXY protocol settings in `config` (the serving
    /// one: the sources are reloaded live), or those it was started with
    /// when that config changed its listeners (which needs a restart).
    fn proxy_protocol(&self, config: &crate::config::Config) -> Option<Arc<ProxyProtocol>> {
        match config.listeners.get(self.index) {
            Some(l) if l.address == self.config.address => l.proxy_protocol.clone(),
            _ => self.config.proxy_protocol.clone(),
        }
    }
}

async fn accept_loop(
    worker: Rc<WorkerShared>,
    builders: Rc<Builders>,
    drain: Rc<Drain>,
    listener: TcpListener,
    listening: Rc<Listening>,
    limit: Arc<Semaphore>,
) {
    loop {
        // At the connection limit, stop accepting: new clients wait in the
        // kernel's backlog instead of being accepted and starved.
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                worker.metrics.connections_accepted.increment(1);
                // Boxed: tokio copies a task's future whole as it spawns
                // it and sets its stage (five times per connection), so
                // the task holds a pointer rather than the connection's
                // state (~2,000 instructions of `memcpy` per connection,
                // `CG_CLOSE=1 benches/callgrind.sh`). Its polls read the
                // clock once each (`proxy::clock`).
                tokio::task::spawn_local(clock::Turns::new(Box::pin(serve(
                    worker.clone(),
                    builders.clone(),
                    drain.watcher(),
                    stream,
                    peer,
                    listening.clone(),
                    permit,
                ))));
            }
            Err(e) => {
                // Out of file descriptors or memory: back off a little
                // instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(
    worker: Rc<WorkerShared>,
    builders: Rc<Builders>,
    watcher: Watcher,
    mut stream: TcpStream,
    peer: SocketAddr,
    listening: Rc<Listening>,
    _permit: OwnedSemaphorePermit,
) {
    let protocol = listening.config.protocol;
    let (settings, proxy_protocol) = {
        let snap = worker.snapshot.load();
        let c = &snap.config;
        let settings = front::Settings {
            idle: c.timeouts.client_idle,
            header: c.timeouts.request_header,
            max_head: c.limits.max_request_header_bytes,
            sniff_h2: protocol == Protocol::Auto,
            tls: false,
        };
        (settings, listening.proxy_protocol(c))
    };
    let origin = match proxy_protocol {
        None => Origin {
            client: peer,
            destination: None,
        },
        Some(p) => {
            let m = &worker.metrics.proxy_headers;
            match Box::pin(inbound::read(&mut stream, peer, &p, m)).await {
                Ok(origin) => origin,
                Err(e) => {
                    e.count(m);
                    tracing::debug!(source = %peer, error = %e, "connection closed at its PROXY header");
                    return;
                }
            }
        }
    };
    let peer = origin.client;
    let shared = Arc::new(ConnShared::default());
    match protocol {
        Protocol::H2c => {
            let ctx = ConnCtx::new(worker, shared, peer, "http");
            Box::pin(serve_h2(ctx, &builders, watcher, stream, settings)).await;
        }
        Protocol::Auto | Protocol::Http1 => {
            let ctx = ConnCtx::new(worker, shared, peer, "http");
            // Inline: this future is boxed as its task is spawned, and the
            // HTTP/1 connection's state is most of it. (Boxed here too, its
            // state was copied twice per accept: ~5.8 KiB, ~660
            // instructions of `memcpy`, `CG_CLOSE=1`.)
            let back = front::serve(&ctx, stream, settings, watcher.signal()).await;
            if let Some((stream, read)) = back {
                // The HTTP/2 preface on an `auto` listener: hyper's state
                // boxed, so that it does not grow every connection's.
                let io = Rewind::new(read.to_vec(), stream);
                Box::pin(serve_h2(ctx, &builders, watcher, io, settings)).await;
            }
        }
        Protocol::Https => {
            // Boxed: the TLS handshake's state would otherwise size (and
            // be copied with) every plain connection's task.
            Box::pin(https::serve(
                worker, &builders, watcher, stream, origin, shared, settings,
            ))
            .await
        }
    }
}

/// Serves an HTTP/2 connection (prior knowledge, ALPN `h2`, or the
/// preface on an `auto` listener: [`crate::proxy::h2`]), its idle timeout
/// kept by [`ClientIo`]. The watcher is held until the connection closes
/// (the drain waits for it).
pub(super) async fn serve_h2<T>(
    ctx: ConnCtx,
    builders: &Builders,
    watcher: Watcher,
    io: T,
    settings: front::Settings,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = ClientIo::new(io, ctx.conn.clone(), settings.idle, settings.header);
    crate::proxy::h2::serve(Rc::new(ctx), io, builders.h2, watcher.signal()).await;
}

/// Closes pooled upstream connections that sat idle too long.
async fn sweep(worker: Rc<WorkerShared>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let snap = worker.snapshot.load();
        let idle = snap.config.timeouts.upstream_idle;
        let legacy = snap
            .config
            .legacy
            .as_ref()
            .map(|l| (l.address, l.idle_timeout));
        drop(snap);
        worker.upstreams.sweep(|addr| match legacy {
            Some((a, t)) if a == addr => t,
            _ => idle,
        });
    }
}
