//! The config folder: `predictor.toml`, the tenant table and the migration
//! state, turned into validated, typed values.
//!
//! Owns: reading and validating `predictor.toml`. [`raw`] holds the files as
//! written (the only serde types); [`Config`] is what the rest of the program
//! sees: every value checked, every default filled in, every reference (tier
//! to pool) resolved to an index. Invariant: a `Config` that exists is valid;
//! a file that fails any check yields [`ConfigError::Invalid`] listing every
//! problem found with file, line and key, and nothing partial is returned.
//!
//! The tenant table and the migration state are parsed by the `load`
//! module into the structures routing reads; the problems of those files
//! are the same [`Problem`]s. The raw form of the state file is here too
//! ([`raw`]: the only serde types).

mod error;
pub mod isolation;
pub mod raw;
pub mod stamp;
mod validate;

/// Configs for other modules' unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    /// Tiers `basic` (id 0, pool `web`) and `gold` (id 1, pool `fast`).
    pub fn two_tiers() -> super::Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(super::MAIN_FILE),
            "tenants = \"t.tsv\"\nmigration = \"m.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n\
             [tiers.basic]\npool = \"web\"\n[tiers.gold]\npool = \"fast\"\n\
             [pools.web]\nservers = [{ id = \"a\", address = \"127.0.0.1:9\" }]\n\
             [pools.fast]\nservers = [{ id = \"b\", address = \"127.0.0.1:9\" }]\n",
        )
        .unwrap();
        super::Config::load(dir.path()).unwrap()
    }
}

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, StatusCode};

pub(crate) use error::{Collector, line_of};
pub use error::{ConfigError, MAX_REPORTED, Problem, Problems};

/// Name of the main file inside a config folder.
pub const MAIN_FILE: &str = "predictor.toml";

/// The validated content of `predictor.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config folder; relative paths in the file are resolved against it.
    pub dir: PathBuf,
    /// `predictor.toml` itself.
    pub file: PathBuf,
    pub tenants_file: PathBuf,
    pub migration_file: PathBuf,
    pub proxy: ProxySettings,
    pub listeners: Vec<Listener>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub forward: Forward,
    pub unknown_hosts: UnknownHosts,
    pub maintenance: Maintenance,
    pub legacy: Option<Legacy>,
    /// The admin listener (`/metrics`, `/healthz`); none when absent.
    pub admin: Option<SocketAddr>,
    /// Where access log lines go; none when off.
    pub access_log: Option<LogOutput>,
    /// Certificates of the `https` listeners; none without `[tls]`.
    pub tls: Option<TlsSettings>,
    pub placement: PlacementSettings,
    pub tiers: Vec<Tier>,
    pub pools: Vec<Pool>,
    /// Server ceilings, fair queues, per-tenant limits (by tier and pool).
    pub isolation: isolation::Isolation,
    /// When a reload is held for confirmation.
    pub reload: ReloadGuard,
    /// Who reaches a site's new pool while it is in maintenance.
    pub preview: Option<Preview>,
    /// How sites in the `shadow` state are verified.
    pub shadow: Shadow,
}

/// `[shadow]`: a sample of the safe requests of a site in `shadow` (GET
/// and HEAD without a body, without credentials unless allowed) is also
/// sent to its pool here, marked with `header`, and the answers compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    /// Share of the eligible requests copied (0 to 1).
    pub share: f64,
    /// Copies in flight at once per worker; more are dropped (counted).
    pub max_in_flight: usize,
    pub header: HeaderName,
    pub timeout: Duration,
    /// Bytes of a copy's answer read (then it is dropped).
    pub max_body: u64,
    /// Copy requests with `Authorization` or a credential cookie too.
    pub mirror_credentials: bool,
    /// Cookie names (a trailing `*`: a prefix) that make a request carry
    /// credentials.
    pub credential_cookies: Vec<String>,
    /// A filer is ready with at least this many samples...
    pub min_samples: u64,
    /// ...and at most this share of them mismatched.
    pub max_mismatch: f64,
    /// Body lengths within this share of each other match.
    pub length_tolerance: f64,
    /// Bodies up to this many bytes are also compared by digest (0: never).
    pub digest_max: u64,
    /// Copies per second per filer, all workers (0: no bound).
    pub rate: u32,
    /// Share and rate of single filers (`[shadow.filers.NAME]`).
    pub filers: std::collections::HashMap<String, (f64, u32)>,
}

impl Shadow {
    /// The share and rate of filer `name`'s copies.
    pub fn of(&self, name: &str) -> (f64, u32) {
        match self.filers.get(name) {
            Some(&f) => f,
            None => (self.share, self.rate),
        }
    }
}

/// `[preview]`: a request to a site in maintenance that carries the
/// preview token (in `header`, or in the cookie `cookie`), or comes from
/// one of `networks`, is served by the site's pool in this datacenter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub header: Option<HeaderName>,
    pub cookie: Option<String>,
    /// The value the header or cookie must carry (at least 16 bytes).
    pub token: Option<String>,
    pub networks: Vec<ipnet::IpNet>,
}

/// `[reload]`: a reload that would change the route of more than
/// `changed` of the tenants, or leave out more than `dropped_hosts` of the
/// host names (shares, 0 to 1; 1 never holds), and at least `min` of
/// either, is held until confirmed. The serving config's guard judges a
/// change (a change cannot lift its own guard).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReloadGuard {
    pub changed: f64,
    pub dropped_hosts: f64,
    pub min: usize,
}

impl Default for ReloadGuard {
    fn default() -> Self {
        ReloadGuard {
            changed: 0.05,
            dropped_hosts: 0.05,
            min: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Pseudonym in `Via` headers.
    pub name: String,
    /// Worker threads; 0 means one per available CPU.
    pub workers: usize,
}

/// What a listening address speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, or HTTP/2 when the client opens with the HTTP/2 preface.
    Auto,
    Http1,
    /// HTTP/2 with prior knowledge only.
    H2c,
    /// TLS, then HTTP/2 or HTTP/1.1 as negotiated by ALPN.
    Https,
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The folder of certificate files (`*.pem`: chain and key each).
    pub certificates: PathBuf,
    /// The file (in that folder) served without SNI or for a name without
    /// a certificate; `None` refuses those handshakes.
    pub default_certificate: Option<String>,
    /// Certificates whose parsed key is kept in memory at most.
    pub key_cache: usize,
    /// From the connection to the end of the TLS handshake.
    pub handshake_timeout: Duration,
    /// What a request whose Host differs from the TLS server name gets.
    pub misdirected: Misdirected,
    /// Legacy sites' TLS passed to the legacy balancer undecrypted.
    pub passthrough: Option<Passthrough>,
}

/// `[tls.passthrough]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passthrough {
    /// The legacy balancer's TLS port.
    pub address: SocketAddr,
    /// Whether a PROXY protocol v2 header (the client's address) goes first.
    pub proxy_protocol: bool,
    /// A legacy site with a certificate in the folder is terminated here.
    pub prefer_local_certificate: bool,
    /// A ClientHello without a server name.
    pub no_sni: NoSni,
}

/// `[tls.passthrough] no_sni`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSni {
    /// Terminated here with the default certificate.
    Terminate,
    /// Passed to the legacy balancer.
    Legacy,
    /// Closed.
    Close,
}

/// `[tls] misdirected`: when a request's Host differs from the server name
/// its TLS connection was opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misdirected {
    /// 421 when the Host belongs to another tenant (or one is unknown and
    /// the other not); names of one tenant share a connection.
    Tenant,
    /// 421 for any other name.
    Host,
    /// Route by the Host alone.
    Allow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    pub protocol: Protocol,
    /// Accept a connection only once the client's first bytes are there
    /// (`TCP_DEFER_ACCEPT`, set where the server binds its listeners).
    pub defer_accept: bool,
    /// Connections from an L4 tier that start with a PROXY protocol
    /// header (read by the server before anything else); none when the
    /// key is absent.
    pub proxy_protocol: Option<Arc<ProxyProtocol>>,
}

/// `[[listen]] proxy_protocol`: who must send a PROXY protocol header
/// (v1 or v2) before their first byte, and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// Sources (the L4 balancers) whose connections start with the
    /// header; a connection from anywhere else that sends one is closed.
    pub from: Vec<ipnet::IpNet>,
    /// From the accept to the end of the header.
    pub timeout: Duration,
}

impl ProxyProtocol {
    /// Whether a connection from `ip` must start with the header.
    pub fn expects(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.from.iter().any(|n| n.contains(&ip))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a connection to a webserver or the legacy balancer.
    pub connect: Duration,
    /// From the first byte of a request to the end of its head (slowloris).
    pub request_header: Duration,
    /// A kept-alive client connection with no request in progress.
    pub client_idle: Duration,
    /// From the request sent upstream to the response head received, and
    /// the longest the upstream may then send nothing of the body.
    pub upstream_response: Duration,
    /// A pooled upstream connection left unused.
    pub upstream_idle: Duration,
    /// How long a shutdown waits for requests in progress.
    pub drain: Duration,
    /// How long a shutdown keeps accepting after `/readyz` turned 503,
    /// before the listeners close: time for an L4 tier's health checks to
    /// take the instance out (0: close at once).
    pub drain_notice: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open client connections, all listeners and workers together.
    pub max_connections: usize,
    /// Largest request head (request line and headers) accepted.
    pub max_request_header_bytes: usize,
    pub h2_max_concurrent_streams: u32,
    /// Idle pooled connections kept per upstream server and worker.
    pub upstream_idle_per_server: usize,
    /// Servers tried, in ring order, when connecting fails.
    pub upstream_attempts: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Request header carrying the tenant id to webservers, if any.
    pub tenant_header: Option<HeaderName>,
    /// Peers whose `X-Forwarded-*` and `Forwarded` headers are kept and
    /// extended (a CDN, a front balancer). Everyone else's are replaced.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Also send an RFC 7239 `Forwarded` header.
    pub forwarded: bool,
    /// The request id header: set on every request sent upstream (kept
    /// from a trusted proxy, generated otherwise) and logged.
    pub request_id_header: HeaderName,
}

/// `[access_log] output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    /// A file, appended to; reopened on `SIGUSR1` (after logrotate moved it).
    File(PathBuf),
}

impl Forward {
    /// Whether a peer at `ip` is a trusted proxy.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// What happens to a host that is in no tenant's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownHosts {
    /// Forward to the legacy balancer, which may still know it.
    Legacy,
    /// Answer locally with this status (421 or 404).
    Reject(StatusCode),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintenance {
    /// Sent as `Retry-After` (whole seconds).
    pub retry_after: Duration,
    /// HTML page served with the 503; a built-in page when absent.
    pub page: Option<PathBuf>,
}

/// The legacy cluster's balancer, across the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Legacy {
    pub address: SocketAddr,
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    /// From the request sent to the response head received.
    pub response_timeout: Duration,
    /// A pooled connection left unused is closed after this.
    pub idle_timeout: Duration,
    /// A connection is not reused once this old.
    pub max_lifetime: Duration,
    /// Idle connections kept per worker.
    pub max_idle: usize,
    /// Connects in progress per worker; more requests wait for a slot.
    pub max_pending_connects: usize,
    /// The loop marker added to every request sent to the legacy balancer;
    /// its value is [`ProxySettings::name`].
    pub hop_header: HeaderName,
    /// HTML of the 502 answered while the legacy balancer is down.
    pub down_page: Option<PathBuf>,
    pub probe: Probe,
}

/// How predictor talks to the legacy balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// Pooled keep-alive HTTP/1.1 connections.
    Http1,
    /// HTTP/2 with prior knowledge, one multiplexed connection per worker
    /// (upgrades still go over HTTP/1.1).
    H2c,
}

/// An active HTTP check: of the legacy balancer, or of a pool's servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Request target of the check (`GET`).
    pub path: http::uri::PathAndQuery,
    /// `Host` of the check.
    pub host: http::HeaderValue,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that bring a down balancer up.
    pub rise: u32,
    /// Consecutive failures that take an up balancer down.
    pub fall: u32,
}

/// `[placement]`: how sites are spread over a pool's servers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlacementSettings {
    /// The bounded-load factor `c`: no server takes more than `c` times its
    /// weight's share of the sites' capacity units, or of the requests in
    /// flight (HAProxy's `hash-balance-factor`, as a ratio).
    pub balance_factor: f64,
    /// How long a hot tenant's grown affinity set is kept at least before
    /// it shrinks back by one server (placement's `hot` module).
    pub hot_hold: Duration,
}

impl Eq for PlacementSettings {}

/// Index of a tier in [`Config::tiers`].
pub type TierId = u8;
/// Index of a pool in [`Config::pools`].
pub type PoolId = u8;
/// Index of a server in its pool's [`Pool::servers`].
pub type ServerIdx = u16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub name: String,
    pub pool: PoolId,
    /// Capacity units one site of this tier takes on a server (premium
    /// tiers cost more, so a server holds fewer of them).
    pub cost: u32,
    /// Servers a site of this tier uses normally (its affinity set).
    pub k_min: usize,
    /// Servers a hot site of this tier may grow to.
    pub k_max: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub servers: Vec<Server>,
    /// Active HTTP checks of every server (`[pools.NAME.check]`).
    pub check: Option<Probe>,
    /// The agent every server runs (`[pools.NAME.agent]`).
    pub agent: Option<Agent>,
    pub eject: Eject,
}

/// The per-server agent, read like HAProxy's `agent-check`: a TCP
/// connection to the server's address on `port`, one line back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agent {
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Passive ejection: a server whose real traffic fails `failures` times in
/// a row is skipped for `base`, doubled at every ejection that follows
/// soon after, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eject {
    /// Consecutive failures that eject; 0 turns ejection off.
    pub failures: u32,
    pub on: EjectOn,
    pub base: Duration,
    pub max: Duration,
}

/// Which answers count as failures besides connect errors and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectOn {
    /// 502, 503 and 504: the webserver itself is in trouble (a single
    /// site's 500s do not eject the server all its sites share).
    Gateway,
    /// Any 5xx.
    ServerError,
    /// Only connect errors and timeouts.
    Connect,
}

impl EjectOn {
    /// Whether a response status counts as a failure.
    pub fn fails(self, status: u16) -> bool {
        match self {
            EjectOn::Gateway => matches!(status, 502..=504),
            EjectOn::ServerError => (500..600).contains(&status),
            EjectOn::Connect => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Stable id: placement hashes it, never the position in the list.
    pub id: String,
    pub address: SocketAddr,
    /// Relative share of the pool's sites (more ring points).
    pub weight: u32,
}

/// `predictor.toml` read and parsed but not yet validated.
#[derive(Debug)]
pub struct RawDocument {
    pub file: PathBuf,
    pub text: String,
    pub config: raw::RawConfig,
}

impl RawDocument {
    /// Reads and parses `DIR/predictor.toml`.
    pub fn read(dir: &Path) -> Result<Self, ConfigError> {
        let file = dir.join(MAIN_FILE);
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
            path: file.clone(),
            source,
        })?;
        Self::parse(file, text)
    }

    /// Parses the text of a `predictor.toml` found at `file`.
    pub fn parse(file: PathBuf, text: String) -> Result<Self, ConfigError> {
        match raw::parse(&file, &text) {
            Ok(config) => Ok(RawDocument { file, text, config }),
            Err(problem) => {
                let mut p = Problems::default();
                p.push(problem);
                Err(ConfigError::Invalid(p))
            }
        }
    }
}

impl TryFrom<RawDocument> for Config {
    type Error = ConfigError;

    fn try_from(doc: RawDocument) -> Result<Self, Self::Error> {
        validate::config(doc)
    }
}

impl Config {
    /// Reads and validates `DIR/predictor.toml` (not the files it names).
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        Config::try_from(RawDocument::read(dir)?)
    }

    pub fn tier_by_name(&self, name: &str) -> Option<TierId> {
        self.tiers
            .iter()
            .position(|t| t.name == name)
            .map(|i| i as TierId)
    }

    pub fn tier(&self, id: TierId) -> &Tier {
        &self.tiers[usize::from(id)]
    }

    pub fn pool(&self, id: PoolId) -> &Pool {
        &self.pools[usize::from(id)]
    }

    /// Total number of servers over all pools.
    pub fn server_count(&self) -> usize {
        self.pools.iter().map(|p| p.servers.len()).sum()
    }
}

/// Names of tenants, tiers, pools, servers and filers: 1 to 64 of
/// `A-Z a-z 0-9 _ . - :`, so they print and log without quoting.
pub fn is_valid_name(s: &[u8]) -> bool {
    !s.is_empty() && s.len() <= 64 && s.iter().all(|&b| NAME_OK[usize::from(b)])
}

const NAME_OK: [bool; 256] = {
    let mut ok = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        ok[i] = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':');
        i += 1;
    }
    ok
};
