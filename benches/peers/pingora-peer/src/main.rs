//! pingora-peer: the smallest useful Pingora reverse proxy, used only as a
//! benchmark peer by ../peers.sh (benches/peers/peers.sh).
//!
//! Usage: pingora-peer <listen-addr> <hosts.map> <pools.txt> [threads] [h2c-listen-addr]
//!
//!   hosts.map : "<host> <pool>" per line (the same file HAProxy loads as a map)
//!   pools.txt : "<pool> <ip:port>" per line; the pool "be_default" is used for
//!               hosts that are not in the map.
//!
//! Routing: Host header (port stripped, lower-cased) -> pool -> HttpPeer
//! (plain HTTP/1.1, upstream keep-alive pool managed by Pingora).
//! If h2c-listen-addr is given, a second service (same routing table, h2c
//! prior-knowledge enabled) listens there; the HTTP/1.1 listener is left
//! without h2c so its path does not pay for the h2 preface peek.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_proxy::{ProxyHttp, Session};

struct Table {
    hosts: HashMap<Vec<u8>, u32>,
    peers: Vec<HttpPeer>,
    default: u32,
}

#[derive(Clone)]
struct Router(Arc<Table>);

impl Table {
    fn pick(&self, host: &[u8]) -> u32 {
        let host = match host.iter().position(|&b| b == b':') {
            Some(i) => &host[..i],
            None => host,
        };
        let found = if host.iter().any(|b| b.is_ascii_uppercase()) {
            self.hosts.get(&host.to_ascii_lowercase()[..])
        } else {
            self.hosts.get(host)
        };
        found.copied().unwrap_or(self.default)
    }
}

#[async_trait]
impl ProxyHttp for Router {
    type CTX = ();
    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let req = session.req_header();
        let host: &[u8] = match req.headers.get("host") {
            Some(v) => v.as_bytes(),
            None => req.uri.host().map(|h| h.as_bytes()).unwrap_or(b""),
        };
        let idx = self.0.pick(host) as usize;
        Ok(Box::new(self.0.peers[idx].clone()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!(
            "usage: {} <listen-addr> <hosts.map> <pools.txt> [threads] [h2c-listen-addr]",
            args[0]
        );
        std::process::exit(2);
    }
    let listen = args[1].clone();
    let threads: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let t0 = Instant::now();

    let pools_txt = std::fs::read_to_string(&args[3]).expect("read pools file");
    let mut pool_index: HashMap<String, u32> = HashMap::new();
    let mut peers = Vec::new();
    for line in pools_txt.lines() {
        let mut it = line.split_whitespace();
        if let (Some(name), Some(addr)) = (it.next(), it.next()) {
            pool_index.insert(name.to_string(), peers.len() as u32);
            peers.push(HttpPeer::new(addr, false, String::new()));
        }
    }
    let default = *pool_index.get("be_default").expect("pools file needs be_default");

    let map_txt = std::fs::read_to_string(&args[2]).expect("read hosts map");
    let mut hosts = HashMap::with_capacity(map_txt.len() / 24);
    for line in map_txt.lines() {
        let mut it = line.split_whitespace();
        if let (Some(h), Some(p)) = (it.next(), it.next()) {
            if h.starts_with('#') {
                continue;
            }
            let idx = *pool_index.get(p).unwrap_or(&default);
            hosts.insert(h.to_ascii_lowercase().into_bytes(), idx);
        }
    }
    eprintln!(
        "pingora-peer: {} hosts, {} pools loaded in {} ms; listening on {listen} with {threads} thread(s)",
        hosts.len(),
        peers.len(),
        t0.elapsed().as_millis()
    );

    let tmp = std::env::temp_dir();
    let conf = ServerConf {
        threads,
        work_stealing: false,
        // benchmark peer: stop quickly on SIGTERM (the harness stops it between runs)
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: tmp.join(format!("pingora-peer-{}.pid", std::process::id())).display().to_string(),
        upgrade_sock: tmp
            .join(format!("pingora-peer-{}.sock", std::process::id()))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let router = Router(Arc::new(Table { hosts, peers, default }));
    let mut svc = pingora_proxy::http_proxy_service(&server.configuration, router.clone());
    svc.add_tcp(&listen);
    server.add_service(svc);
    if let Some(h2_listen) = args.get(5) {
        let mut h2 = pingora_proxy::http_proxy_service(&server.configuration, router);
        let mut opts = pingora_core::apps::HttpServerOptions::default();
        opts.h2c = true;
        h2.app_logic_mut().expect("proxy app").server_options = Some(opts);
        h2.add_tcp(h2_listen);
        server.add_service(h2);
    }
    server.run_forever();
}
