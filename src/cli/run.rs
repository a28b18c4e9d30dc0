//! `predictor run` and `predictor demo`: the server started, and the
//! control loop around it (signals, the folder watch, the shutdown with
//! its notice and drain). The binary's edge: `anyhow` errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use predictor::server::Server;
use predictor::snapshot::Summary;

use super::{init_logging, load};

pub fn run(dir: &Path) -> anyhow::Result<()> {
    init_logging();
    // Handled from the start: a reload or a log rotation while a big
    // table loads must not kill the process (their default action).
    let signals = Signals::new()?;
    let started = std::time::Instant::now();
    let snap = load(dir)?;
    for w in &snap.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(
        summary = %Summary::of(&snap),
        took_ms = started.elapsed().as_millis() as u64,
        "config loaded"
    );
    let server = Arc::new(Server::start(snap).context("cannot start")?);
    control_loop(signals, server, Some(dir.to_path_buf()))
}

pub fn demo(tenants: usize, listen: SocketAddr) -> anyhow::Result<()> {
    init_logging();
    let signals = Signals::new()?;
    // The demo's backends run on this runtime; predictor's workers on theirs.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let backends = runtime.block_on(predictor::demo::start_backends())?;
    let listen = if std::net::TcpListener::bind(listen).is_ok() {
        listen
    } else {
        eprintln!("{listen} is taken; picking a free port");
        SocketAddr::new(listen.ip(), 0)
    };
    // A fixed port, written into the config: `predictor route` finds the
    // running demo by it.
    let admin = predictor::demo::free_address(listen.ip())?;
    let dir = std::env::temp_dir().join(format!("predictor-demo-{}", std::process::id()));
    let at = predictor::demo::Addresses { listen, admin };
    let folder = predictor::demo::write_folder(&dir, tenants, at, &backends)?;
    let (server, load_ms) = predictor::demo::serve(&dir)?;
    let server = Arc::new(server);
    let at = predictor::demo::Addresses {
        listen: server.local_addrs()[0],
        admin,
    };
    // The lines printed run as copied: this binary by its own path.
    let bin = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "predictor".into());
    print!(
        "{}",
        predictor::demo::banner(&folder, at, &bin, tenants, load_ms)
    );
    let result = control_loop(signals, server, Some(dir.clone()));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The signals `run` handles, registered (so no longer fatal) from the
/// start, on the runtime of the control loop.
struct Signals {
    runtime: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _in = runtime.enter();
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            runtime,
        })
    }
}

fn second_signal() {
    tracing::warn!("second signal: exiting without waiting for the drain");
    std::process::exit(1);
}

fn join(server: Arc<Server>) {
    match Arc::try_unwrap(server) {
        Ok(s) => s.join(),
        Err(_) => tracing::error!("server still referenced at exit"),
    }
}

/// Waits for signals: SIGHUP reloads `dir`, SIGUSR1 reopens the access
/// log, SIGTERM/SIGINT drain and return once the server is done (a second
/// one exits at once). With a `dir`, the folder is also watched and
/// reloaded when its files change.
fn control_loop(signals: Signals, server: Arc<Server>, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let Signals {
        runtime,
        mut term,
        mut int,
        mut hup,
        mut usr1,
    } = signals;
    runtime.block_on(async {
        // Signals that came during the start are handled now.
        let (stop_watch, stopped) = tokio::sync::watch::channel(false);
        let reloader = dir.map(|d| {
            Arc::new(predictor::reload::Reloader::new(
                server.snapshot().clone(),
                &d,
                server.metrics().clone(),
            ))
        });
        if let Some(r) = &reloader {
            let r = r.clone();
            tokio::spawn(async move {
                // A watcher that cannot start leaves SIGHUP working.
                if let Err(e) = predictor::reload::watch(r, stopped).await {
                    tracing::error!(error = %e, "not watching the config folder; SIGHUP still reloads");
                }
            });
        }
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    if let Some(r) = reloader.clone() {
                        // Parsing a big table is blocking work.
                        let _ = tokio::task::spawn_blocking(move || r.reload(true)).await;
                    }
                }
                _ = server.snapshot().guard.confirmation() => {
                    if let Some(r) = reloader.clone() {
                        let _ = tokio::task::spawn_blocking(move || r.confirm()).await;
                    }
                }
                _ = usr1.recv() => {
                    tracing::info!("reopening the access log");
                    server.reopen_access_log();
                }
            }
        }
        let _ = stop_watch.send(true);
        let (drain, notice) = {
            let t = server.snapshot().load().config.timeouts;
            (t.drain, t.drain_notice)
        };
        if !notice.is_zero() {
            tracing::info!(notice = ?notice, "shutting down: not ready, still accepting until the L4 tier's checks take this instance out");
            server.announce_shutdown();
            tokio::select! {
                _ = tokio::time::sleep(notice) => {}
                _ = term.recv() => second_signal(),
                _ = int.recv() => second_signal(),
            }
        }
        tracing::info!(deadline = ?drain, "shutting down: not ready, no new connections, draining");
        server.shutdown();
        drop(reloader);
        let mut drained = tokio::task::spawn_blocking(move || join(server));
        // An operator who signals again does not want to wait.
        tokio::select! {
            _ = &mut drained => tracing::info!("drained, exiting"),
            _ = term.recv() => second_signal(),
            _ = int.recv() => second_signal(),
        }
        anyhow::Ok(())
    })
}
