//! The running process: listening sockets, worker threads, connections,
//! reloads and draining.
//!
//! One single-threaded tokio runtime per worker thread, each with its own
//! `SO_REUSEPORT` socket per listening address, so the kernel spreads
//! connections over workers and a connection lives on one core from accept
//! to close (no work stealing, no shared pools). Every worker reads the same
//! [`SharedSnapshot`]. Control work (signals, reloads) runs elsewhere and
//! only ever swaps the snapshot.
//!
//! Invariants: binding happens before any worker starts, so a bad address
//! fails the start, not a thread; on shutdown, workers stop accepting, let
//! connections finish up to `timeouts.drain`, then exit.

mod control;
mod https;
mod listen;

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::{ConfigError, Protocol};
use crate::legacy::Tunnel;
use crate::metrics::Metrics;
use crate::proxy::LocalExec;
use crate::proxy::client_io::{ClientIo, ConnShared, Mode};
use crate::proxy::handler::{self, ConnCtx, Worker};
use crate::proxy::upstream::{H2Upstream, Upstreams};
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::tls::store::CertChanges;

/// A started server.
pub struct Server {
    addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    snapshot: Arc<SharedSnapshot>,
    metrics: Arc<Metrics>,
    tunnel: Arc<Tunnel>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

/// What every worker thread gets from the server.
#[derive(Clone)]
struct Shared {
    snapshot: Arc<SharedSnapshot>,
    metrics: Arc<Metrics>,
    tunnel: Arc<Tunnel>,
    limit: Arc<Semaphore>,
    /// The `https` listeners' TLS configuration (one for all workers: the
    /// key cache is shared).
    tls: Option<crate::tls::Termination>,
}

impl Server {
    /// Binds every listener of the snapshot's config and starts the workers.
    pub fn start(snapshot: Snapshot) -> std::io::Result<Server> {
        let config = snapshot.config.clone();
        let workers = match config.proxy.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (addrs, mut per_worker) = listen::bind_all(&config.listeners, workers)?;
        let admin = config.admin.map(std::net::TcpListener::bind).transpose()?;
        if let Some(a) = &admin {
            // tokio takes over only non-blocking sockets.
            a.set_nonblocking(true)?;
        }
        let admin_addr = admin.as_ref().map(|a| a.local_addr()).transpose()?;
        let snapshot = Arc::new(SharedSnapshot::new(snapshot));
        let metrics = Arc::new(Metrics::new());
        let tls = match &config.tls {
            Some(t)
                if config
                    .listeners
                    .iter()
                    .any(|l| l.protocol == Protocol::Https) =>
            {
                Some(
                    crate::tls::server_config(snapshot.clone(), t.key_cache, &metrics.tls)
                        .map_err(std::io::Error::other)?,
                )
            }
            _ => None,
        };
        let shared = Shared {
            snapshot: snapshot.clone(),
            tunnel: Arc::new(Tunnel::new(metrics.legacy.up.clone())),
            metrics,
            limit: Arc::new(Semaphore::new(config.limits.max_connections)),
            tls,
        };
        let (shutdown, rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(workers + 1);
        for id in (0..workers).rev() {
            let sockets = per_worker.pop().unwrap_or_default();
            let (shared, rx) = (shared.clone(), rx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("predictor-w{id}"))
                .spawn(move || run_worker(shared, sockets, rx))?;
            threads.push(thread);
        }
        let control = control::Control {
            snapshot: snapshot.clone(),
            metrics: shared.metrics.clone(),
            tunnel: shared.tunnel.clone(),
            admin,
        };
        threads.push(
            std::thread::Builder::new()
                .name("predictor-ctl".into())
                .spawn(move || control.run(rx))?,
        );
        for a in &addrs {
            tracing::info!(address = %a, workers, "listening");
        }
        if let Some(a) = admin_addr {
            tracing::info!(address = %a, "admin listening");
        }
        Ok(Server {
            addrs,
            admin_addr,
            snapshot,
            metrics: shared.metrics,
            tunnel: shared.tunnel,
            shutdown,
            threads,
        })
    }

    /// The bound addresses, in config order (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The admin listener's address, when one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn snapshot(&self) -> &Arc<SharedSnapshot> {
        &self.snapshot
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The state of the tunnel to the legacy balancer.
    pub fn tunnel(&self) -> &Arc<Tunnel> {
        &self.tunnel
    }

    /// Loads the config folder again and installs it; on error the running
    /// snapshot stays. Blocking: call from a blocking thread.
    pub fn reload(&self, dir: &Path) -> Result<u64, ConfigError> {
        reload(&self.snapshot, dir, &CertChanges::All)
    }

    /// Stops accepting and lets connections drain; [`Server::join`] waits.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits for every worker to finish draining.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Builds a snapshot from `dir` and swaps it in; the old one keeps serving
/// when anything is wrong. The tenant table is parsed again only when its
/// file changed ([`Snapshot::load_after`]), a certificate file only when
/// named by `certs`.
pub fn reload(
    shared: &SharedSnapshot,
    dir: &Path,
    certs: &CertChanges,
) -> Result<u64, ConfigError> {
    let started = std::time::Instant::now();
    let current = shared.load_full();
    let next = Snapshot::load_after(dir, &current, certs);
    // The previous snapshot is freed as soon as no request holds it.
    drop(current);
    match next {
        Ok(next) => {
            for w in &next.warnings {
                tracing::warn!("{w}");
            }
            let generation = shared.store(next);
            shared.record_reload(Ok(generation));
            tracing::info!(
                generation,
                took_ms = started.elapsed().as_millis() as u64,
                "config reloaded"
            );
            Ok(generation)
        }
        Err(e) => {
            tracing::error!(
                problems = e.count(),
                "reload refused, the previous config keeps serving"
            );
            shared.record_reload(Err(e.to_string()));
            // One line per problem, each with its file:line, so a log
            // search for the file finds them.
            for problem in e.to_string().lines() {
                tracing::error!("reload problem: {problem}");
            }
            Err(e)
        }
    }
}

fn run_worker(
    shared: Shared,
    sockets: Vec<(std::net::TcpListener, Protocol)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Shared {
        snapshot,
        metrics,
        tunnel,
        limit,
        tls,
    } = shared;
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
    local.block_on(&runtime, async move {
        let worker = Rc::new(Worker {
            snapshot: snapshot.clone(),
            upstreams: Upstreams::new(),
            legacy_h2: H2Upstream::default(),
            tunnel,
            metrics,
        });
        let builders = Rc::new(Builders::new(&snapshot.load().config, tls));
        let graceful = Rc::new(GracefulShutdown::new());
        let mut accepting = Vec::new();
        for (socket, protocol) in sockets {
            match TcpListener::from_std(socket) {
                Ok(listener) => accepting.push(tokio::task::spawn_local(accept_loop(
                    worker.clone(),
                    builders.clone(),
                    graceful.clone(),
                    listener,
                    protocol,
                    limit.clone(),
                ))),
                Err(e) => tracing::error!(error = %e, "cannot use a listening socket"),
            }
        }
        let sweeper = tokio::task::spawn_local(sweep(worker.clone()));
        let _ = shutdown.wait_for(|stop| *stop).await;
        for task in &accepting {
            task.abort();
        }
        for task in accepting {
            // Cancelled: its listener and its handle on `graceful` are gone.
            let _ = task.await;
        }
        let Ok(graceful) = Rc::try_unwrap(graceful) else {
            tracing::error!("draining without a shutdown handle");
            return;
        };
        let drain = snapshot.load().config.timeouts.drain;
        tracing::debug!(connections = graceful.count(), "draining");
        if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
            tracing::warn!(after = ?drain, "drain deadline reached, closing the remaining connections");
        }
        sweeper.abort();
    });
}

/// hyper connection builders, one per listener protocol, and the TLS
/// acceptor of the `https` listeners.
struct Builders {
    auto: auto::Builder<LocalExec>,
    http1: auto::Builder<LocalExec>,
    h2c: auto::Builder<LocalExec>,
    tls: Option<(tokio_rustls::TlsAcceptor, Arc<crate::tls::keys::KeyCache>)>,
}

impl Builders {
    fn new(config: &crate::config::Config, tls: Option<crate::tls::Termination>) -> Self {
        let make = || {
            let mut b = auto::Builder::new(LocalExec);
            b.http1()
                .keep_alive(true)
                .max_buf_size(config.limits.max_request_header_bytes);
            b.http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(config.limits.h2_max_concurrent_streams)
                .max_header_list_size(config.limits.max_request_header_bytes as u32);
            b
        };
        Builders {
            auto: make(),
            http1: make().http1_only(),
            h2c: make().http2_only(),
            tls: tls.map(|t| (tokio_rustls::TlsAcceptor::from(t.config), t.keys)),
        }
    }

    fn for_protocol(&self, p: Protocol) -> &auto::Builder<LocalExec> {
        match p {
            Protocol::Auto => &self.auto,
            // An https connection picks http1 or h2c by ALPN (`https`).
            Protocol::Http1 | Protocol::Https => &self.http1,
            Protocol::H2c => &self.h2c,
        }
    }
}

async fn accept_loop(
    worker: Rc<Worker>,
    builders: Rc<Builders>,
    graceful: Rc<GracefulShutdown>,
    listener: TcpListener,
    protocol: Protocol,
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
                tokio::task::spawn_local(serve(
                    worker.clone(),
                    builders.clone(),
                    graceful.watcher(),
                    stream,
                    peer,
                    protocol,
                    permit,
                ));
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
    worker: Rc<Worker>,
    builders: Rc<Builders>,
    watcher: Watcher,
    stream: TcpStream,
    peer: SocketAddr,
    protocol: Protocol,
    _permit: OwnedSemaphorePermit,
) {
    let (idle, header) = {
        let snap = worker.snapshot.load();
        (
            snap.config.timeouts.client_idle,
            snap.config.timeouts.request_header,
        )
    };
    let shared = Arc::new(ConnShared::default());
    let (mode, proto) = match protocol {
        Protocol::Auto => (Mode::Unknown, "http"),
        Protocol::Http1 => (Mode::Http1, "http"),
        Protocol::H2c => (Mode::Http2, "http"),
        Protocol::Https => {
            let timeouts = https::Timeouts { idle, header };
            return https::serve(worker, &builders, watcher, stream, peer, shared, timeouts).await;
        }
    };
    let io = TokioIo::new(ClientIo::new(stream, shared.clone(), mode, idle, header));
    let ctx = Rc::new(ConnCtx::new(worker, shared, peer, proto));
    let service = service_fn(move |req| handler::handle(ctx.clone(), req));
    let conn = builders
        .for_protocol(protocol)
        .serve_connection_with_upgrades(io, service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
    }
}

/// Closes pooled upstream connections that sat idle too long.
async fn sweep(worker: Rc<Worker>) {
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
