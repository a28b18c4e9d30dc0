//! Every metric predictor exports, declared in one place with its help text.
//!
//! Owns the Prometheus recorder of one running [`Server`](crate::server::Server)
//! and the handles the request path increments. Handles are registered once
//! at start-up, so recording is an atomic add, never a registry lookup.
//! Each server has its own recorder (not the process-global one), so that
//! two servers in one process (tests, an upgrade) never mix their counts.
//!
//! Invariant: labels take values from small fixed sets (a status class, a
//! probe result); never a host, tenant or address.

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
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The metrics of the path to the legacy balancer.
pub struct LegacyMetrics {
    requests: [Counter; 5],
    /// From the request's arrival to the legacy balancer's response head
    /// (or predictor's own error answer).
    pub duration: Histogram,
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

impl LegacyMetrics {
    /// Counts one legacy request by the class of its final status.
    pub fn request(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.requests[class].increment(1);
    }
}

/// The metrics of config reloads.
pub struct ReloadMetrics {
    pub ok: Counter,
    pub error: Counter,
    /// Watch events after which the files were as last loaded.
    pub unchanged: Counter,
    /// Watch events after which a file was missing (mid-replacement).
    pub waiting: Counter,
    /// The generation of the snapshot serving.
    pub generation: Gauge,
    /// From the start of a reload to the new snapshot serving.
    pub duration: Histogram,
}

/// The metrics of the `https` listeners (certificate counts are rendered
/// from the snapshot at scrape time: `tls::exposition`).
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

/// The metrics of one server.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    pub legacy: LegacyMetrics,
    pub reload: ReloadMetrics,
    pub tls: TlsMetrics,
}

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let r = Registrar(&recorder);
        let legacy = LegacyMetrics {
            requests: CLASSES.map(|class| {
                r.counter_with(
                    "predictor_legacy_requests_total",
                    "Requests routed to the legacy balancer, by status class of the answer.",
                    vec![Label::new("class", class)],
                )
            }),
            duration: r.histogram(
                "predictor_legacy_request_duration_seconds",
                "Time from a legacy request's arrival to the response head (legacy balancer's or predictor's own error).",
            ),
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
            probes_ok: r.counter_with(
                "predictor_legacy_probes_total",
                "Active checks of the legacy balancer, by result.",
                vec![Label::new("result", "ok")],
            ),
            probes_failed: r.counter_with(
                "predictor_legacy_probes_total",
                "Active checks of the legacy balancer, by result.",
                vec![Label::new("result", "failed")],
            ),
            loops_refused: r.counter(
                "predictor_loops_refused_total",
                "Requests refused with 508 because they carried predictor's own hop marker.",
            ),
            retries: r.counter(
                "predictor_legacy_retries_total",
                "Idempotent legacy requests sent again after their connection closed without an answer.",
            ),
        };
        let reload_result = |result: &'static str| {
            r.counter_with(
                "predictor_reloads_total",
                "Config reloads, by result (ok, error: refused and the old config kept, unchanged: files as last loaded, waiting: a file missing mid-replacement).",
                vec![Label::new("result", result)],
            )
        };
        let reload = ReloadMetrics {
            ok: reload_result("ok"),
            error: reload_result("error"),
            unchanged: reload_result("unchanged"),
            waiting: reload_result("waiting"),
            generation: r.gauge(
                "predictor_config_generation",
                "Generation of the config snapshot serving (1 at start, one more per reload).",
            ),
            duration: r.histogram(
                "predictor_reload_duration_seconds",
                "Time from the start of a reload to the new snapshot serving.",
            ),
        };
        let handshake = |result: &'static str| {
            r.counter_with(
                "predictor_tls_handshakes_total",
                "TLS connections on https listeners, by how their handshake ended (ok, failed, timeout; malformed, too_large, no_sni_closed: closed at the ClientHello). Passed-through connections are not counted here.",
                vec![Label::new("result", result)],
            )
        };
        let passthrough = |result: &'static str| {
            r.counter_with(
                "predictor_tls_passthrough_connections_total",
                "TLS connections passed to the legacy balancer undecrypted, by result (failed: could not connect or reset).",
                vec![Label::new("result", result)],
            )
        };
        let bytes = |direction: &'static str| {
            r.counter_with(
                "predictor_tls_passthrough_bytes_total",
                "Bytes of passed-through TLS connections, by direction (in: client to legacy balancer, out: back).",
                vec![Label::new("direction", direction)],
            )
        };
        let cache = |result: &'static str| {
            r.counter_with(
                "predictor_tls_key_cache_total",
                "Handshakes by whether their certificate's key was already parsed (hit) or parsed first (miss).",
                vec![Label::new("result", result)],
            )
        };
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
        Metrics {
            recorder,
            handle,
            legacy,
            reload,
            tls,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
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

    fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        self.0
            .describe_gauge(KeyName::from_const_str(name), None, help.into());
        self.0.register_gauge(&Key::from_name(name), &METADATA)
    }

    fn histogram(&self, name: &'static str, help: &'static str) -> Histogram {
        self.0.describe_histogram(
            KeyName::from_const_str(name),
            Some(Unit::Seconds),
            help.into(),
        );
        self.0.register_histogram(&Key::from_name(name), &METADATA)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_exposition_with_help_and_buckets() {
        let m = Metrics::new();
        m.legacy.request(http::StatusCode::BAD_GATEWAY);
        m.legacy.request(http::StatusCode::OK);
        m.legacy.request(http::StatusCode::OK);
        m.legacy.duration.record(0.012);
        m.legacy.up.set(1.0);
        let text = m.render();
        assert!(
            text.contains("predictor_legacy_requests_total{class=\"2xx\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("predictor_legacy_requests_total{class=\"5xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("# HELP predictor_legacy_up"), "{text}");
        assert!(text.contains("predictor_legacy_up 1"), "{text}");
        assert!(
            text.contains("predictor_legacy_request_duration_seconds_bucket{le=\"0.015\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("predictor_legacy_request_duration_seconds_bucket{le=\"0.01\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn two_servers_do_not_share_counts() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.legacy.loops_refused.increment(3);
        assert!(a.render().contains("predictor_loops_refused_total 3"));
        assert!(b.render().contains("predictor_loops_refused_total 0"));
    }
}
