//! Gauges read from the live state at scrape time, appended to the
//! recorder's exposition: the servers' health and load and the pools'
//! totals (from the snapshot's live set, so a server removed by a reload
//! leaves no stale series), tenants and hosts by migration state, the
//! certificates, the last reload, open connections and draining.
//!
//! Nothing here is on the request path: each value is computed when
//! Prometheus asks. Labels are config names (pool, server id) and fixed
//! sets (a state), never a host or tenant.

use std::fmt::Write;

use crate::placement::choose::Admission;
use crate::routing::migration::MigrationState;
use crate::snapshot::ReloadStatus as Status;
use crate::snapshot::Snapshot;

/// Days before expiry from which a certificate counts as expiring soon.
pub const EXPIRING_DAYS: i64 = 30;

/// What the process knows besides the snapshot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Process {
    /// A reload is held for confirmation.
    pub reload_held: bool,
    pub connections_open: usize,
    pub connections_max: usize,
    pub draining: bool,
    /// Seconds since the Unix epoch.
    pub now_unix: i64,
}

/// Every scrape-time gauge in Prometheus text format.
pub fn render(out: &mut String, snap: &Snapshot, reloads: &Status, process: Process) {
    gauge(
        out,
        "predictor_build_info",
        "Always 1; the version of the running binary and its allocator (jemalloc in production builds, system otherwise) as labels.",
        &[(
            format!(
                "{{version=\"{}\",allocator=\"{}\"}}",
                env!("CARGO_PKG_VERSION"),
                crate::ALLOCATOR
            ),
            1.0,
        )],
    );
    servers(out, snap);
    migration(out, snap);
    reload(out, snap.generation, reloads);
    gauge(
        out,
        "predictor_config_reload_held",
        "1 while a valid change of the config folder is held for confirmation because it moves more tenants or host names than [reload] allows (the previous config serves).",
        &[(String::new(), f64::from(u8::from(process.reload_held)))],
    );
    certificates(out, snap, process.now_unix);
    let one = |v: usize| [(String::new(), v as f64)];
    gauge(
        out,
        "predictor_connections_open",
        "Client connections open, all listeners (TLS handshakes and passed-through connections included).",
        &one(process.connections_open),
    );
    gauge(
        out,
        "predictor_connections_max",
        "limits.max_connections: at this many open connections, new ones wait in the kernel's backlog.",
        &one(process.connections_max),
    );
    gauge(
        out,
        "predictor_draining",
        "1 from SIGTERM to exit: not accepting, /readyz answers 503, requests in progress finish.",
        &one(usize::from(process.draining)),
    );
}

/// One gauge family: `samples` are (labels as rendered, value).
fn gauge(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    family(out, "gauge", name, help, samples);
}

/// One family of `kind` (`gauge`, `counter`).
fn family(out: &mut String, kind: &str, name: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// Per server: up, draining, in flight, latency, weight ratio, ejections;
/// per pool: in flight, servers configured and up.
fn servers(out: &mut String, snap: &Snapshot) {
    let now = crate::health::now_ms();
    let families: [(&str, &str); 7] = [
        (
            "predictor_server_up",
            "1 when the server takes requests (up or draining), 0 when down (checks, agent, passive ejection).",
        ),
        (
            "predictor_server_draining",
            "1 when the server's agent says drain or weight 0: it keeps its sites, takes no new ones.",
        ),
        (
            "predictor_server_in_flight",
            "Requests sent to the server and not finished (until the response body ends).",
        ),
        (
            "predictor_server_latency_seconds",
            "Peak-EWMA of the server's time to response headers.",
        ),
        (
            "predictor_server_weight_ratio",
            "Effective weight as a share of the configured one (the agent's report).",
        ),
        (
            "predictor_server_ejections",
            "Passive ejections in a row (0 once the server has been good for a while).",
        ),
        (
            "predictor_server_max_in_flight",
            "The server's in-flight ceiling now (max_in_flight, lowered by its agent's maxconn; 0: none): beyond it requests wait in the pool's fair queue.",
        ),
    ];
    let pools = || snap.config.pools.iter().zip(snap.live.pools());
    for (f, (name, help)) in families.iter().enumerate() {
        let mut samples = Vec::new();
        for (pool, live) in pools() {
            for (conf, s) in pool.servers.iter().zip(live.servers()) {
                let h = s.health(now);
                let v = match f {
                    0 => f64::from(u8::from(h.admission != Admission::Down)),
                    1 => f64::from(u8::from(h.admission == Admission::Drain)),
                    2 => f64::from(s.in_flight()),
                    3 => f64::from(s.latency(now)) / 1e6,
                    4 => s.weight_ratio(),
                    5 => f64::from(h.ejections),
                    _ => f64::from(s.ceiling()),
                };
                samples.push((
                    format!("{{pool=\"{}\",server=\"{}\"}}", pool.name, conf.id),
                    v,
                ));
            }
        }
        gauge(out, name, help, &samples);
    }
    let per_pool = |value: &dyn Fn(&crate::health::PoolLive) -> f64| -> Vec<(String, f64)> {
        pools()
            .map(|(pool, live)| (format!("{{pool=\"{}\"}}", pool.name), value(live)))
            .collect()
    };
    gauge(
        out,
        "predictor_pool_in_flight",
        "Requests in flight to the pool's servers.",
        &per_pool(&|live| f64::from(live.totals().in_flight)),
    );
    gauge(
        out,
        "predictor_pool_queued",
        "Requests waiting in the pool's fair queue for a server under its ceiling.",
        &per_pool(&|live| live.queued() as f64),
    );
    gauge(
        out,
        "predictor_pool_servers",
        "Servers configured in the pool.",
        &per_pool(&|live| live.servers().len() as f64),
    );
    gauge(
        out,
        "predictor_pool_servers_up",
        "Servers of the pool taking requests (up or draining); 0 means every request for the pool gets 503.",
        &per_pool(&|live| {
            live.servers()
                .iter()
                .filter(|s| s.health(now).admission != Admission::Down)
                .count() as f64
        }),
    );
    // Counters kept by the pools' live state (carried across reloads).
    let retries: Vec<(String, f64)> = pools()
        .flat_map(|(pool, live)| {
            let budget = &live.state().retry;
            [("sent", budget.sent()), ("refused", budget.refused())].map(|(result, n)| {
                (
                    format!("{{pool=\"{}\",result=\"{result}\"}}", pool.name),
                    n as f64,
                )
            })
        })
        .collect();
    family(
        out,
        "counter",
        "predictor_pool_retries_total",
        "Idempotent requests whose connection died unanswered, by result: sent to the next server of their list (sent) or answered 502 because the pool's retry budget (10 % of its requests, bursts of 20) was spent (refused).",
        &retries,
    );
}

/// Tenants and hosts by migration state: the migration's progress.
fn migration(out: &mut String, snap: &Snapshot) {
    let summary = snap.summary();
    let states = MigrationState::ALL;
    let by_state = |count: &dyn Fn(MigrationState) -> usize| -> Vec<(String, f64)> {
        states
            .iter()
            .map(|&s| (format!("{{state=\"{}\"}}", s.as_str()), count(s) as f64))
            .collect()
    };
    gauge(
        out,
        "predictor_tenants",
        "Tenants of the tenant table by migration state (override, else filer, else default).",
        &by_state(&|s| summary.tenants_in(s)),
    );
    gauge(
        out,
        "predictor_hosts",
        "Host names of the tenant table, exact and wildcard (*.example.com counts as one), by their tenant's migration state; they add up to every host of the table.",
        &by_state(&|s| summary.hosts_in(s)),
    );
}

/// Whether the last reload was taken, and when one last was.
fn reload(out: &mut String, generation: u64, reloads: &Status) {
    gauge(
        out,
        "predictor_config_generation",
        "Generation of the config snapshot serving (1 at start, one more per reload taken).",
        &[(String::new(), generation as f64)],
    );
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let good = reloads.last_good.as_ref().map(|(at, _)| *at);
    let failed = reloads.last_failed.as_ref().map(|(at, _)| *at);
    let ok = match (good, failed) {
        (_, None) => true,
        (Some(g), Some(f)) => g >= f,
        (None, Some(_)) => false,
    };
    gauge(
        out,
        "predictor_config_last_reload_successful",
        "1 when the last load of the config folder was taken, 0 when it was refused (the previous config serves).",
        &[(String::new(), f64::from(u8::from(ok)))],
    );
    gauge(
        out,
        "predictor_config_last_reload_success_timestamp_seconds",
        "When the config serving was loaded (start or last good reload), seconds since the Unix epoch.",
        &[(String::new(), good.map_or(0.0, unix))],
    );
}

/// Certificates indexed, refused, and expiring within [`EXPIRING_DAYS`]
/// days (none of these without `[tls]`).
pub fn certificates(out: &mut String, snap: &Snapshot, now_unix: i64) {
    if snap.config.tls.is_none() {
        return;
    }
    let files = snap.certs.files();
    let soon = now_unix + EXPIRING_DAYS * 86_400;
    let expiring = files.iter().filter(|f| f.not_after < soon).count();
    let one = |v: usize| [(String::new(), v as f64)];
    gauge(
        out,
        "predictor_tls_certificates",
        "Certificate files indexed from the certificate folder (usable; keys parsed on first use).",
        &one(files.len()),
    );
    gauge(
        out,
        "predictor_tls_certificates_refused",
        "Certificate files of the folder refused at the last load (named in /status and the log).",
        &one(snap.certs.refused().len()),
    );
    gauge(
        out,
        "predictor_tls_certificates_expiring",
        "Certificates that expire within 30 days (or have expired).",
        &one(expiring),
    );
}
