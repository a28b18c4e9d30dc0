//! Why a request was not forwarded, which side failed, whether trying again
//! is safe, and the one place that maps all of that to a status code.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

use crate::routing::host::HostError;

/// Which party a failure is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something predictor refuses.
    Client,
    /// A webserver or the legacy balancer failed.
    Upstream,
    /// predictor's own bounds refused it: a tenant's limit, a full or
    /// slow queue (isolation working as configured, not a failure).
    Bound,
}

/// Why a request was shed by a pool at its ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// The queue was full of requests that go first.
    QueueFull,
    /// It waited `queue.timeout` without a slot.
    QueueTimeout,
    /// Pushed out of the queue by a request of higher priority (or of a
    /// shorter lane).
    Evicted,
}

impl ShedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::QueueFull => "queue_full",
            ShedReason::QueueTimeout => "queue_timeout",
            ShedReason::Evicted => "evicted",
        }
    }
}

/// A request predictor answers itself, with an error.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("malformed host: {0}")]
    BadHost(#[from] HostError),
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("Host header {host:?} disagrees with :authority {authority:?}")]
    AuthorityMismatch { authority: String, host: String },
    #[error("Content-Length together with Transfer-Encoding")]
    ConflictingFraming,
    #[error("malformed request head: {0}")]
    MalformedHead(&'static str),
    #[error("CONNECT is not supported by a reverse proxy")]
    Connect,
    #[error("Host {host:?} belongs to another tenant than the TLS server name {sni:?}")]
    Misdirected { sni: String, host: String },
    #[error("cannot connect to {addr}: {source}")]
    ConnectFailed {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: SocketAddr, after: Duration },
    #[error("no response head from {addr} within {after:?}")]
    ResponseTimeout { addr: SocketAddr, after: Duration },
    #[error("{addr} failed: {source}")]
    Upstream {
        addr: SocketAddr,
        /// Whether the request may have reached the server.
        sent: bool,
        #[source]
        source: hyper::Error,
    },
    #[error("{addr} failed: {source}")]
    UpstreamIo {
        addr: SocketAddr,
        /// Whether the request may have reached the server.
        sent: bool,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} closed the connection without answering")]
    UpstreamClosed { addr: SocketAddr },
    #[error("{addr} sent a response predictor refuses: {source}")]
    BadResponse {
        addr: SocketAddr,
        #[source]
        source: crate::proxy::h1::response::ResponseError,
    },
    /// The client's request body broke while it was being sent upstream
    /// (a malformed chunk, a connection closed mid-body): the client's
    /// fault, whatever the upstream did.
    #[error("the request body from the client broke: {source}")]
    ClientBody {
        #[source]
        source: crate::proxy::body::ClientBodyError,
    },
    /// An HTTP/1 request head the codec refuses (its status is the
    /// codec's: 400, 417, 431 or 505).
    #[error("{0}")]
    BadHead(crate::proxy::h1::request::RequestError),
    #[error("{addr} switched protocols without being asked to")]
    UnexpectedUpgrade { addr: SocketAddr },
    #[error("no server to try in pool {pool}")]
    NoServer { pool: String },
    #[error("{pending} connects to {addr} already in progress, no slot within {after:?}")]
    ConnectQueueFull {
        addr: SocketAddr,
        pending: usize,
        after: Duration,
    },
    #[error("the legacy balancer {addr} is down")]
    LegacyDown { addr: SocketAddr },
    #[error("request came back with this proxy's own hop marker (a routing loop)")]
    LoopDetected,
    /// Over one of its tenant's limits (`[tiers.NAME.limits]`).
    #[error("over the tenant's {} limit", .0.as_str())]
    Limited(crate::isolation::Limited),
    /// The pool's servers are at their ceilings and the queue shed it.
    #[error("shed by pool {pool}: {}", .reason.as_str())]
    Shed {
        pool: Box<str>,
        reason: ShedReason,
        /// `Retry-After`, seconds.
        retry_after: u32,
    },
}

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            ProxyError::BadHost(_)
            | ProxyError::MissingHost
            | ProxyError::DuplicateHost
            | ProxyError::AuthorityMismatch { .. }
            | ProxyError::ConflictingFraming
            | ProxyError::MalformedHead(_)
            | ProxyError::Connect
            | ProxyError::ClientBody { .. }
            | ProxyError::BadHead(_)
            | ProxyError::Misdirected { .. } => Side::Client,
            ProxyError::Limited(_) | ProxyError::Shed { .. } => Side::Bound,
            ProxyError::ConnectFailed { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::ResponseTimeout { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::UpstreamIo { .. }
            | ProxyError::UpstreamClosed { .. }
            | ProxyError::BadResponse { .. }
            | ProxyError::UnexpectedUpgrade { .. }
            | ProxyError::NoServer { .. }
            | ProxyError::ConnectQueueFull { .. }
            | ProxyError::LegacyDown { .. }
            // The upstream routed the request back to us.
            | ProxyError::LoopDetected => Side::Upstream,
        }
    }

    /// Whether the request can be sent again (to the next server) without
    /// risk that it was already processed: true when it never left.
    pub fn retry_safe(&self) -> bool {
        match self {
            ProxyError::ConnectFailed { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::ConnectQueueFull { .. }
            | ProxyError::LegacyDown { .. } => true,
            ProxyError::Upstream { sent, .. } | ProxyError::UpstreamIo { sent, .. } => !sent,
            _ => false,
        }
    }

    /// The status the client gets. The only mapping of errors to statuses.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadHost(_)
            | ProxyError::MissingHost
            | ProxyError::DuplicateHost
            | ProxyError::AuthorityMismatch { .. }
            | ProxyError::ConflictingFraming
            | ProxyError::MalformedHead(_)
            | ProxyError::ClientBody { .. } => StatusCode::BAD_REQUEST,
            ProxyError::BadHead(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ProxyError::Connect => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::ConnectFailed { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::UpstreamIo { .. }
            | ProxyError::UpstreamClosed { .. }
            | ProxyError::BadResponse { .. }
            | ProxyError::UnexpectedUpgrade { .. }
            | ProxyError::LegacyDown { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::NoServer { .. } | ProxyError::ConnectQueueFull { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::LoopDetected => StatusCode::LOOP_DETECTED,
            ProxyError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Shed { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `Retry-After` of the answer, in seconds, where one helps.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            ProxyError::Limited(l) => Some(l.retry_after()),
            ProxyError::Shed { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The failure of an exchange whose request was sent: the client's
    /// when its own body is what broke (hyper's client reports a body
    /// stream error as a "user" error caused by the body's error, which
    /// here is always the client connection's), else the upstream's.
    pub fn exchange(addr: SocketAddr, source: hyper::Error) -> ProxyError {
        use crate::proxy::body::ClientBodyError;
        let body_broke = source.is_user()
            && std::error::Error::source(&source).is_some_and(|c| c.is::<ClientBodyError>());
        if !body_broke {
            return ProxyError::Upstream {
                addr,
                sent: true,
                source,
            };
        }
        // hyper's error keeps the body's own as its cause.
        let source = ClientBodyError::H2(source);
        ProxyError::ClientBody { source }
    }

    /// Whether connecting failed (a passive health signal).
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::ConnectFailed { .. } | ProxyError::ConnectTimeout { .. }
        )
    }

    /// The server a failure counts against for passive health: connect
    /// errors, timeouts and broken exchanges (not a client body that broke
    /// on the way, nor a full connect queue, which is predictor's limit).
    pub fn failed_server(&self) -> Option<SocketAddr> {
        match self {
            ProxyError::ConnectFailed { addr, .. }
            | ProxyError::ConnectTimeout { addr, .. }
            | ProxyError::ResponseTimeout { addr, .. }
            | ProxyError::UpstreamIo { addr, .. }
            | ProxyError::UpstreamClosed { addr }
            | ProxyError::BadResponse { addr, .. } => Some(*addr),
            ProxyError::Upstream { addr, source, .. } if !source.is_user() => Some(*addr),
            _ => None,
        }
    }

    /// Whether the client connection must be closed after the answer
    /// (the request's framing cannot be trusted).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::ConflictingFraming
                | ProxyError::MalformedHead(_)
                | ProxyError::BadHead(_)
                | ProxyError::ClientBody { .. }
        )
    }
}

/// The short HTML body of a locally generated status.
pub fn page(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => {
            "<!DOCTYPE html>\n<html><body><h1>400 Bad Request</h1><p>The request could not be understood.</p></body></html>\n"
        }
        404 => {
            "<!DOCTYPE html>\n<html><body><h1>404 Not Found</h1><p>No site is served under this name here.</p></body></html>\n"
        }
        405 => "<!DOCTYPE html>\n<html><body><h1>405 Method Not Allowed</h1></body></html>\n",
        417 => "<!DOCTYPE html>\n<html><body><h1>417 Expectation Failed</h1></body></html>\n",
        431 => {
            "<!DOCTYPE html>\n<html><body><h1>431 Request Header Fields Too Large</h1></body></html>\n"
        }
        505 => {
            "<!DOCTYPE html>\n<html><body><h1>505 HTTP Version Not Supported</h1></body></html>\n"
        }
        408 => "<!DOCTYPE html>\n<html><body><h1>408 Request Timeout</h1></body></html>\n",
        429 => {
            "<!DOCTYPE html>\n<html><body><h1>429 Too Many Requests</h1><p>This site is receiving more requests than its plan allows. Please try again shortly.</p></body></html>\n"
        }
        421 => {
            "<!DOCTYPE html>\n<html><body><h1>421 Misdirected Request</h1><p>No site is served under this name here.</p></body></html>\n"
        }
        502 => {
            "<!DOCTYPE html>\n<html><body><h1>502 Bad Gateway</h1><p>The server of this site could not be reached. Please try again shortly.</p></body></html>\n"
        }
        503 => {
            "<!DOCTYPE html>\n<html><body><h1>503 Service Unavailable</h1><p>No server of this site is available. Please try again shortly.</p></body></html>\n"
        }
        508 => {
            "<!DOCTYPE html>\n<html><body><h1>508 Loop Detected</h1><p>This request came back to the balancer that had already forwarded it.</p></body></html>\n"
        }
        504 => {
            "<!DOCTYPE html>\n<html><body><h1>504 Gateway Timeout</h1><p>The server of this site did not answer in time.</p></body></html>\n"
        }
        _ => "<!DOCTYPE html>\n<html><body><h1>Error</h1></body></html>\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_4xx_and_never_retried() {
        for e in [
            ProxyError::MissingHost,
            ProxyError::DuplicateHost,
            ProxyError::ConflictingFraming,
            ProxyError::BadHost(HostError::Empty),
        ] {
            assert_eq!(e.side(), Side::Client);
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert!(!e.retry_safe());
        }
        assert_eq!(ProxyError::Connect.status(), StatusCode::METHOD_NOT_ALLOWED);
        let m = ProxyError::Misdirected {
            sni: "a.example".into(),
            host: "b.example".into(),
        };
        assert_eq!(
            (m.status(), m.side(), m.retry_safe()),
            (StatusCode::MISDIRECTED_REQUEST, Side::Client, false)
        );
    }

    #[test]
    fn upstream_errors_map_to_gateway_statuses() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let refused = ProxyError::ConnectFailed {
            addr,
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert_eq!(
            (refused.side(), refused.status(), refused.retry_safe()),
            (Side::Upstream, StatusCode::BAD_GATEWAY, true)
        );
        let slow = ProxyError::ResponseTimeout {
            addr,
            after: Duration::from_secs(1),
        };
        assert_eq!(
            (slow.status(), slow.retry_safe()),
            (StatusCode::GATEWAY_TIMEOUT, false)
        );
        let none = ProxyError::NoServer { pool: "p".into() };
        assert_eq!(none.status(), StatusCode::SERVICE_UNAVAILABLE);
        let down = ProxyError::LegacyDown { addr };
        assert_eq!(
            (down.status(), down.retry_safe()),
            (StatusCode::BAD_GATEWAY, true)
        );
        let queued = ProxyError::ConnectQueueFull {
            addr,
            pending: 64,
            after: Duration::from_secs(3),
        };
        assert_eq!(queued.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ProxyError::LoopDetected.status(), StatusCode::LOOP_DETECTED);
        assert!(!ProxyError::LoopDetected.retry_safe());
    }

    #[test]
    fn bounds_answer_429_and_503_with_retry_after() {
        use crate::isolation::Limited;
        let rate = ProxyError::Limited(Limited::Rate(3));
        assert_eq!(
            (rate.status(), rate.side(), rate.retry_after()),
            (StatusCode::TOO_MANY_REQUESTS, Side::Bound, Some(3))
        );
        let busy = ProxyError::Limited(Limited::Concurrency);
        assert_eq!(busy.retry_after(), Some(1));
        let shed = ProxyError::Shed {
            pool: "shared".into(),
            reason: ShedReason::QueueTimeout,
            retry_after: 5,
        };
        assert_eq!(
            (
                shed.status(),
                shed.side(),
                shed.retry_after(),
                shed.retry_safe()
            ),
            (StatusCode::SERVICE_UNAVAILABLE, Side::Bound, Some(5), false)
        );
        assert_eq!(ProxyError::LoopDetected.retry_after(), None);
    }

    #[test]
    fn every_local_status_has_a_page() {
        for s in [400u16, 404, 405, 408, 421, 429, 502, 503, 504, 508] {
            assert!(page(StatusCode::from_u16(s).unwrap()).contains(&s.to_string()));
        }
    }
}
