//! The `predictor` command: parses arguments, sets up logging and signals,
//! and calls the library. Errors become messages and exit codes here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use predictor::config::ConfigError;
use predictor::snapshot::{Snapshot, Summary};

/// jemalloc (feature `jemalloc`, on in the production build `cargo dist`),
/// configured in `.cargo/config.toml` to hand freed pages back to the OS
/// from a background thread: a reload's temporary build memory does not
/// stay resident (glibc keeps it once its mmap threshold adapts).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `--version`: the version and the allocator built in.
#[cfg(feature = "jemalloc")]
const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (allocator: jemalloc)");
#[cfg(not(feature = "jemalloc"))]
const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (allocator: system)");

#[derive(Parser)]
#[command(
    version = LONG_VERSION,
    about = "HTTP load balancer for mass web hosting, built to migrate a datacenter live"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The config folder argument, the same for every command that reads one.
#[derive(clap::Args)]
struct ConfigDir {
    /// The config folder: predictor.toml, and the tenant table and state
    /// file it names (see config/ for a commented example).
    #[arg(long, short, value_name = "DIR")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config folder, reloading it live.
    ///
    /// The folder is watched: any change to its files (an edit, a file
    /// renamed into place, a Kubernetes ConfigMap swap) is validated and
    /// served about 50 ms later; a change with a problem is refused with
    /// file:line in the log and the running config keeps serving.
    ///
    /// Signals: SIGHUP reloads at once (and reads every certificate file
    /// again); SIGTERM or SIGINT report not ready (/readyz answers 503),
    /// keep accepting for timeouts.drain_notice (0 by default), then stop
    /// accepting, let requests in progress finish within
    /// timeouts.drain and exit; a second SIGTERM/SIGINT exits at once;
    /// SIGUSR1 reopens the access log file (after logrotate).
    ///
    /// Exit status: 0 after a drain; 1 when the folder cannot be loaded
    /// or a listener cannot be opened at start, or on a second signal
    /// during the drain.
    Run {
        #[command(flatten)]
        config: ConfigDir,
    },
    /// Validate a config folder without serving it.
    ///
    /// Reads every file (predictor.toml, the tenant table, the state
    /// file, certificates) and prints a one-line summary, or every
    /// problem found with file:line and what was expected, in all files at
    /// once (the other files are checked as far as a broken predictor.toml
    /// allows). Exit status: 0 when the folder would load, 1 otherwise.
    Check {
        #[command(flatten)]
        config: ConfigDir,
    },
    /// Show where a host goes, and why.
    ///
    /// Prints the normalised host, tenant, tier, filer, migration state,
    /// pool and its servers in preference order. Asks the running instance
    /// at the [admin] address of the config (GET /route), which adds each
    /// server's health, requests in flight, latency and weight; when none
    /// answers (or the config has no [admin]), answers from the config
    /// folder alone and says so. Exit status: 0, or 1 when the folder
    /// cannot be loaded.
    Route {
        #[command(flatten)]
        config: ConfigDir,
        /// A host as a client would send it (`Host` header value).
        host: String,
    },
    /// Show what a change of the folder would move, before applying it.
    ///
    /// Compares the folder of --config (as it is now) with NEWDIR (the
    /// changed copy), or with the same folder read with another state
    /// file (--state FILE): tenants and hosts that change route by state,
    /// pool and filer; each webserver's capacity units served before and
    /// after, against its bound; whether the [reload] guard would hold the
    /// change; with --access-log, the share of its requests whose site
    /// moves. Text, or JSON with --json. Exit status: 0; 1 when a folder
    /// cannot be loaded.
    Diff {
        #[command(flatten)]
        config: ConfigDir,
        /// The changed folder.
        #[arg(required_unless_present = "state")]
        new: Option<PathBuf>,
        /// A changed state file, read with the folder's other files.
        #[arg(long, conflicts_with = "new")]
        state: Option<PathBuf>,
        /// An access log (JSON lines) whose requests are weighed.
        #[arg(long)]
        access_log: Option<PathBuf>,
        /// Weigh requests by the running instance's live counts (its
        /// busiest tenants over the last 15 minutes, from /top).
        #[arg(long, conflicts_with = "access_log")]
        live: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show whether the new copy of each filer in shadow is ready.
    ///
    /// Asks the running instance at the [admin] address of the config
    /// (GET /verify): per filer, the requests sampled and how many the new
    /// pool answered differently from the legacy balancer, and READY or
    /// NOT READY (why) by [shadow] min_samples and max_mismatch; the worst
    /// tenants with examples. Exit status: 0 when every filer shown is
    /// ready, 1 otherwise (or when no instance answers).
    Verify {
        #[command(flatten)]
        config: ConfigDir,
        /// Only this filer.
        filer: Option<String>,
    },
    /// Show the reload held for confirmation, or confirm it.
    ///
    /// A valid change of the folder that would change the route of more
    /// tenants, or leave out more host names, than [reload] allows is not
    /// installed: the running config keeps serving and the change waits.
    /// This asks the running instance at the [admin] address of the config
    /// what is held (what it would change) and, with --confirm, installs
    /// it. Exit status: 0; 1 when no instance answers, or --confirm finds
    /// nothing held.
    Reload {
        #[command(flatten)]
        config: ConfigDir,
        /// Install the held change.
        #[arg(long)]
        confirm: bool,
    },
    /// Show the tenants taking the most right now, refreshed like `top`.
    ///
    /// Asks the running instance at the [admin] address of the config
    /// (GET /top): each tenant's requests per second, requests in flight,
    /// requests refused by its limits (429) and requests that waited in a
    /// pool's queue, over the window, with its tier and concurrency limit.
    /// Stop with Ctrl-C. Exit status: 1 when no instance answers.
    Top {
        #[command(flatten)]
        config: ConfigDir,
        /// Seconds (or 30s, 5m) the rates are averaged over.
        #[arg(long, default_value = "10")]
        window: String,
        /// Order by: requests, in_flight, limited or queued.
        #[arg(long, default_value = "requests")]
        by: String,
        /// Rows shown.
        #[arg(short, default_value_t = 20)]
        n: usize,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// Print once and exit (for scripts).
        #[arg(long)]
        once: bool,
    },
    /// Run on a generated demo config with in-process webservers.
    ///
    /// Needs nothing installed: generates a tenant table, starts a few
    /// webservers and a stand-in legacy balancer in this process, serves,
    /// and prints ready-to-run curl and route lines (clients and the admin
    /// listener). Stop with Ctrl-C.
    Demo {
        /// Tenants in the generated table.
        #[arg(long, default_value_t = 10_000)]
        tenants: usize,
        /// Where to listen (a free port is picked if this one is taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
}

#[path = "cli/operator.rs"]
mod operator;
#[path = "cli/run.rs"]
mod run;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run::run(&config.config),
        Command::Check { config } => return check(&config.config),
        Command::Route { config, host } => route(&config.config, &host),
        Command::Reload { config, confirm } => operator::reload(&config.config, confirm),
        Command::Verify { config, filer } => {
            return operator::verify(&config.config, filer.as_deref());
        }
        Command::Diff {
            config,
            new,
            state,
            access_log,
            live,
            json,
        } => operator::diff(
            &config.config,
            new.as_deref(),
            state.as_deref(),
            access_log.as_deref(),
            live,
            json,
        ),
        Command::Top {
            config,
            window,
            by,
            n,
            interval,
            once,
        } => operator::top(
            &config.config,
            &format!("/top?format=text&window={window}&by={by}&n={n}"),
            interval,
            once,
        ),
        Command::Demo { tenants, listen } => run::demo(tenants, listen),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("predictor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error at `info`, or as `RUST_LOG` says (`debug`,
/// `predictor::proxy=debug,info`: target=level directives).
fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let info = || Targets::new().with_default(LevelFilter::INFO);
    let asked = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let (filter, bad) = match asked.as_deref().map(str::parse::<Targets>) {
        Some(Ok(targets)) => (targets, None),
        Some(Err(e)) => (info(), Some(e)),
        None => (info(), None),
    };
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only on a terminal, never in files or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry()
        .with(output)
        .with(filter)
        .init();
    if let Some(e) = bad {
        tracing::warn!(error = %e, "RUST_LOG not understood (expected target=level directives); logging at info");
    }
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
    print!("{}", predictor::admin::explain::explain(&snap, host));
    Ok(())
}
