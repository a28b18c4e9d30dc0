//! Every metric predictor exports, declared in this module with its help
//! text: counters and histograms here and in [`routes`] (requests by
//! route, tier, pool and status class); the gauges read from the live
//! state at scrape time are the admin listener's (`admin::scrape`), which
//! declares them with their help text the same way.
//!
//! Owns the Prometheus recorder of one running server, the handles
//! registered on it, and the request series ([`routes`]), which every
//! request adds to and which are therefore kept apart: per worker, each
//! on its own cache lines, summed by a scrape ([`shards`]). Everything is
//! registered ahead of use (at start-up, or once per snapshot for the
//! per-tier series), so recording is an add, never a registry lookup.
//! Each server has its own recorder and series (not the process-global
//! recorder), so that two servers in one process (tests, an upgrade)
//! never mix their counts.
//!
//! Invariant: labels take values from small fixed sets (a route, a status
//! class, a probe result) or from config names (tier, pool, server id);
//! never a host, tenant or client address.

mod inbound;
mod isolation;
pub mod routes;
pub mod shards;

pub use inbound::ProxyHeaderMetrics;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Buckets of latency histograms, in seconds: they resolve both
/// sub-millisecond local answers and the ~10 ms round trip of the tunnel.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
];

/// Status classes, as label values, indexed by `status / 100 - 1`.
pub(crate) const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The metrics of the path to the legacy balancer (its requests are
/// counted by route with the others: [`routes`]).
pub struct LegacyMetrics {
    pub connections_opened: Counter,
    pub connections_reused: Counter,
    /// Requests answered 502 at once because the balancer is down.
    pub fast_failures: Counter,
    /// 1 while the legacy balancer is considered up.
    pub up: Gauge,
    pub probes_ok: Counter,
    pub probes_failed: Counter,
    /// Requests that came back with predictor's own hop marker.
    pub loops_refused: Counter,
    /// Idempotent requests sent again after a connection died unanswered.
    pub retries: Counter,
}

/// Shadow copies (the `shadow` state), by result.
pub struct ShadowMetrics {
    pub matched: Counter,
    pub mismatched: Counter,
    /// The copy got no answer (connect error, timeout).
    pub failed: Counter,
    /// Not sent: the worker's copies in flight at `shadow.max_in_flight`,
    /// or every server of the pool at its ceiling.
    pub dropped: Counter,
}

/// The metrics of config reloads.
pub struct ReloadMetrics {
    pub ok: Counter,
    pub error: Counter,
    /// Valid, but held for confirmation (it moves too much).
    pub held: Counter,
    /// Watch events after which the files were as last loaded.
    pub unchanged: Counter,
    /// Watch events after which a file was missing (mid-replacement).
    pub waiting: Counter,
    /// Refused changes undone: the folder is back to the version serving.
    pub reverted: Counter,
    /// From the start of a reload to the new snapshot serving.
    pub duration: Histogram,
}

/// The metrics of the `https` listeners (certificate counts are rendered
/// from the snapshot at scrape time: `admin::scrape::certificates`).
#[derive(Clone)]
pub struct TlsMetrics {
    pub handshakes_ok: Counter,
    /// The handshake itself failed (no certificate for the name, a
    /// protocol error, the client gave up).
    pub handshakes_failed: Counter,
    pub handshakes_timeout: Counter,
    /// The first bytes were not a TLS ClientHello.
    pub hellos_malformed: Counter,
    pub hellos_too_large: Counter,
    /// A ClientHello without SNI closed (`no_sni = "close"`).
    pub hellos_no_sni_closed: Counter,
    pub passthrough_ok: Counter,
    pub passthrough_failed: Counter,
    /// Bytes passed through, client to legacy balancer.
    pub passthrough_bytes_in: Counter,
    /// Bytes passed through, legacy balancer to client.
    pub passthrough_bytes_out: Counter,
    /// Handshakes whose certificate's key was in the cache.
    pub key_cache_hits: Counter,
    /// Handshakes that parsed their certificate's key first.
    pub key_cache_misses: Counter,
}

/// The access log's lines, by what became of them.
pub struct AccessLogMetrics {
    pub written: Counter,
    /// Not queued: the writer was behind (a slow disk) and the queue full.
    pub dropped: Counter,
    /// Queued, but the write failed (disk full, file gone).
    pub failed: Counter,
}

/// The metrics of one server.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    pub legacy: LegacyMetrics,
    pub reload: ReloadMetrics,
    pub tls: TlsMetrics,
    pub access_log: AccessLogMetrics,
    pub shadow: ShadowMetrics,
    /// PROXY protocol headers read on listeners.
    pub proxy_headers: ProxyHeaderMetrics,
    /// Client connections accepted, all listeners.
    pub connections_accepted: Counter,
    /// The request series, kept per worker ([`shards`]).
    routes: routes::RouteSeries,
}

impl Metrics {
    /// The metrics of a server of one worker (tests, tools).
    pub fn new() -> Metrics {
        Self::with_workers(1)
    }

    /// The metrics of a server of `workers` workers, numbered from 0: the
    /// request series get a shard each ([`shards`]).
    pub fn with_workers(workers: usize) -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let (legacy, reload, tls, access_log, connections_accepted) =
            register(&Registrar(&recorder));
        let shadow = {
            let r = Registrar(&recorder);
            let result = r.family(
                "predictor_shadow_requests_total",
                "Shadow copies of requests to sites in the shadow state, by result (matched, mismatched: the new copy answered differently, failed: no answer, dropped: not sent, over shadow.max_in_flight or the servers at their ceilings).",
                "result",
            );
            ShadowMetrics {
                matched: result("matched"),
                mismatched: result("mismatched"),
                failed: result("failed"),
                dropped: result("dropped"),
            }
        };
        let proxy_headers = inbound::register(&Registrar(&recorder));
        let m = Metrics {
            recorder,
            handle,
            legacy,
            reload,
            tls,
            access_log,
            shadow,
            proxy_headers,
            connections_accepted,
            routes: routes::RouteSeries::new(workers),
        };
        m.describe_isolation();
        m
    }

    /// The request series of `config`'s routes, tiers and pools
    /// (registered on this server's recorder; kept per snapshot).
    pub fn routes(&self, config: &crate::config::Config) -> routes::RouteTable {
        self.register_isolation(config);
        routes::RouteTable::new(&self.routes, config)
    }

    /// The Prometheus text exposition of every metric: the recorder's,
    /// then the request series summed over the workers.
    pub fn render(&self) -> String {
        self.handle.run_upkeep();
        let mut text = self.handle.render();
        self.routes.render(&mut text);
        text
    }

    /// Drains histogram buffers; call every few seconds.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The recorder, for metrics registered by later modules.
    pub fn recorder(&self) -> &PrometheusRecorder {
        &self.recorder
    }
}

/// Registers every series known at start-up (those of the config's tiers
/// and pools are registered per snapshot: [`routes`]).
fn register(
    r: &Registrar<'_>,
) -> (
    LegacyMetrics,
    ReloadMetrics,
    TlsMetrics,
    AccessLogMetrics,
    Counter,
) {
    let probe = r.family(
        "predictor_legacy_probes_total",
        "Active checks of the legacy balancer, by result.",
        "result",
    );
    let legacy = LegacyMetrics {
        connections_opened: r.counter(
            "predictor_legacy_connections_opened_total",
            "Connections opened to the legacy balancer.",
        ),
        connections_reused: r.counter(
            "predictor_legacy_connections_reused_total",
            "Requests sent to the legacy balancer on an already open connection.",
        ),
        fast_failures: r.counter(
            "predictor_legacy_fast_failures_total",
            "Legacy requests answered 502 at once because the legacy balancer is down.",
        ),
        up: r.gauge(
            "predictor_legacy_up",
            "1 while the legacy balancer is considered up (probe and passive checks), else 0.",
        ),
        probes_ok: probe("ok"),
        probes_failed: probe("failed"),
        loops_refused: r.counter(
            "predictor_loops_refused_total",
            "Requests refused with 508 because they carried predictor's own hop marker.",
        ),
        retries: r.counter(
            "predictor_legacy_retries_total",
            "Idempotent legacy requests sent again after their connection closed without an answer.",
        ),
    };
    let reload_result = r.family(
        "predictor_reloads_total",
        "Config reloads, by result (ok, error: refused and the old config kept, unchanged: files as last loaded, waiting: a file missing mid-replacement, reverted: the folder written back to the version serving after a refused change, which clears the failure; held: valid but moving more tenants or hosts than [reload] allows, waiting for confirmation).",
        "result",
    );
    let reload = ReloadMetrics {
        ok: reload_result("ok"),
        error: reload_result("error"),
        held: reload_result("held"),
        unchanged: reload_result("unchanged"),
        waiting: reload_result("waiting"),
        reverted: reload_result("reverted"),
        duration: r.histogram(
            "predictor_reload_duration_seconds",
            "Time from the start of a reload to the new snapshot serving.",
        ),
    };
    let handshake = r.family(
        "predictor_tls_handshakes_total",
        "TLS connections on https listeners, by how their handshake ended (ok, failed, timeout; malformed, too_large, no_sni_closed: closed at the ClientHello). Passed-through connections are not counted here.",
        "result",
    );
    let passthrough = r.family(
        "predictor_tls_passthrough_connections_total",
        "TLS connections passed to the legacy balancer undecrypted, by result (failed: could not connect or reset).",
        "result",
    );
    let bytes = r.family(
        "predictor_tls_passthrough_bytes_total",
        "Bytes of passed-through TLS connections, by direction (in: client to legacy balancer, out: back).",
        "direction",
    );
    let cache = r.family(
        "predictor_tls_key_cache_total",
        "Handshakes by whether their certificate's key was already parsed (hit) or parsed first (miss).",
        "result",
    );
    let tls = TlsMetrics {
        handshakes_ok: handshake("ok"),
        handshakes_failed: handshake("failed"),
        handshakes_timeout: handshake("timeout"),
        hellos_malformed: handshake("malformed"),
        hellos_too_large: handshake("too_large"),
        hellos_no_sni_closed: handshake("no_sni_closed"),
        passthrough_ok: passthrough("ok"),
        passthrough_failed: passthrough("failed"),
        passthrough_bytes_in: bytes("in"),
        passthrough_bytes_out: bytes("out"),
        key_cache_hits: cache("hit"),
        key_cache_misses: cache("miss"),
    };
    let lines = r.family(
        "predictor_access_log_lines_total",
        "Access log lines, by result (written; dropped: the queue to the writer was full; failed: the write failed).",
        "result",
    );
    let access_log = AccessLogMetrics {
        written: lines("written"),
        dropped: lines("dropped"),
        failed: lines("failed"),
    };
    let connections_accepted = r.counter(
        "predictor_connections_accepted_total",
        "Client connections accepted, all listeners.",
    );
    (legacy, reload, tls, access_log, connections_accepted)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Describes and registers metrics on one recorder.
struct Registrar<'a>(&'a PrometheusRecorder);

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Registrar<'_> {
    fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        self.counter_with(name, help, Vec::new())
    }

    fn counter_with(&self, name: &'static str, help: &'static str, labels: Vec<Label>) -> Counter {
        self.0
            .describe_counter(KeyName::from_const_str(name), None, help.into());
        self.0
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    /// A counter family with one label: a maker of its counters by the
    /// label's value.
    fn family(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
    ) -> impl Fn(&'static str) -> Counter + '_ {
        move |value| self.counter_with(name, help, vec![Label::new(label, value)])
    }

    fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        self.0
            .describe_gauge(KeyName::from_const_str(name), None, help.into());
        self.0.register_gauge(&Key::from_name(name), &METADATA)
    }

    fn histogram(&self, name: &'static str, help: &'static str) -> Histogram {
        self.histogram_with(name, help, Vec::new())
    }

    fn histogram_with(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Vec<Label>,
    ) -> Histogram {
        self.0.describe_histogram(
            KeyName::from_const_str(name),
            Some(Unit::Seconds),
            help.into(),
        );
        self.0
            .register_histogram(&Key::from_parts(name, labels), &METADATA)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_by_route_tier_pool_and_class_with_buckets() {
        use crate::routing::RouteKind;
        let m = Metrics::new();
        let config = crate::config::tests_support::two_tiers();
        let table = m.routes(&config);
        let gold = config.tier_by_name("gold").unwrap();
        let local = table.slot(RouteKind::Local, Some(gold));
        assert_eq!((&*local.tier, &*local.pool), ("gold", "fast"));
        local.answered(0, http::StatusCode::OK);
        local.answered(0, http::StatusCode::OK);
        local.took(0, 0.0004);
        local.waited(0, 0.012);
        table
            .slot(RouteKind::Legacy, Some(gold))
            .answered(0, http::StatusCode::BAD_GATEWAY);
        // No tier where the route has none; a tier out of range is rejected.
        table
            .slot(RouteKind::Unknown, Some(gold))
            .answered(0, http::StatusCode::OK);
        table
            .slot(RouteKind::Local, Some(9))
            .answered(0, http::StatusCode::BAD_REQUEST);
        assert!(!table.slot(RouteKind::Maintenance, None).has_upstream());
        let text = m.render();
        for line in [
            "predictor_requests_total{route=\"local\",tier=\"gold\",pool=\"fast\",class=\"2xx\"} 2",
            "predictor_requests_total{route=\"local\",tier=\"basic\",pool=\"web\",class=\"2xx\"} 0",
            "predictor_requests_total{route=\"legacy\",tier=\"gold\",pool=\"none\",class=\"5xx\"} 1",
            "predictor_requests_total{route=\"unknown\",tier=\"none\",pool=\"none\",class=\"2xx\"} 1",
            "predictor_requests_total{route=\"rejected\",tier=\"none\",pool=\"none\",class=\"4xx\"} 1",
            "predictor_request_duration_seconds_bucket{route=\"local\",le=\"0.0005\"} 1",
            "predictor_upstream_duration_seconds_bucket{route=\"local\",pool=\"fast\",le=\"0.01\"} 0",
            "predictor_upstream_duration_seconds_bucket{route=\"local\",pool=\"fast\",le=\"0.015\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(text.contains("# HELP predictor_requests_total Requests answered"));
        // Registered again (a reload): the same series, counts kept.
        let again = m.routes(&config);
        again
            .slot(RouteKind::Local, Some(gold))
            .answered(0, http::StatusCode::OK);
        assert!(m.render().contains(
            "predictor_requests_total{route=\"local\",tier=\"gold\",pool=\"fast\",class=\"2xx\"} 3"
        ));
    }

    #[test]
    fn the_workers_shards_are_summed_by_a_scrape() {
        use crate::routing::RouteKind;
        let m = Metrics::with_workers(2);
        let config = crate::config::tests_support::two_tiers();
        let table = m.routes(&config);
        let gold = config.tier_by_name("gold").unwrap();
        let local = table.slot(RouteKind::Local, Some(gold));
        local.answered(0, http::StatusCode::OK);
        local.answered(1, http::StatusCode::OK);
        local.answered(1, http::StatusCode::OK);
        local.took(0, 0.002);
        local.took(1, 0.02);
        local.waited(1, 0.001);
        let text = m.render();
        for line in [
            "predictor_requests_total{route=\"local\",tier=\"gold\",pool=\"fast\",class=\"2xx\"} 3",
            "predictor_request_duration_seconds_bucket{route=\"local\",le=\"0.0025\"} 1",
            "predictor_request_duration_seconds_bucket{route=\"local\",le=\"0.02\"} 2",
            "predictor_request_duration_seconds_bucket{route=\"local\",le=\"+Inf\"} 2",
            "predictor_request_duration_seconds_sum{route=\"local\"} 0.022",
            "predictor_request_duration_seconds_count{route=\"local\"} 2",
            "predictor_upstream_duration_seconds_count{route=\"local\",pool=\"fast\"} 1",
            "predictor_upstream_duration_seconds_count{route=\"legacy\",pool=\"none\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // One HELP and TYPE per family, before its samples.
        for family in [
            "predictor_requests_total counter",
            "predictor_request_duration_seconds histogram",
            "predictor_upstream_duration_seconds histogram",
        ] {
            let ty = format!("# TYPE {family}");
            assert_eq!(text.lines().filter(|l| *l == ty).count(), 1, "{ty}");
        }
    }

    #[test]
    fn two_servers_do_not_share_counts() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.legacy.loops_refused.increment(3);
        assert!(a.render().contains("predictor_loops_refused_total 3"));
        assert!(b.render().contains("predictor_loops_refused_total 0"));
    }
}
