//! The series of isolation between tenants: requests refused by a
//! tenant's limit (by tier and reason), shed by a pool at its ceiling (by
//! tier and reason), queued and their wait (by pool). Labels are config
//! names and fixed reasons, never a tenant. These count slow paths only
//! (a request limited, queued or shed), so each is looked up in the
//! recorder when it happens rather than registered ahead.

use metrics::{Counter, Histogram, Key, KeyName, Label, Recorder, Unit};

use super::{METADATA, Metrics};

const LIMITED: &str = "predictor_limited_total";
const LIMITED_HELP: &str = "Requests refused with 429 by their tenant's limits, by tier and reason (rate, client_rate, concurrency).";
const SHED: &str = "predictor_shed_total";
const SHED_HELP: &str = "Requests answered 503 by a pool whose servers were at their ceilings, by tier and reason (queue_full, queue_timeout, evicted: pushed out by a request of higher priority or of a shorter lane).";
const QUEUED: &str = "predictor_queued_total";
const QUEUED_HELP: &str =
    "Requests that waited in a pool's fair queue for a server under its ceiling, by pool.";
const WAIT: &str = "predictor_queue_wait_seconds";
const WAIT_HELP: &str = "Time requests waited in a pool's queue (served or shed), by pool.";

impl Metrics {
    /// Describes the series (once, at start-up: they appear with their
    /// help text from the first count).
    pub(super) fn describe_isolation(&self) {
        let r = self.recorder();
        r.describe_counter(KeyName::from_const_str(LIMITED), None, LIMITED_HELP.into());
        r.describe_counter(KeyName::from_const_str(SHED), None, SHED_HELP.into());
        r.describe_counter(KeyName::from_const_str(QUEUED), None, QUEUED_HELP.into());
        r.describe_histogram(
            KeyName::from_const_str(WAIT),
            Some(Unit::Seconds),
            WAIT_HELP.into(),
        );
    }

    /// Registers every series of `config`'s tiers and pools at 0, so
    /// that they are exported (and rates and alerts work) before the
    /// first count.
    pub(super) fn register_isolation(&self, config: &crate::config::Config) {
        for t in &config.tiers {
            for reason in ["rate", "client_rate", "concurrency"] {
                let _ = self.limited(&t.name, reason);
            }
            for reason in ["queue_full", "queue_timeout", "evicted"] {
                let _ = self.shed(&t.name, reason);
            }
        }
        for p in &config.pools {
            let _ = self.queued(&p.name);
            let _ = self.queue_wait(&p.name);
        }
    }

    /// Requests of tier `tier` refused by a limit.
    pub fn limited(&self, tier: &str, reason: &'static str) -> Counter {
        self.counter(LIMITED, &[("tier", tier), ("reason", reason)])
    }

    /// Requests of tier `tier` shed.
    pub fn shed(&self, tier: &str, reason: &'static str) -> Counter {
        self.counter(SHED, &[("tier", tier), ("reason", reason)])
    }

    /// Requests queued in pool `pool`.
    pub fn queued(&self, pool: &str) -> Counter {
        self.counter(QUEUED, &[("pool", pool)])
    }

    /// The waits of pool `pool`'s queue.
    pub fn queue_wait(&self, pool: &str) -> Histogram {
        let key = Key::from_parts(WAIT, vec![Label::new("pool", pool.to_owned())]);
        self.recorder().register_histogram(&key, &METADATA)
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        let labels = labels
            .iter()
            .map(|(k, v)| Label::new(*k, (*v).to_owned()))
            .collect::<Vec<_>>();
        self.recorder()
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_series_are_labelled_by_config_names_and_reasons() {
        let m = Metrics::new();
        m.limited("shared", "rate").increment(2);
        m.shed("shared", "queue_timeout").increment(1);
        m.queued("web").increment(3);
        m.queue_wait("web").record(0.002);
        let text = m.render();
        assert!(
            text.contains("predictor_limited_total{tier=\"shared\",reason=\"rate\"} 2"),
            "{text}"
        );
        assert!(text.contains("predictor_shed_total{tier=\"shared\",reason=\"queue_timeout\"} 1"));
        assert!(text.contains("predictor_queued_total{pool=\"web\"} 3"));
        assert!(text.contains("predictor_queue_wait_seconds_bucket{pool=\"web\",le=\"0.0025\"} 1"));
        assert!(text.contains("# HELP predictor_shed_total"));
    }
}
