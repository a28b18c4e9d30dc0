//! The demo's stand-ins for real machines: webservers that answer with their
//! own name and the tenant they served, and a legacy balancer that answers
//! for the old datacenter. Plain hyper servers on loopback.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What a demo backend says about itself.
#[derive(Debug, Clone)]
pub enum Role {
    Webserver { id: String, pool: String },
    Legacy,
}

/// Binds a backend on an ephemeral loopback port; serves until the runtime
/// ends.
pub async fn spawn(role: Role) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let role = role.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(role.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(role: Role, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let text = match &role {
        Role::Webserver { id, pool } => format!(
            "webserver {id} (pool {pool}) served tenant {} for {} {} {}\nclient {} via {}\n",
            header("x-tenant"),
            header("host"),
            req.method(),
            req.uri(),
            header("x-forwarded-for"),
            header("via"),
        ),
        Role::Legacy => format!(
            "legacy balancer (old datacenter) served {} {} {}: this site is not migrated yet\nclient {} via {}\n",
            header("host"),
            req.method(),
            req.uri(),
            header("x-forwarded-for"),
            header("via"),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}
