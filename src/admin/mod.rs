//! The admin listener: what operators, orchestrators and Prometheus ask a
//! running predictor. `GET /metrics` (Prometheus text format),
//! `GET /healthz` (the process answers), `GET /readyz` (every worker
//! accepting and not draining: 503 from `SIGTERM` on), `GET /status`
//! (JSON: generation, last good and failed reload, tenants by state,
//! servers' health and load, the legacy tunnel), and `GET /route?host=H`
//! (where a host goes, with the live load and health of its servers: what
//! `predictor route` shows from a running instance), and `GET /top` (the
//! tenants taking the most requests, in flight, limited or queued: what
//! `predictor top` shows).
//!
//! It runs on the control thread, never on a worker, and is bound to its
//! own address (loopback in the example config), so a scrape never takes
//! a client connection slot; it keeps answering while the workers drain.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub mod diff;
pub mod explain;
pub mod scrape;
mod status;
pub mod top;

use crate::legacy::Tunnel;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::snapshot::SharedSnapshot;

/// What the admin listener reads.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub snapshot: Arc<SharedSnapshot>,
    pub tunnel: Arc<Tunnel>,
    pub lifecycle: Arc<Lifecycle>,
    /// Who is hot (scanned once a second by the control thread).
    pub top: Arc<crate::isolation::top::Top>,
}

/// Serves admin requests on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(answer(&req, &admin)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(client = %peer, error = %e, "admin connection failed");
            }
        });
    }
}

fn answer(req: &Request<Incoming>, admin: &Admin) -> Response<Full<Bytes>> {
    if req.method() == Method::POST && req.uri().path() == "/reload/confirm" {
        return confirm(req.uri().query(), admin);
    }
    if req.method() == Method::POST && req.uri().path() == "/verify/reset" {
        let q = req.uri().query().unwrap_or_default();
        let filer = q.split('&').find_map(|kv| kv.strip_prefix("filer="));
        admin.snapshot.verify.reset(filer);
        return text(
            StatusCode::OK,
            format!("reset {}\n", filer.unwrap_or("every filer")),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET (and POST /reload/confirm, /verify/reset)\n".into(),
        );
    }
    let snapshot = &admin.snapshot;
    match req.uri().path() {
        "/metrics" => {
            let mut r = text(StatusCode::OK, metrics(admin));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/status" => {
            let mut r = text(StatusCode::OK, status::render(admin));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            r
        }
        "/route" => match req.uri().query().and_then(host_param) {
            Some(host) => text(
                StatusCode::OK,
                explain::explain_live(&snapshot.load(), &host, Some(&admin.top)).to_string(),
            ),
            None => text(
                StatusCode::BAD_REQUEST,
                "expected /route?host=HOST\n".into(),
            ),
        },
        "/top" => match top::Query::parse(req.uri().query()) {
            Ok(q) => {
                let mut r = text(StatusCode::OK, top::render(&snapshot.load(), &admin.top, q));
                if !q.text {
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("application/json"),
                    );
                }
                r
            }
            Err(why) => text(StatusCode::BAD_REQUEST, format!("{why}\n")),
        },
        "/verify" => {
            let q = req.uri().query().unwrap_or_default();
            let filer = q.split('&').find_map(|kv| kv.strip_prefix("filer="));
            let snap = snapshot.load();
            let policy = &snap.config.shadow;
            if q.split('&').any(|kv| kv == "format=text") {
                text(StatusCode::OK, snapshot.verify.text(policy, filer))
            } else {
                let body = serde_json::to_string_pretty(&snapshot.verify.json(policy, filer))
                    .unwrap_or_default();
                let mut r = text(StatusCode::OK, body + "\n");
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                r
            }
        }
        "/healthz" => text(
            StatusCode::OK,
            format!("ok generation={}\n", snapshot.load().generation),
        ),
        "/readyz" => match admin.lifecycle.ready() {
            Ok(()) => text(
                StatusCode::OK,
                format!("ready generation={}\n", snapshot.load().generation),
            ),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz, /status, /top, /verify or /route?host=HOST\n"
                .into(),
        ),
    }
}

/// The whole exposition: the recorder's counters and histograms, then the
/// gauges read now.
fn metrics(admin: &Admin) -> String {
    let mut body = admin.metrics.render();
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let l = &admin.lifecycle;
    let process = scrape::Process {
        reload_held: admin.snapshot.guard.held().is_some(),
        connections_open: l.connections_open(),
        connections_max: l.max_connections(),
        draining: l.is_draining(),
        now_unix,
    };
    scrape::render(
        &mut body,
        &admin.snapshot.load(),
        &admin.snapshot.reload_status(),
        process,
    );
    body
}

/// `POST /reload/confirm?token=T`: installs the held reload whose token
/// is `T` (the reload itself runs on the process's reload task).
fn confirm(query: Option<&str>, admin: &Admin) -> Response<Full<Bytes>> {
    let token = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="));
    let guard = &admin.snapshot.guard;
    match (token, guard.held()) {
        (_, None) => text(StatusCode::CONFLICT, "no reload is held\n".into()),
        (Some(t), Some(h)) if guard.confirm(t) => text(
            StatusCode::ACCEPTED,
            format!("confirmed; installing: {}\n", h.summary),
        ),
        (_, Some(h)) => text(
            StatusCode::BAD_REQUEST,
            format!(
                "expected token={} (the held reload's: {})\n",
                h.token, h.summary
            ),
        ),
    }
}

/// The `host` parameter of a query, percent-decoded.
fn host_param(query: &str) -> Option<String> {
    let raw = query.split('&').find_map(|kv| kv.strip_prefix("host="))?;
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// `host` percent-encoded for the `host` query parameter of `/route`.
pub fn encode_host(host: &str) -> String {
    host.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'*' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GETs `path` from a running instance's admin listener: the body of a
/// 200 answer, or why there was none.
pub async fn fetch(addr: std::net::SocketAddr, path: &str) -> Result<String, String> {
    request(addr, Method::GET, path).await
}

/// `method path` on the admin listener at `addr`: the body of a 2xx
/// answer, else what went wrong.
pub async fn request(
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
) -> Result<String, String> {
    use http_body_util::BodyExt;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "admin")
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{status}: {}", body.trim_end()))
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 2 s".into()))
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parameter_round_trips() {
        for host in ["a.example", "[::1]:8080", "*.wild.example", "b.example:80"] {
            let q = format!("x=1&host={}", encode_host(host));
            assert_eq!(host_param(&q).as_deref(), Some(host));
        }
        assert_eq!(host_param("host=%4"), None);
        assert_eq!(host_param("nohost=a"), None);
    }
}
