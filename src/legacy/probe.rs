//! The active check of the legacy balancer: every `probe.interval`, a new
//! connection and a `GET probe.path` with `Host: probe.host`. Any complete
//! HTTP response within `probe.timeout` counts as up (the balancer
//! answered; whether the site behind it is healthy is its own business); a
//! refused or timed-out connection or a broken answer counts as down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Tunnel;
use crate::config::Probe;
use crate::metrics::Metrics;
use crate::snapshot::SharedSnapshot;

/// Probes the legacy balancer of the current snapshot until `shutdown`.
/// The address and settings are read again before every probe, so a
/// reload takes effect at the next one.
pub async fn run(
    tunnel: Arc<Tunnel>,
    snapshot: Arc<SharedSnapshot>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let legacy = snapshot.load().config.legacy.clone();
        let wait = match legacy {
            None => Duration::from_secs(1),
            Some(l) => {
                let result = check(l.address, &l.probe, l.hop_header.as_str(), &snapshot).await;
                match &result {
                    Ok(status) => {
                        metrics.legacy.probes_ok.increment(1);
                        tracing::trace!(status, "legacy probe answered");
                    }
                    Err(e) => {
                        metrics.legacy.probes_failed.increment(1);
                        tracing::debug!(address = %l.address, error = %e, "legacy probe failed");
                    }
                }
                let retry_ms = l.probe.interval.as_millis() as u64;
                tunnel.probed(
                    result.is_ok(),
                    tunnel.now_ms(),
                    l.probe.rise,
                    l.probe.fall,
                    retry_ms,
                );
                l.probe.interval
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One probe: the status of the answer, or why there was none.
async fn check(
    addr: SocketAddr,
    probe: &Probe,
    hop_header: &str,
    snapshot: &SharedSnapshot,
) -> Result<u16, String> {
    let name = snapshot.load().config.proxy.name.clone();
    // Marked like forwarded traffic, so a balancer that sends the probe
    // back to predictor gets a 508, still an answer.
    crate::health::check::status(addr, probe, Some((hop_header, name.as_str()))).await
}
