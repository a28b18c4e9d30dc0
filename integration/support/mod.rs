//! Test support: config folders on disk, predictor started on loopback,
//! HTTP clients (hyper, and raw bytes for what hyper would never send).

pub mod agent;
pub mod backend;
pub mod capacity;
pub mod haproxy;
pub mod netns;
pub mod process;
pub mod prom;
pub mod relay;
pub mod scripted;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use predictor::server::Server;
use predictor::snapshot::Snapshot;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use backend::Backend;

/// Bound on any single network wait in a test.
pub const WAIT: Duration = Duration::from_secs(10);

/// A config folder in a temporary directory.
pub struct Folder {
    pub dir: tempfile::TempDir,
}

impl Folder {
    pub fn new(toml: &str, tenants: &str, migration: &str) -> Folder {
        let f = Folder {
            dir: tempfile::tempdir().unwrap(),
        };
        f.write("predictor.toml", toml);
        f.write("tenants.tsv", tenants);
        f.write("migration.toml", migration);
        f
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` in place (truncated, then written: a reload that
    /// reads it in between sees part of it).
    pub fn write(&self, name: &str, content: &str) {
        std::fs::write(self.dir.path().join(name), content).unwrap();
    }

    /// Replaces `name` whole: written beside it, then renamed over it, as
    /// the docs tell operators to (a reload never sees part of it).
    pub fn replace(&self, name: &str, content: &str) {
        let next = self.dir.path().join(format!(".{name}.next"));
        std::fs::write(&next, content).unwrap();
        std::fs::rename(&next, self.dir.path().join(name)).unwrap();
    }

    /// Dates every file of the folder a minute back, as a folder written
    /// well before the start is: the reload watch then knows the files
    /// serving by their stamps (a folder written just before is read
    /// again at the first event).
    pub fn age(&self) {
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        for entry in std::fs::read_dir(self.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let file = std::fs::File::options().write(true).open(&path).unwrap();
                file.set_modified(then).unwrap();
            }
        }
    }

    /// Rewrites a file of the folder with the first `n` occurrences of
    /// `from` replaced by `to` (all with `usize::MAX`).
    pub fn edit(&self, name: &str, from: &str, to: &str, n: usize) {
        let path = self.dir.path().join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from:?} not in {name}");
        std::fs::write(path, text.replacen(from, to, n)).unwrap();
    }
}

/// `predictor.toml` text: one listener on a free port, short timeouts,
/// pools as `(name, [(id, addr)])`, one tier per pool (named like it),
/// a legacy balancer when given, then `extra` TOML.
pub fn config_toml(
    pools: &[(&str, Vec<(&str, SocketAddr)>)],
    legacy: Option<SocketAddr>,
    extra: &str,
) -> String {
    let mut t = String::from(
        "tenants = \"tenants.tsv\"\nmigration = \"migration.toml\"\n\
         [proxy]\nworkers = 2\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\n\
         [forward]\ntenant_header = \"X-Tenant\"\n",
    );
    if !extra.contains("[timeouts]") {
        t.push_str("[timeouts]\nconnect = \"1s\"\ndrain = \"2s\"\n");
    }
    for (name, servers) in pools {
        t.push_str(&format!(
            "[tiers.{name}]\npool = \"{name}\"\n[pools.{name}]\nservers = [\n"
        ));
        for (id, addr) in servers {
            t.push_str(&format!("  {{ id = \"{id}\", address = \"{addr}\" }},\n"));
        }
        t.push_str("]\n");
    }
    if let Some(l) = legacy {
        t.push_str(&format!("[legacy]\naddress = \"{l}\"\n"));
    }
    t.push_str(extra);
    t
}

/// A folder with one migrated site, `s.example`, served by `web`.
pub fn single_site(web: &Backend, extra: &str) -> Folder {
    Folder::new(
        &config_toml(&[("web", vec![("w", web.addr)])], None, extra),
        "s.example\tt\tweb\tf\n",
        "default = \"migrated\"\n",
    )
}

/// predictor serving a folder, stopped (drained) when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    server: Option<Server>,
}

impl Proxy {
    pub fn start(folder: &Folder) -> Proxy {
        let snapshot = Snapshot::load(folder.path()).unwrap_or_else(|e| panic!("{e}"));
        Proxy::from_server(Server::start(snapshot).unwrap())
    }

    pub fn from_server(server: Server) -> Proxy {
        Proxy {
            addr: server.local_addrs()[0],
            server: Some(server),
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
            s.join();
        }
    }
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP/1.1 connection to `addr`.
pub async fn h1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    h1_over(TcpStream::connect(addr).await.unwrap()).await
}

/// An HTTP/1.1 connection over an open stream (TCP or TLS).
pub async fn h1_over<T>(io: T) -> hyper::client::conn::http1::SendRequest<Full<Bytes>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
}

/// An HTTP/2 (prior knowledge) connection to `addr`.
pub async fn h2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

pub async fn read(resp: http::Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET path` with `Host: host` on a new HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Answer {
    get_on(&mut h1(addr).await, host, path).await
}

/// `GET path` with `Host: host` on an HTTP/1.1 connection.
pub async fn get_on(
    s: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
    path: &str,
) -> Answer {
    let req = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    read(
        tokio::time::timeout(WAIT, s.send_request(req))
            .await
            .unwrap()
            .unwrap(),
    )
    .await
}

/// Sends raw bytes; returns everything read until the server closes or
/// one complete response (by Content-Length) has arrived.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_response(&mut s).await
}

pub async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n = match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => panic!(
                "no complete response in time; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        };
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if complete(&got) {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn complete(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match len {
        Some(len) => got.len() >= end + 4 + len,
        None => false,
    }
}

/// The status code of a raw response.
pub fn status_of(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Whether an external tool answers `cmd args`; `false` prints why the
/// caller skips. Where `require` (an environment variable) is set, as
/// `.ci/run` does after installing it, a missing tool fails the test.
pub fn tool(test: &str, cmd: &str, args: &[&str], require: &str) -> bool {
    let found = std::process::Command::new(cmd)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os(require).is_none(),
            "{test}: {cmd} is required here ({require}) but not installed"
        );
        skipped(test, &format!("{cmd} is not installed"));
    }
    found
}

/// Says that `test` skipped itself and why, where a plain `cargo test`
/// shows it: written to the process's standard error directly, which the
/// test harness does not capture (it captures `eprintln!`, shown only with
/// `--nocapture` or on failure).
pub fn skipped(test: &str, why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
}

/// Reloads `dir` into `server` the way production does (a
/// [`predictor::reload::Reloader`], as the folder watch and `SIGHUP` use),
/// forced: the generation installed, or what happened instead.
pub fn reload(
    server: &predictor::server::Server,
    dir: &Path,
) -> Result<u64, predictor::reload::Outcome> {
    let r =
        predictor::reload::Reloader::new(server.snapshot().clone(), dir, server.metrics().clone());
    match r.reload(true) {
        predictor::reload::Outcome::Reloaded(generation) => Ok(generation),
        other => Err(other),
    }
}

/// An address nothing listens on (bound, then closed).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The value of one sample of `server`'s metrics, by its name and labels
/// as rendered (`name{label="v"}`); 0 when absent.
pub fn metric(server: &Server, sample: &str) -> f64 {
    let text = server.metrics().render();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Like [`eventually`], with an async condition.
pub async fn eventually_async(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `cond` holds, at most [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `req` on a new HTTP/1.1 connection made from the local address
/// `from` (any 127.0.0.0/8 address works on loopback).
pub async fn send_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> Answer {
    try_send_from(from, addr, req).await.unwrap()
}

/// [`send_from`], its failures (connecting, the exchange, no answer
/// within [`WAIT`]) returned rather than panicking: for counting them
/// under load.
pub async fn try_send_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> Result<Answer, String> {
    let socket = match from {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(from, 0))
        .map_err(|e| format!("bind: {e}"))?;
    let stream = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .map_err(|_| format!("no answer within {WAIT:?}"))?
        .map_err(|e| format!("request: {e}"))?;
    Ok(read(resp).await)
}
