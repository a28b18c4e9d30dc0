//! The `predictor` command: parses arguments, sets up logging and signals,
//! and calls the library. Errors become messages and exit codes here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use predictor::config::ConfigError;
use predictor::server::Server;
use predictor::snapshot::{Snapshot, Summary};

/// jemalloc, configured in `.cargo/config.toml` to hand freed pages back
/// to the OS from a background thread: a reload's temporary build memory
/// does not stay resident (glibc keeps it once its mmap threshold adapts).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    version,
    about = "HTTP load balancer for mass web hosting, built to migrate a datacenter live"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config folder. SIGHUP reloads it; SIGTERM/SIGINT drain
    /// and exit 0 (a second one exits at once); SIGUSR1 reopens the access
    /// log file.
    Run {
        /// The config folder (holding predictor.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config folder: a one-line summary, or every problem found.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show where a host goes, and why.
    Route {
        #[arg(long, short)]
        config: PathBuf,
        /// A host as a client would send it (`Host` header value).
        host: String,
    },
    /// Run on a generated demo config with in-process webservers.
    Demo {
        /// Tenants in the generated table.
        #[arg(long, default_value_t = 10_000)]
        tenants: usize,
        /// Where to listen (a free port is picked if this one is taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { config } => return check(&config),
        Command::Route { config, host } => route(&config, &host),
        Command::Demo { tenants, listen } => demo(tenants, listen),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("predictor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal, never in files or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn load(dir: &Path) -> anyhow::Result<Snapshot> {
    Snapshot::load(dir).map_err(|e| match e {
        ConfigError::Invalid(p) => {
            anyhow::anyhow!("{} problem(s) in {}:\n{p}", p.total(), dir.display())
        }
        other => anyhow::Error::new(other),
    })
}

fn check(dir: &Path) -> ExitCode {
    let started = std::time::Instant::now();
    match Snapshot::load(dir) {
        Ok(snap) => {
            for w in &snap.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "ok: {} (loaded in {} ms)",
                Summary::of(&snap),
                started.elapsed().as_millis()
            );
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid(p)) => {
            for problem in p.iter() {
                eprintln!("error: {problem}");
            }
            let omitted = p.total() - p.iter().count();
            if omitted > 0 {
                eprintln!("error: ... and {omitted} more");
            }
            eprintln!("{} problem(s); nothing would be loaded", p.total());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Explains `host`: from the running instance named by the config's
/// `[admin]` address when it answers (with live load and health), else
/// from the config folder alone.
fn route(dir: &Path, host: &str) -> anyhow::Result<()> {
    let snap = load(dir)?;
    let live = match snap.config.admin {
        Some(admin) => {
            let path = format!("/route?host={}", predictor::admin::encode_host(host));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            match runtime.block_on(predictor::admin::fetch(admin, &path)) {
                Ok(text) => {
                    println!("live:      from the running instance at {admin}");
                    print!("{text}");
                    return Ok(());
                }
                Err(e) => format!("no running instance answered at {admin} ({e})"),
            }
        }
        None => "no [admin] address in the config".to_string(),
    };
    println!("live:      not shown: {live}; from the config folder alone");
    print!("{}", predictor::routing::explain::explain(&snap, host));
    Ok(())
}

fn run(dir: &Path) -> anyhow::Result<()> {
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

fn demo(tenants: usize, listen: SocketAddr) -> anyhow::Result<()> {
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
    let dir = std::env::temp_dir().join(format!("predictor-demo-{}", std::process::id()));
    let folder = predictor::demo::write_folder(&dir, tenants, listen, &backends)?;
    let (server, load_ms) = predictor::demo::serve(&dir)?;
    let server = Arc::new(server);
    let bound = server.local_addrs()[0];
    print!(
        "{}",
        predictor::demo::banner(&folder, bound, tenants, load_ms)
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
                _ = usr1.recv() => {
                    tracing::info!("reopening the access log");
                    server.reopen_access_log();
                }
            }
        }
        let _ = stop_watch.send(true);
        let drain = server.snapshot().load().config.timeouts.drain;
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
