//! The operator commands that ask a running instance or compare folders:
//! `diff`, `verify`, `reload`, `top` (the binary's edge: `anyhow` errors,
//! printing).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use predictor::config::ConfigError;
use predictor::snapshot::Snapshot;

use super::load;

/// Prints what replacing the folder `dir` by `new` (or its state file by
/// `state`) would move.
pub fn diff(
    dir: &Path,
    new: Option<&Path>,
    state: Option<&Path>,
    log: Option<&Path>,
    live: bool,
    json: bool,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let before = load(dir)?;
    let after = match (new, state) {
        (Some(new), _) => load(new)?,
        (None, Some(state)) => {
            let mut config = predictor::config::Config::load(dir)?;
            config.migration_file = state.to_path_buf();
            Snapshot::from_config(config).map_err(|e| match e {
                ConfigError::Invalid(p) => {
                    anyhow::anyhow!("{} problem(s) with {}:\n{p}", p.total(), state.display())
                }
                other => anyhow::Error::new(other),
            })?
        }
        (None, None) => anyhow::bail!("give the changed folder, or --state FILE"),
    };
    use predictor::admin::diff::{Diff, Weights};
    let weights = match (log, live) {
        (Some(log), _) => Some(Weights::from_log(&std::fs::read_to_string(log)?)),
        (None, true) => {
            let (admin, runtime) = admin_of(dir)?;
            let top = runtime
                .block_on(predictor::admin::fetch(admin, "/top?window=15m&n=1000"))
                .map_err(|e| anyhow::anyhow!("no running instance answered at {admin}: {e}"))?;
            Some(Weights::from_top(&serde_json::from_str(&top)?))
        }
        (None, false) => None,
    };
    let d = Diff::of(&before, &after, weights.as_ref());
    if json {
        println!("{}", serde_json::to_string_pretty(&d.json())?);
    } else {
        print!("{}", d.text());
        println!("(compared in {} ms)", started.elapsed().as_millis());
    }
    Ok(())
}

/// The admin address of `dir`'s config, and a runtime to ask it with.
fn admin_of(dir: &Path) -> anyhow::Result<(SocketAddr, tokio::runtime::Runtime)> {
    let config = predictor::config::Config::load(dir)?;
    let Some(admin) = config.admin else {
        anyhow::bail!("no [admin] address in {}: nothing to ask", dir.display());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok((admin, runtime))
}

/// Prints the shadow verdicts of the running instance of `dir`'s config.
pub fn verify(dir: &Path, filer: Option<&str>) -> ExitCode {
    let run = || -> anyhow::Result<bool> {
        let (admin, runtime) = admin_of(dir)?;
        let q = filer.map(|f| format!("&filer={f}")).unwrap_or_default();
        let ask = |path: String| {
            runtime
                .block_on(predictor::admin::fetch(admin, &path))
                .map_err(|e| anyhow::anyhow!("no running instance answered at {admin}: {e}"))
        };
        print!("{}", ask(format!("/verify?format=text{q}"))?);
        let j: serde_json::Value = serde_json::from_str(&ask(format!("/verify?{q}"))?)?;
        let filers = j["filers"].as_array().cloned().unwrap_or_default();
        Ok(!filers.is_empty() && filers.iter().all(|f| f["ready"] == true))
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("predictor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Shows the reload the running instance of `dir`'s config holds, and
/// confirms it with `confirm`.
pub fn reload(dir: &Path, confirm: bool) -> anyhow::Result<()> {
    let (admin, runtime) = admin_of(dir)?;
    let ask = |method, path: String| {
        runtime
            .block_on(predictor::admin::request(admin, method, &path))
            .map_err(|e| anyhow::anyhow!("the instance at {admin}: {e}"))
    };
    let status: serde_json::Value =
        serde_json::from_str(&ask(http::Method::GET, "/status".into())?)?;
    let held = &status["reload"]["held"];
    let Some(token) = held["token"].as_str() else {
        if confirm {
            anyhow::bail!("no reload is held at {admin}");
        }
        println!("no reload is held at {admin}");
        return Ok(());
    };
    println!("held:      {}", held["change"].as_str().unwrap_or_default());
    if !confirm {
        println!(
            "confirm:   predictor reload --confirm --config {}",
            dir.display()
        );
        return Ok(());
    }
    print!(
        "{}",
        ask(http::Method::POST, format!("/reload/confirm?token={token}"))?
    );
    Ok(())
}

/// Shows `/top` of the running instance of `dir`'s config every
/// `interval` seconds (once with `once`).
pub fn top(dir: &Path, path: &str, interval: u64, once: bool) -> anyhow::Result<()> {
    let (admin, runtime) = admin_of(dir)?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let text = runtime
            .block_on(predictor::admin::fetch(admin, path))
            .map_err(|e| anyhow::anyhow!("no running instance answered at {admin}: {e}"))?;
        if tty && !once {
            // Clear the screen and go home, like top.
            print!("\x1b[2J\x1b[H");
        }
        print!("{text}");
        if once {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_secs(interval.max(1)));
    }
}
