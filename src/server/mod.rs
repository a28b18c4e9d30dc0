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
//! fails the start, not a thread; on shutdown ([`Server::shutdown`]), the
//! instance reports not ready ([`Lifecycle`]), workers stop accepting and
//! let connections finish up to `timeouts.drain`, then exit; the admin
//! listener answers until the last worker is done, and the access log is
//! written out before [`Server::join`] returns.

mod control;
mod drain;
mod https;
pub mod inbound;
mod listen;
mod worker;

pub use crate::lifecycle::{Lifecycle, NotReady};

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::access_log;
use crate::config::Protocol;
use crate::legacy::Tunnel;
use crate::metrics::Metrics;
use crate::snapshot::{SharedSnapshot, Snapshot};

/// A started server.
pub struct Server {
    addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    snapshot: Arc<SharedSnapshot>,
    metrics: Arc<Metrics>,
    tunnel: Arc<Tunnel>,
    lifecycle: Arc<Lifecycle>,
    /// Tells the workers to stop accepting and drain.
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    /// Tells the control thread (admin, checks) to stop, once the workers
    /// are done.
    stop_control: watch::Sender<bool>,
    control: JoinHandle<()>,
    /// The access log's writer and the server's own sender (dropped before
    /// waiting for the writer).
    log: Option<(access_log::Handle, access_log::Sender)>,
}

/// What every worker thread gets from the server.
#[derive(Clone)]
struct Shared {
    snapshot: Arc<SharedSnapshot>,
    metrics: Arc<Metrics>,
    tunnel: Arc<Tunnel>,
    lifecycle: Arc<Lifecycle>,
    /// The `https` listeners' TLS configuration (one for all workers: the
    /// key cache is shared).
    tls: Option<crate::tls::Termination>,
    log: Option<access_log::Sender>,
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
        // Shared like the listeners, so that a second instance can start
        // beside this one (an upgrade). Not deferred: it is off the
        // request path, and a probe that connects without speaking is
        // accepted (and counted in its log) like any other.
        let admin = config
            .admin
            .map(|a| listen::bind(a, listen::Options::default()))
            .transpose()?;
        let admin_addr = admin.as_ref().map(|a| a.local_addr()).transpose()?;
        let snapshot = Arc::new(SharedSnapshot::new(snapshot));
        let metrics = Arc::new(Metrics::with_workers(workers));
        let tls = match &config.tls {
            Some(t)
                if config
                    .listeners
                    .iter()
                    .any(|l| l.protocol == Protocol::Https) =>
            {
                Some({
                    let shared = snapshot.clone();
                    let current = move || shared.load().certs.clone();
                    crate::tls::server_config(current, t.key_cache, &metrics.tls)
                        .map_err(std::io::Error::other)?
                })
            }
            _ => None,
        };
        let shared = snapshot.clone();
        let current = move || shared.load().config.clone();
        let (log_sender, log_handle) = access_log::start(current, metrics.clone())?;
        let lifecycle = Arc::new(Lifecycle::new(workers, config.limits.max_connections));
        let shared = Shared {
            snapshot: snapshot.clone(),
            tunnel: Arc::new(Tunnel::new(metrics.legacy.up.clone())),
            metrics,
            lifecycle: lifecycle.clone(),
            tls,
            log: Some(log_sender.clone()),
        };
        let (shutdown, rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(workers);
        for id in (0..workers).rev() {
            let sockets = per_worker.pop().unwrap_or_default();
            let (shared, rx) = (shared.clone(), rx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("predictor-w{id}"))
                .spawn(move || worker::run(id, shared, sockets, rx))?;
            threads.push(thread);
        }
        let (stop_control, control_rx) = watch::channel(false);
        let control = control::Control {
            admin: crate::admin::Admin {
                snapshot: snapshot.clone(),
                metrics: shared.metrics.clone(),
                tunnel: shared.tunnel.clone(),
                lifecycle: lifecycle.clone(),
                top: Default::default(),
            },
            listener: admin,
        };
        let control = std::thread::Builder::new()
            .name("predictor-ctl".into())
            .spawn(move || control.run(control_rx))?;
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
            lifecycle,
            shutdown,
            workers: threads,
            stop_control,
            control,
            log: Some((log_handle, log_sender)),
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

    /// Readiness, draining and open connections.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// Reopens the access log file (after logrotate moved it: `SIGUSR1`).
    pub fn reopen_access_log(&self) {
        if let Some((handle, _)) = &self.log {
            handle.reopen();
        }
    }

    /// Reports not ready (`/readyz` 503) while still accepting: the
    /// first step of a shutdown behind an L4 tier
    /// (`timeouts.drain_notice`), whose checks then take the instance out
    /// before [`Server::shutdown`] closes the listeners.
    pub fn announce_shutdown(&self) {
        self.lifecycle.start_draining();
    }

    /// Reports not ready, stops accepting and lets connections drain;
    /// [`Server::join`] waits.
    pub fn shutdown(&self) {
        self.lifecycle.start_draining();
        let _ = self.shutdown.send(true);
    }

    /// Waits for every worker to finish draining, then stops the control
    /// thread and writes out the access log.
    pub fn join(mut self) {
        for t in self.workers {
            let _ = t.join();
        }
        let _ = self.stop_control.send(true);
        let _ = self.control.join();
        if let Some((handle, sender)) = self.log.take() {
            drop(sender);
            handle.finish();
        }
    }
}
