//! One request's log line: what is kept from its head, what its routing
//! and its answer add, and the JSON it becomes when its response ends.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Method, Uri, Version};
use serde::{Serialize, Serializer};

use crate::metrics::routes::{NONE, RouteSlot};

/// What the log keeps of a request's head (cheap clones: the values share
/// the request's buffers).
pub struct RequestLine {
    pub time: SystemTime,
    pub client: SocketAddr,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    /// The authority as the client sent it (`Host` or `:authority`).
    pub host: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
}

/// A request on its way: completed by the response's end, then sent.
pub struct Record {
    pub request: RequestLine,
    pub started: Instant,
    pub request_id: Option<HeaderValue>,
    pub tenant: Option<Box<str>>,
    pub slot: Arc<RouteSlot>,
    /// The webserver or legacy balancer that answered.
    pub server: Option<SocketAddr>,
    pub status: u16,
    /// From the request sent upstream to the response head.
    pub upstream: Option<Duration>,
    /// Request body bytes read from the client (shared with the body on
    /// its way upstream).
    pub bytes_in: Option<Arc<AtomicU64>>,
    /// Response body bytes passed to the client.
    pub bytes_out: u64,
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(serialize_with = "rfc3339")]
    time: SystemTime,
    request_id: Option<Cow<'a, str>>,
    #[serde(serialize_with = "address")]
    client: SocketAddr,
    method: &'a str,
    target: &'a str,
    version: &'static str,
    host: Option<Cow<'a, str>>,
    tenant: Option<&'a str>,
    route: &'static str,
    tier: Option<&'a str>,
    pool: Option<&'a str>,
    #[serde(serialize_with = "maybe_address")]
    server: Option<SocketAddr>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    user_agent: Option<Cow<'a, str>>,
    /// False when the response ended early (client gone, upstream broke).
    completed: bool,
}

/// RFC 3339 in UTC to the millisecond. The part up to the seconds is
/// formatted once per second and thread, like nginx's cached times.
fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != secs {
            // "2026-11-30T23:58:12.000Z" without its ".000Z".
            let full = humantime::format_rfc3339_seconds(
                SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            )
            .to_string();
            text.clear();
            text.push_str(full.trim_end_matches('Z'));
            *cached = secs;
        }
        let ms = since.subsec_millis();
        let mut out = [0u8; 40];
        let n = text.len();
        out[..n].copy_from_slice(text.as_bytes());
        out[n] = b'.';
        out[n + 1] = b'0' + (ms / 100) as u8;
        out[n + 2] = b'0' + (ms / 10 % 10) as u8;
        out[n + 3] = b'0' + (ms % 10) as u8;
        out[n + 4] = b'Z';
        s.serialize_str(std::str::from_utf8(&out[..n + 5]).unwrap_or_default())
    })
}

/// `ip:port`; IPv4 written digit by digit (`Display` for addresses costs
/// a few thousand instructions, on every line).
fn address<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    match a {
        SocketAddr::V4(v4) => {
            let mut out = [0u8; 21];
            let mut n = 0;
            let mut put = |bytes: &[u8]| {
                out[n..n + bytes.len()].copy_from_slice(bytes);
                n += bytes.len();
            };
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    put(b".");
                }
                put(digits.format(octet).as_bytes());
            }
            put(b":");
            put(digits.format(v4.port()).as_bytes());
            s.serialize_str(std::str::from_utf8(&out[..n]).unwrap_or_default())
        }
        SocketAddr::V6(_) => s.collect_str(a),
    }
}

fn maybe_address<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => address(a, s),
        None => s.serialize_none(),
    }
}

/// Milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn text(v: &Option<HeaderValue>) -> Option<Cow<'_, str>> {
    v.as_ref().map(|v| String::from_utf8_lossy(v.as_bytes()))
}

fn named(name: &str) -> Option<&str> {
    (name != NONE).then_some(name)
}

impl Record {
    /// The JSON line (no newline), the response having ended (`completed`)
    /// or been cut short.
    pub fn line(&self, completed: bool) -> Vec<u8> {
        let r = &self.request;
        let line = Line {
            time: r.time,
            request_id: text(&self.request_id),
            client: r.client,
            method: r.method.as_str(),
            target: r
                .uri
                .path_and_query()
                .map_or_else(|| r.uri.path(), |p| p.as_str()),
            version: version(r.version),
            host: text(&r.host),
            tenant: self.tenant.as_deref(),
            route: self.slot.route.as_str(),
            tier: named(&self.slot.tier),
            pool: named(&self.slot.pool),
            server: self.server,
            status: self.status,
            bytes_in: self
                .bytes_in
                .as_ref()
                .map_or(0, |b| b.load(Ordering::Relaxed)),
            bytes_out: self.bytes_out,
            duration_ms: ms(self.started.elapsed()),
            upstream_ms: self.upstream.map(ms),
            user_agent: text(&r.user_agent),
            completed,
        };
        let mut out = Vec::with_capacity(512);
        // Serializing plain fields into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &line);
        out
    }
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::RouteKind;

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let metrics = crate::metrics::Metrics::new();
        let config = crate::config::tests_support::two_tiers();
        let table = metrics.routes(&config);
        let slot = table.slot(RouteKind::Local, Some(0)).clone();
        let record = Record {
            request: RequestLine {
                time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_500),
                client: "192.0.2.7:4711".parse().unwrap(),
                method: Method::POST,
                uri: "/a/b?c=d%20e".parse().unwrap(),
                version: Version::HTTP_2,
                host: Some(HeaderValue::from_static("Shop.Example")),
                user_agent: Some(HeaderValue::from_bytes(b"curl/8 \"x\" \xff").unwrap()),
            },
            started: Instant::now(),
            request_id: Some(HeaderValue::from_static("abc")),
            tenant: Some("t1".into()),
            slot,
            server: Some("10.0.0.1:80".parse().unwrap()),
            status: 201,
            upstream: Some(Duration::from_micros(1_234)),
            bytes_in: Some(Arc::new(AtomicU64::new(5))),
            bytes_out: 7,
        };
        let line = record.line(true);
        assert!(!line.contains(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["time"], "1970-01-01T00:00:01.500Z");
        assert_eq!(v["client"], "192.0.2.7:4711");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["target"], "/a/b?c=d%20e");
        assert_eq!(v["version"], "HTTP/2");
        assert_eq!(v["host"], "Shop.Example");
        assert_eq!(v["tenant"], "t1");
        assert_eq!(v["route"], "local");
        assert_eq!(v["tier"], "basic");
        assert_eq!(v["pool"], "web");
        assert_eq!(v["server"], "10.0.0.1:80");
        assert_eq!(v["status"], 201);
        assert_eq!(v["bytes_in"], 5);
        assert_eq!(v["bytes_out"], 7);
        assert_eq!(v["upstream_ms"], 1.234);
        assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v["user_agent"], "curl/8 \"x\" \u{fffd}");
        assert_eq!(v["completed"], true);
        // The second is cached; the milliseconds are not.
        let mut later = Record {
            request: RequestLine {
                time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_007),
                client: "[2001:db8::1]:443".parse().unwrap(),
                ..record.request
            },
            ..record
        };
        let v: serde_json::Value = serde_json::from_slice(&later.line(true)).unwrap();
        assert_eq!(v["time"], "1970-01-01T00:00:01.007Z");
        assert_eq!(v["client"], "[2001:db8::1]:443");
        later.request.time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_547_200);
        let v: serde_json::Value = serde_json::from_slice(&later.line(true)).unwrap();
        assert_eq!(v["time"], "2025-12-01T00:00:00.000Z");
        let rejected = Record {
            slot: table.slot(RouteKind::Rejected, None).clone(),
            tenant: None,
            server: None,
            upstream: None,
            ..later
        };
        let v: serde_json::Value = serde_json::from_slice(&rejected.line(false)).unwrap();
        assert_eq!(v["route"], "rejected");
        assert!(v["tier"].is_null() && v["pool"].is_null() && v["tenant"].is_null());
        assert!(v["upstream_ms"].is_null());
        assert_eq!(v["completed"], false);
    }
}
