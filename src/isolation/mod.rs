//! Isolation between tenants: one site under a flood (or gone viral)
//! never takes its neighbours down.
//!
//! Owns the live state that bounds what one tenant may take:
//!
//! * [`queue`]: a pool's fair queue, where requests wait for a server
//!   under its in-flight ceiling, served by deficit round robin across
//!   tenants weighted by tier, shedding the lowest priority when full;
//! * [`rate`]: rate limits as GCRA, one 64-bit word per bucket;
//! * [`tenants`]: every tenant's counters by tenant number (in flight,
//!   rate bucket, requests), per-client buckets, carried across reloads;
//! * [`top`]: who is hot, from a periodic scan of those counters and the
//!   limited and queued requests seen.
//!
//! The request path's use of it is the `admit` phase (tenant limits) and
//! the placement's ceiling and queue (`proxy::placed`); servers' counts
//! and ceilings live with their health (`health`). Pure where it can be:
//! times are passed in, the queue takes slots through a trait.

pub mod queue;
pub mod rate;
pub mod tenants;
pub mod top;

pub use tenants::{Limited, TenantHold, TenantRegistry, TenantsLive};
