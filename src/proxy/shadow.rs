//! Shadow copies: a site in the `shadow` state is served by the legacy
//! balancer like a legacy one; a sample of its safe requests (GET and
//! HEAD without a body; without credentials unless `[shadow]
//! mirror_credentials`) is also sent to its pool here, marked with
//! `[shadow] header`, once the live answer's body has been passed on (its
//! length and, while small, its digest taken on the way: [`Tap`]). The
//! copy runs in a task of its own: it never delays, changes or fails the
//! live answer.
//! It takes a slot under a server's ceiling like any request, at most
//! `max_in_flight` copies per worker are in flight (more are dropped and
//! counted), its answer is read up to `max_body` and thrown away, and the
//! two answers are compared into the server's verdicts
//! ([`crate::verify`]).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::BodyExt;

use super::body::RequestBody;
use super::fields::Fields;
use super::handler::{ConnCtx, WorkerShared};
use super::upstream::{ClientFields, Exchange, Retry, Settings};
use crate::config::Config;
use crate::health::InFlight;
use crate::model::MAX_ATTEMPTS;
use crate::routing::migration::MigrationState;
use crate::routing::{Action, Decision};
use crate::snapshot::Snapshot;
use crate::verify::{Answer, Outcome, Sample, compare};

/// A worker's shadow copies.
#[derive(Default)]
pub struct Counters {
    in_flight: Cell<usize>,
    /// The sample's pseudo-random sequence (xorshift; no secret needed).
    seen: Cell<u64>,
}

/// A request to copy to the new pool.
pub struct Copy {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    target: SocketAddr,
    in_flight: InFlight,
    config: Arc<Config>,
    tenant: Box<str>,
    filer: Box<str>,
    /// The worker's count of copies in flight, taken from the moment the
    /// copy is decided (the live answer may take a while).
    _slot: Slot,
}

/// One of a worker's copies in flight, until dropped.
struct Slot(Rc<WorkerShared>);

impl Slot {
    fn take(w: &Rc<WorkerShared>) -> Slot {
        w.shadow.in_flight.set(w.shadow.in_flight.get() + 1);
        Slot(w.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let c = &self.0.shadow.in_flight;
        c.set(c.get().saturating_sub(1));
    }
}

/// Hop-by-hop fields the copy does not carry (its connection is its own).
const HOP: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// The copy of a request `decision` sends to the legacy balancer, when its
/// site is in `shadow`, the request is safe and sampled, and a server of
/// the site's pool has room.
pub fn prepare(
    ctx: &ConnCtx,
    snap: &Snapshot,
    decision: &Decision,
    req: &Request<RequestBody>,
    fields: Fields<'_>,
) -> Option<Box<Copy>> {
    // (A preview of the site goes to the new pool itself: no copy.)
    let (Some(m), Some((MigrationState::Shadow, _)), Action::Legacy) =
        (decision.tenant, decision.state, decision.action)
    else {
        return None;
    };
    let policy = &snap.config.shadow;
    let safe = matches!(*req.method(), Method::GET | Method::HEAD)
        && http_body::Body::is_end_stream(req.body());
    if !safe || (!policy.mirror_credentials && credentials(fields, &policy.credential_cookies)) {
        return None;
    }
    let w = &ctx.worker;
    let r = snap.tenants.record(m.tenant);
    let filer = snap.tenants.filer_name(r.filer);
    let (share, rate) = policy.of(filer);
    if !sampled(&w.shadow.seen, share) {
        return None;
    }
    if w.shadow.in_flight.get() >= policy.max_in_flight {
        w.metrics.shadow.dropped.increment(1);
        return None;
    }
    if rate > 0 && !snap_verify_rate(w, filer, rate) {
        w.metrics.shadow.dropped.increment(1);
        return None;
    }
    let tier = snap.config.tier(r.tier);
    let live = snap.live.pool(tier.pool);
    let mut prefs = [0; MAX_ATTEMPTS];
    let n = snap.servers(
        m.tenant,
        tier.pool,
        r.ring_point,
        &mut prefs[..tier.k_min.max(1)],
    );
    let Some(in_flight) = prefs[..n].iter().find_map(|&s| live.try_begin(s)) else {
        w.metrics.shadow.dropped.increment(1);
        return None;
    };
    let mut headers = fields.to_map().ok()?;
    for h in &HOP {
        headers.remove(h);
    }
    headers.insert(policy.header.clone(), HeaderValue::from_static("1"));
    if !headers.contains_key(header::HOST) {
        // An HTTP/2 client's `:authority`.
        let authority = req.uri().authority()?;
        headers.insert(
            header::HOST,
            HeaderValue::from_str(authority.as_str()).ok()?,
        );
    }
    let pool = snap.config.pool(tier.pool);
    Some(Box::new(Copy {
        method: req.method().clone(),
        uri: req.uri().clone(),
        headers,
        target: pool.servers[usize::from(in_flight.server())].address,
        in_flight,
        config: snap.config.clone(),
        tenant: snap.tenants.name(m.tenant).into(),
        filer: filer.into(),
        _slot: Slot::take(w),
    }))
}

/// Whether this request is in the sample of `share` (0 to 1).
fn sampled(state: &Cell<u64>, share: f64) -> bool {
    if share >= 1.0 {
        return true;
    }
    // xorshift64*, seeded on first use.
    let mut x = state.get();
    if x == 0 {
        x = 0x9E37_79B9_7F4A_7C15;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state.set(x);
    let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
    (r as f64 / (1u64 << 53) as f64) < share
}

/// Whether filer `filer`'s copies are under `rate` per second (all
/// workers).
fn snap_verify_rate(w: &WorkerShared, filer: &str, rate: u32) -> bool {
    w.snapshot
        .verify
        .take_rate(filer, rate, crate::health::now_ns())
}

/// Whether a request carries credentials: `Authorization`, or a cookie
/// named in `names` (a trailing `*`: a prefix).
fn credentials(fields: Fields<'_>, names: &[String]) -> bool {
    if fields.contains(&header::AUTHORIZATION) {
        return true;
    }
    fields.get_all(&header::COOKIE).any(|v| {
        v.split(|&b| b == b';').any(|pair| {
            let name = pair
                .split(|&b| b == b'=')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            names.iter().any(|n| match n.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix.as_bytes()),
                None => name == n.as_bytes(),
            })
        })
    })
}

/// What an exchange answered: its status and the fields compared.
pub fn answer_of(ex: &Exchange) -> Answer {
    let mut a = Answer {
        status: ex.response.status().as_u16(),
        ..Answer::default()
    };
    let mut take = |name: &[u8], value: &[u8]| {
        let v = || String::from_utf8_lossy(value).trim().to_string();
        if name.eq_ignore_ascii_case(b"content-type") {
            a.content_type = Some(v());
        } else if name.eq_ignore_ascii_case(b"location") {
            a.location = Some(v());
        } else if name.eq_ignore_ascii_case(b"content-length") {
            a.length = v().parse().ok();
        }
    };
    match &ex.fields {
        // `name: value\r\n` lines (HTTP/1.1 upstreams).
        Some(f) => {
            for line in f.bytes.split(|&b| b == b'\n') {
                if let Some(colon) = line.iter().position(|&b| b == b':') {
                    take(&line[..colon], line[colon + 1..].trim_ascii());
                }
            }
        }
        None => {
            for (name, value) in ex.response.headers() {
                take(name.as_str().as_bytes(), value.as_bytes());
            }
        }
    }
    a
}

/// A shadow copy waiting for the live body to end: it counts the live
/// body's bytes and digests it while it is small (`[shadow]
/// digest_max`), then sends the copy ([`Tap::finish`]).
pub struct Tap {
    copy: Box<Copy>,
    live: Answer,
    worker: Rc<WorkerShared>,
    read: u64,
    digest: Option<xxhash_rust::xxh3::Xxh3>,
}

impl Tap {
    pub fn new(ctx: &ConnCtx, copy: Box<Copy>, live: &Exchange) -> Box<Tap> {
        let digest = (copy.config.shadow.digest_max > 0).then(xxhash_rust::xxh3::Xxh3::new);
        Box::new(Tap {
            live: answer_of(live),
            copy,
            worker: ctx.worker.clone(),
            read: 0,
            digest,
        })
    }

    /// A chunk of the live body passed to the client.
    pub fn observe(&mut self, data: &[u8]) {
        self.read += data.len() as u64;
        if self.read > self.copy.config.shadow.digest_max {
            self.digest = None;
        } else if let Some(d) = &mut self.digest {
            d.update(data);
        }
    }

    /// The live body ended (`completed`) or was cut short (no sample: the
    /// copy is dropped).
    pub fn finish(self: Box<Self>, completed: bool) {
        if !completed {
            return;
        }
        let Tap {
            copy,
            mut live,
            worker,
            read,
            digest,
        } = *self;
        if live.length.is_none() {
            live.length = Some(read);
        }
        live.digest = digest.map(|d| d.digest());
        tokio::task::spawn_local(async move { run(&worker, copy, live).await });
    }
}

async fn run(worker: &Rc<WorkerShared>, copy: Box<Copy>, live: Answer) {
    let Copy {
        method,
        uri,
        headers,
        target,
        in_flight,
        config,
        tenant,
        filer,
        _slot,
    } = *copy;
    let policy = &config.shadow;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut req = Request::new(RequestBody::empty());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let settings = Settings {
        connect: config.timeouts.connect,
        response: policy.timeout,
        idle: config.timeouts.upstream_idle,
        max_idle: config.limits.upstream_idle_per_server,
        max_lifetime: None,
        max_pending: None,
        retry: Retry::Never,
    };
    let fields = ClientFields {
        fields: Fields::Map(&headers),
        edits: None,
    };
    let targets = [target];
    let sent = worker
        .upstreams
        .send(&targets, &mut req, fields, &settings, false, false);
    let answer = match tokio::time::timeout(policy.timeout, sent).await {
        Ok(Ok(ex)) => {
            let mut new = answer_of(&ex);
            let mut body = ex.response.into_body();
            let mut read = 0u64;
            let mut whole = true;
            let mut digest = (policy.digest_max > 0).then(xxhash_rust::xxh3::Xxh3::new);
            loop {
                match tokio::time::timeout(policy.timeout, body.frame()).await {
                    Ok(Some(Ok(f))) => {
                        let data = f.data_ref().map_or(&[][..], |d| &d[..]);
                        read += data.len() as u64;
                        if read > policy.digest_max {
                            digest = None;
                        } else if let Some(d) = &mut digest {
                            d.update(data);
                        }
                        if read > policy.max_body {
                            whole = false;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Ok(Some(Err(_))) | Err(_) => {
                        whole = false;
                        break;
                    }
                }
            }
            if new.length.is_none() && whole {
                new.length = Some(read);
            }
            new.digest = digest.filter(|_| whole).map(|d| d.digest());
            Some(new)
        }
        _ => None,
    };
    drop(in_flight);
    let m = &worker.metrics.shadow;
    let outcome = match &answer {
        Some(new) => match compare(&live, new, policy.length_tolerance) {
            None => {
                m.matched.increment(1);
                Outcome::Matched
            }
            Some(k) => {
                m.mismatched.increment(1);
                Outcome::Mismatched(k)
            }
        },
        None => {
            m.failed.increment(1);
            Outcome::Failed
        }
    };
    worker.snapshot.verify.record(Sample {
        tenant: &tenant,
        filer: &filer,
        host: &host,
        path: &path,
        live: live.status,
        new: answer.map_or(0, |a| a.status),
        outcome,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_takes_its_share() {
        let state = Cell::new(0);
        let n = (0..100_000).filter(|_| sampled(&state, 0.1)).count();
        assert!((9_500..10_500).contains(&n), "{n}");
        assert!((0..100).all(|_| sampled(&state, 1.0)));
        assert!((0..100).all(|_| !sampled(&state, 0.0)));
    }
}
