//! The admin listener: what operators and Prometheus ask a running
//! predictor. `GET /metrics` (Prometheus text format) and `GET /healthz`.
//!
//! It runs on the control thread, never on a worker, and is bound to its
//! own address (loopback in the example config), so a scrape never takes
//! a client connection slot.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::snapshot::SharedSnapshot;

/// Serves admin requests on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, snapshot: Arc<SharedSnapshot>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (metrics, snapshot) = (metrics.clone(), snapshot.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (metrics, snapshot) = (metrics.clone(), snapshot.clone());
                async move { Ok::<_, Infallible>(answer(&req, &metrics, &snapshot)) }
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

fn answer(
    req: &Request<Incoming>,
    metrics: &Metrics,
    snapshot: &SharedSnapshot,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = text(StatusCode::OK, metrics.render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(
            StatusCode::OK,
            format!("ok generation={}\n", snapshot.load().generation),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n".into(),
        ),
    }
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
