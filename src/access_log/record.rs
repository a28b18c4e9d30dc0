//! One request's log line: what is kept from its head, what its routing
//! and its answer add, and the JSON it becomes when its response ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Uri, Version};

use super::escape::escape_into;
use crate::metrics::routes::{NONE, RouteSlot};

/// What the log keeps of a request's head (cheap clones: the values share
/// the request's buffers).
pub struct RequestLine {
    pub time: SystemTime,
    /// The client's address and port, as [`address_value`] writes it
    /// (once per connection).
    pub client: HeaderValue,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    /// The authority as the client sent it (`Host` or `:authority`).
    pub host: Option<HeaderValue>,
    /// As sent (the head's bytes; escaped as the line is written).
    pub user_agent: Option<Bytes>,
}

/// A tenant's name, kept in the record itself when it is short (most
/// are): no allocation per logged request.
pub enum Name {
    Inline { len: u8, bytes: [u8; 31] },
    Heap(Box<str>),
}

impl Name {
    pub fn new(name: &str) -> Name {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= 31 => {
                let mut bytes = [0u8; 31];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Name::Inline { len, bytes }
            }
            _ => Name::Heap(name.into()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Name::Heap(name) => name.as_bytes(),
        }
    }
}

/// A request on its way: completed by the response's end, then sent.
pub struct Record {
    pub request: RequestLine,
    pub started: Instant,
    pub request_id: Option<HeaderValue>,
    /// The id is one predictor made (hex digits: no escape check).
    pub request_id_generated: bool,
    pub tenant: Option<Name>,
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
    /// How long it waited in a pool's queue for a server under its
    /// ceiling (none: it did not wait).
    pub queued: Option<Duration>,
    /// Refused by a tenant's limit or shed by a pool: the reason
    /// (`rate`, `client_rate`, `concurrency`, `queue_full`,
    /// `queue_timeout`, `evicted`).
    pub bounded: Option<&'static str>,
    /// A preview of a site in maintenance (`[preview]`).
    pub preview: bool,
}

/// A member's key as literals: `,"name":`, `,"name":"` (a string
/// follows) and `,"name":null`, so that each is one copy of known length.
macro_rules! member {
    ($name:literal) => {
        Key {
            name: concat!(",\"", $name, "\":"),
            quoted: concat!(",\"", $name, "\":\""),
            null: concat!(",\"", $name, "\":null"),
        }
    };
}

/// See [`member!`].
#[derive(Clone, Copy)]
struct Key {
    name: &'static str,
    quoted: &'static str,
    null: &'static str,
}

/// The JSON line, written field by field into one buffer (the schema is
/// fixed: keys are constants, and a value is escaped only where it has a
/// byte JSON needs escaped; serde_json's per-byte escaping was ~3,900 of the
/// ~10,000 instructions a logged request cost).
struct Json<'a>(&'a mut Vec<u8>);

impl Json<'_> {
    /// `,"key":` (`time` is the first key, written with the brace).
    /// Inlined: each key is a literal, so it is one copy of known length
    /// (no `memcpy` call).
    #[inline(always)]
    fn key(&mut self, key: Key) {
        self.0.extend_from_slice(key.name.as_bytes());
    }

    #[inline(always)]
    fn str(&mut self, key: Key, v: &str) {
        self.escaped(key, v.as_bytes());
    }

    /// Bytes as a string, escaped (invalid UTF-8 replaced).
    #[inline(always)]
    fn escaped(&mut self, key: Key, v: &[u8]) {
        self.0.extend_from_slice(key.quoted.as_bytes());
        escape_into(self.0, v);
        self.0.push(b'"');
    }

    /// A string known to need no escaping.
    #[inline(always)]
    fn raw(&mut self, key: Key, v: &[u8]) {
        self.0.extend_from_slice(key.quoted.as_bytes());
        self.0.extend_from_slice(v);
        self.0.push(b'"');
    }

    /// A header's bytes as a string (invalid UTF-8 replaced), or as they
    /// are when they are known to need no escaping (`plain`).
    #[inline(always)]
    fn bytes(&mut self, key: Key, v: Option<&[u8]>, plain: bool) {
        match v {
            Some(v) if plain => self.raw(key, v),
            // Bytes that are not UTF-8 take the slow path, which replaces
            // them.
            Some(v) => self.escaped(key, v),
            None => self.null(key),
        }
    }

    #[inline(always)]
    fn opt_str(&mut self, key: Key, v: Option<&str>) {
        match v {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    #[inline(always)]
    fn null(&mut self, key: Key) {
        self.0.extend_from_slice(key.null.as_bytes());
    }

    #[inline(always)]
    fn uint(&mut self, key: Key, v: u64) {
        self.key(key);
        self.0
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    /// A status code: three digits (100 to 999, as parsed).
    #[inline(always)]
    fn status(&mut self, key: Key, v: u16) {
        self.key(key);
        if (100..1000).contains(&v) {
            self.0.extend_from_slice(&[
                b'0' + (v / 100) as u8,
                b'0' + (v / 10 % 10) as u8,
                b'0' + (v % 10) as u8,
            ]);
        } else {
            self.0
                .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        }
    }

    /// Milliseconds to the microsecond (`12.345`).
    #[inline(always)]
    fn ms(&mut self, key: Key, d: Option<Duration>) {
        let Some(d) = d else {
            return self.null(key);
        };
        self.key(key);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let mut digits = itoa::Buffer::new();
        self.0
            .extend_from_slice(digits.format(us / 1000).as_bytes());
        let frac = (us % 1000) as u16;
        if frac != 0 {
            self.0.push(b'.');
            let f = [
                b'0' + (frac / 100) as u8,
                b'0' + (frac / 10 % 10) as u8,
                b'0' + (frac % 10) as u8,
            ];
            let keep = if f[2] != b'0' {
                3
            } else if f[1] != b'0' {
                2
            } else {
                1
            };
            self.0.extend_from_slice(&f[..keep]);
        }
    }

    #[inline(always)]
    fn address(&mut self, key: Key, a: Option<SocketAddr>) {
        let Some(a) = a else {
            return self.null(key);
        };
        self.0.extend_from_slice(key.quoted.as_bytes());
        address_into(self.0, a);
        self.0.push(b'"');
    }
}

/// A route slot's members of a line: `,"route":"local","tier":"gold",
/// "pool":"web"` (`null` for no tier or no pool).
fn slot_members(slot: &RouteSlot) -> Box<[u8]> {
    fn named(name: &str) -> Option<&str> {
        (name != NONE).then_some(name)
    }
    let mut out = Vec::with_capacity(64);
    let mut j = Json(&mut out);
    j.raw(member!("route"), slot.route.as_str().as_bytes());
    j.opt_str(member!("tier"), named(&slot.tier));
    j.opt_str(member!("pool"), named(&slot.pool));
    out.into_boxed_slice()
}

/// `a` as the log writes it (`192.0.2.7:4711`, `[2001:db8::1]:443`): for a
/// connection's client, written once per connection.
pub fn address_value(a: SocketAddr) -> HeaderValue {
    let mut out = Vec::with_capacity(21);
    address_into(&mut out, a);
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("-"))
}

#[inline(always)]
fn address_into(out: &mut Vec<u8>, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
            out.push(b':');
            out.extend_from_slice(digits.format(v4.port()).as_bytes());
        }
        // `Display` for addresses costs a few thousand instructions: IPv4
        // is written digit by digit above.
        SocketAddr::V6(_) => {
            use std::io::Write;
            let _ = write!(out, "{a}");
        }
    }
}

/// RFC 3339 in UTC to the millisecond. The part up to the seconds is
/// formatted once per second and thread, like nginx's cached times.
fn rfc3339(t: SystemTime, out: &mut Vec<u8>) {
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
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    })
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

impl Record {
    /// Appends the JSON line and its newline, the response having ended
    /// (`completed`) or been cut short.
    pub fn write(&self, completed: bool, out: &mut Vec<u8>) {
        let r = &self.request;
        let mut j = Json(out);
        j.0.extend_from_slice(b"{\"time\":\"");
        rfc3339(r.time, j.0);
        j.0.push(b'"');
        j.bytes(
            member!("request_id"),
            self.request_id.as_ref().map(HeaderValue::as_bytes),
            self.request_id_generated,
        );
        j.raw(member!("client"), r.client.as_bytes());
        // A method is a token: no byte of it needs escaping.
        j.raw(member!("method"), r.method.as_str().as_bytes());
        j.str(
            member!("target"),
            r.uri
                .path_and_query()
                .map_or_else(|| r.uri.path(), |p| p.as_str()),
        );
        j.raw(member!("version"), version(r.version).as_bytes());
        j.bytes(
            member!("host"),
            r.host.as_ref().map(HeaderValue::as_bytes),
            false,
        );
        match &self.tenant {
            Some(name) => j.escaped(member!("tenant"), name.as_bytes()),
            None => j.null(member!("tenant")),
        }
        // `,"route":…,"tier":…,"pool":…`, written once per config.
        let members = self
            .slot
            .log_members
            .get_or_init(|| slot_members(&self.slot));
        j.0.extend_from_slice(members);
        j.address(member!("server"), self.server);
        j.status(member!("status"), self.status);
        j.uint(
            member!("bytes_in"),
            self.bytes_in
                .as_ref()
                .map_or(0, |b| b.load(Ordering::Relaxed)),
        );
        j.uint(member!("bytes_out"), self.bytes_out);
        j.ms(member!("duration_ms"), Some(self.started.elapsed()));
        j.ms(member!("upstream_ms"), self.upstream);
        j.ms(member!("queue_ms"), self.queued);
        match self.bounded {
            Some(reason) => j.raw(member!("bounded"), reason.as_bytes()),
            None => j.null(member!("bounded")),
        }
        if self.preview {
            // Only on previews: most lines never carry it.
            j.key(member!("preview"));
            j.0.extend_from_slice(b"true");
        }
        j.bytes(member!("user_agent"), r.user_agent.as_deref(), false);
        j.key(member!("completed"));
        j.0.extend_from_slice(if completed { b"true}\n" } else { b"false}\n" });
    }

    /// The JSON line, without its newline.
    #[cfg(test)]
    pub fn line(&self, completed: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(completed, &mut out);
        out.pop();
        out
    }
}

#[cfg(test)]
mod tests;
