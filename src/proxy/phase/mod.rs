//! The phases of one request, in the order [`super::handler`] runs them:
//!
//! 1. [`check`]: refuse what a strict intermediary must (CONNECT,
//!    conflicting framing, two `Host`s, a misdirected TLS name) and find
//!    the routing authority and its normalised host;
//! 2. route: the snapshot's pure decision (`Snapshot::route`), counted on
//!    its route's series;
//!    A site in maintenance is previewed ([`preview`]) by a request
//!    carrying the preview credential: routed to its new pool instead;
//! 3. [`admit`]: the tenant's limits (rate, client rate, concurrency):
//!    `429`, or the request counted for its tenant;
//! 4. [`plan`]: the decision made concrete: an answer given here
//!    (reject, maintenance, legacy balancer down, a routing loop), or a
//!    forward (the legacy balancer, or a pool's servers placed by live
//!    load under their in-flight ceilings) with its targets, settings and
//!    per-route headers;
//! 5. [`rewrite`]: the request as the upstream gets it (hop-by-hop
//!    headers off, forwarding headers, `Host`, request id, origin-form);
//! 6. [`queue`]: when every server it may use was at its ceiling, the
//!    wait in the pool's fair queue (or a `503`);
//! 7. [`send`]: out on a pooled connection, retries as the plan allows,
//!    and what the outcome teaches (passive health, tunnel state, timing);
//! 8. [`respond`]: the answer back (an upgrade spliced, the response's
//!    hop-by-hop headers off, `Via`), or a local page.
//!
//! Each phase is one file with one job; a new per-request policy is a
//! phase (or a plan kind) of its own plus its config. What a forwarded
//! request carries from phase to phase is one [`plan::Forward`], filled in
//! place (targets, settings, placement, the upgrade, the answering
//! server): a few hundred bytes, never moved
//! through return values. The snapshot is read by check, route and plan,
//! and let go before the first `.await`.

pub mod admit;
pub mod check;
pub mod plan;
pub mod preview;
pub mod queue;
pub mod respond;
pub mod rewrite;
pub mod send;
