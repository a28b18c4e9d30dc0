//! The tunnel to the legacy cluster's balancer: whether it is up, and how
//! that is found out.
//!
//! Owns [`Tunnel`], the state every worker reads before sending a legacy
//! request: up or down, decided by the active [`probe`] (rise/fall) and by
//! passive signals from real traffic (consecutive connect failures). While
//! the balancer is down, legacy requests are answered 502 at once, except
//! one trial request per probe interval (half-open) whose success brings
//! the tunnel back up without waiting for the probe.
//!
//! The forwarding itself (pooled connections, retries, timeouts) is the
//! proxy's upstream code with the `[legacy]` settings; the request rules of
//! this path (hop marker, forwarding headers) are the proxy's.
//!
//! Invariants: a `Tunnel` outlives config reloads (it belongs to the
//! server, not the snapshot); the request path reads one atomic while the
//! balancer is up and writes nothing shared unless something failed.

mod health;
pub mod probe;

pub use health::{Admit, Tunnel};
