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
use crate::config::{Config, Probe};
use crate::metrics::Metrics;

/// Probes the legacy balancer of the config `current` gives (the current
/// snapshot's) until `shutdown`. The address and settings are read again
/// before every probe, so a reload takes effect at the next one.
pub async fn run(
    tunnel: Arc<Tunnel>,
    current: impl Fn() -> Arc<Config>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let config = current();
        let wait = match &config.legacy {
            None => Duration::from_secs(1),
            Some(l) => {
                let marker = (l.hop_header.as_str(), config.proxy.name.as_str());
                let result = check(l.address, &l.probe, marker).await;
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
/// Marked like forwarded traffic (`marker`: the hop header and its
/// value), so a balancer that sends the probe back to predictor gets a
/// 508, still an answer.
async fn check(addr: SocketAddr, probe: &Probe, marker: (&str, &str)) -> Result<u16, String> {
    crate::health::check::status(addr, probe, Some(marker)).await
}
