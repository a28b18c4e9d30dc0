//! The series of PROXY protocol headers read on listeners
//! (`[[listen]] proxy_protocol`, read by the server's `inbound`): one counter
//! per result, registered at start-up so that every result is exported
//! at 0.

use metrics::Counter;

use super::Registrar;

/// Connections of listeners with `proxy_protocol`, by what their first
/// bytes were.
#[derive(Clone)]
pub struct ProxyHeaderMetrics {
    /// A header from a listed source carrying the client's address.
    pub ok: Counter,
    /// A `LOCAL` (v2) or `UNKNOWN` (v1) header from a listed source (the
    /// balancer's own health checks): the connection's address is used.
    pub local: Counter,
    /// A connection from a source not listed, without a header, served as
    /// it came (a client reaching the instance directly).
    pub direct: Counter,
    /// Closed: a listed source sent no header.
    pub missing: Counter,
    /// Closed: a source not listed sent a header (a spoofing attempt, or
    /// an L4 balancer missing from the list).
    pub unexpected: Counter,
    /// Closed: the header was malformed or larger than accepted.
    pub malformed: Counter,
    /// Closed: the header did not arrive within the listener's
    /// `proxy_protocol_timeout`.
    pub timeout: Counter,
    /// The client closed (or reset) the connection before its header.
    pub closed: Counter,
}

pub(super) fn register(r: &Registrar<'_>) -> ProxyHeaderMetrics {
    let result = r.family(
        "predictor_proxy_headers_total",
        "Connections of listeners with proxy_protocol, by their PROXY protocol header (ok: a listed source's header with the client's address; local: a listed source's LOCAL or UNKNOWN header, the connection's own address kept; direct: a source not listed, without a header, served as it came; missing, unexpected (a header from a source not listed), malformed, timeout: closed; closed: by the client before its header).",
        "result",
    );
    ProxyHeaderMetrics {
        ok: result("ok"),
        local: result("local"),
        direct: result("direct"),
        missing: result("missing"),
        unexpected: result("unexpected"),
        malformed: result("malformed"),
        timeout: result("timeout"),
        closed: result("closed"),
    }
}
