//! predictor: an HTTP layer-7 load balancer for mass web hosting, built to
//! move a datacenter filer by filer without a restart or a dropped request.
//!
//! For every request it resolves the `Host` to a tenant and decides, on one
//! immutable snapshot of the config folder: migrated sites go to webserver
//! pools (by plan tier, on a consistent-hash ring), sites not yet migrated go
//! to the legacy cluster's balancer, sites being migrated get a maintenance
//! answer. `docs/ARCHITECTURE.md` maps the modules and the path of a request.
//!
//! | module | owns |
//! |---|---|
//! | [`model`] | the shared vocabulary: managed headers, ring points, attempt bound (a leaf) |
//! | [`config`] | reading and validating `predictor.toml` (problems with file:line) |
//! | [`load`] | the tenant table and migration state, parsed into routing's tables |
//! | [`routing`] | host -> tenant -> migration state -> action (pure) |
//! | [`placement`] | tenant -> servers of its pool, in ring order (pure) |
//! | [`snapshot`] | the immutable routing snapshot and its atomic swap |
//! | [`proxy`] | one request from client to upstream and back |
//! | [`health`] | servers' live state: checks, agents, ejection, load, retry budgets |
//! | [`legacy`] | the tunnel to the legacy balancer: its probe and passive health |
//! | [`tls`] | the certificate folder, SNI, ClientHello peeking for passthrough |
//! | [`lifecycle`] | readiness, draining, open connections: what the server sets and the admin listener reports |
//! | [`server`] | sockets, worker threads, drain |
//! | [`reload`] | the folder watch and reloads while serving |
//! | [`admin`] | the operators' listener: metrics, health, status, route |
//! | [`metrics`] | every metric, declared with its help text |
//! | [`access_log`] | JSON lines per request, written off the request path |
//! | [`mem`] | memory hints for the big tables (`unsafe`: a prefetch, `madvise`) |
//! | [`demo`] | the self-contained demo (`predictor demo`) |

pub mod access_log;
pub mod admin;
pub mod config;
pub mod demo;
pub mod health;
pub mod isolation;
pub mod legacy;
pub mod lifecycle;
pub mod load;
pub mod mem;
pub mod metrics;
pub mod model;
pub mod placement;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod verify;

/// The global allocator the binary is built with: `jemalloc` with the
/// feature of that name (production: `cargo dist`), else `system`.
#[cfg(feature = "jemalloc")]
pub const ALLOCATOR: &str = "jemalloc";
/// The global allocator the binary is built with: `jemalloc` with the
/// feature of that name (production: `cargo dist`), else `system`.
#[cfg(not(feature = "jemalloc"))]
pub const ALLOCATOR: &str = "system";
