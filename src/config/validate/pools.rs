//! `[pools.NAME]` and `[tiers.NAME]`: names, server ids unique over all
//! pools, addresses unique within a pool, tiers resolved to pool indexes.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::super::isolation::{PoolIsolation, TierLimits};
use super::super::raw::{RawAgent, RawEject, RawServer, Spanned};
use super::super::{Agent, Collector, Eject, EjectOn, Pool, PoolId, Server, Tier, is_valid_name};
use super::isolation::{pool_isolation, server_ceiling, tier_limits};
use super::legacy::probe;
use super::values::{duration, int, interval_and_timeout, keyword, socket_addr};

const MAX_TIERS: usize = 255;
const MAX_POOLS: usize = 255;
const MAX_SERVERS_PER_POOL: usize = 4096;
const MAX_WEIGHT: i64 = 256;
/// Most servers a site may use (the request path tries at most this many).
const MAX_K: i64 = crate::model::MAX_ATTEMPTS as i64;

/// The pools, and beside each its ceilings and queue.
pub(super) fn pools_of(
    c: &mut Collector<'_>,
    pools: std::collections::BTreeMap<Spanned<String>, super::super::raw::RawPool>,
) -> (Vec<Pool>, Vec<PoolIsolation>) {
    if pools.len() > MAX_POOLS {
        c.file_level("pools", format!("at most {MAX_POOLS} pools"));
    }
    // Each id with where it was first seen (line, key path).
    let mut ids: HashMap<String, (usize, String)> = HashMap::new();
    let mut out = Vec::with_capacity(pools.len());
    let mut isolation = Vec::with_capacity(pools.len());
    for (name, pool) in pools {
        let key = format!("pools.{}", name.get_ref());
        let (mut iso, ceiling) = pool_isolation(c, &key, pool.max_in_flight, pool.queue);
        if !is_valid_name(name.get_ref().as_bytes()) {
            c.at(
                name.span(),
                &key,
                "pool names are 1-64 of A-Z a-z 0-9 _ . - :",
            );
        }
        if pool.servers.is_empty() {
            c.at(
                name.span(),
                format!("{key}.servers"),
                "a pool needs at least one server",
            );
        }
        if pool.servers.len() > MAX_SERVERS_PER_POOL {
            c.at(
                name.span(),
                format!("{key}.servers"),
                format!("at most {MAX_SERVERS_PER_POOL} servers"),
            );
        }
        let mut servers: Vec<Server> = Vec::with_capacity(pool.servers.len());
        let mut addrs: HashMap<SocketAddr, String> = HashMap::new();
        for (i, s) in pool.servers.into_iter().enumerate() {
            let mut s = s.into_inner();
            let skey = format!("{key}.servers[{i}]");
            let own = server_ceiling(c, &skey, s.max_in_flight.take(), ceiling);
            if let Some(server) = server(c, &skey, s, &mut ids) {
                iso.max_in_flight.push(own);
                if let Some(other) = addrs.insert(server.address, server.id.clone()) {
                    c.file_level(
                        format!("{key}.servers[{i}].address"),
                        format!(
                            "{} is also the address of server {other} of this pool",
                            server.address
                        ),
                    );
                }
                servers.push(server);
            }
        }
        let check = pool
            .check
            .and_then(|p| probe(c, &format!("{key}.check"), p));
        let agent = pool.agent.map(|a| agent(c, &key, a));
        let eject = eject(c, &key, pool.eject);
        out.push(Pool {
            name: name.into_inner(),
            servers,
            check,
            agent,
            eject,
        });
        isolation.push(iso);
    }
    (out, isolation)
}

/// `[pools.NAME.agent]`.
fn agent(c: &mut Collector<'_>, key: &str, a: RawAgent) -> Agent {
    let port = int(c, &format!("{key}.agent.port"), Some(a.port), 1, 1, 65535) as u16;
    let (interval, timeout) =
        interval_and_timeout(c, &format!("{key}.agent"), a.interval, a.timeout);
    Agent {
        port,
        interval,
        timeout,
    }
}

/// `[pools.NAME.eject]`, on by default: 5 failures in a row eject for 10 s,
/// doubling up to 5 min.
fn eject(c: &mut Collector<'_>, key: &str, e: RawEject) -> Eject {
    let failures = int(c, &format!("{key}.eject.failures"), e.failures, 5, 0, 1000) as u32;
    let on = keyword(
        c,
        &format!("{key}.eject.on"),
        e.on.as_ref(),
        &[
            ("gateway", EjectOn::Gateway),
            ("5xx", EjectOn::ServerError),
            ("connect", EjectOn::Connect),
        ],
        "expected \"gateway\" (502-504), \"5xx\" or \"connect\"",
    );
    let base = duration(c, &format!("{key}.eject.base"), e.base, 10);
    let max_span = e.max.as_ref().map(|m| m.span());
    let max = duration(c, &format!("{key}.eject.max"), e.max, 300);
    if max < base {
        if let Some(span) = max_span {
            c.at(
                span,
                format!("{key}.eject.max"),
                format!("must not be shorter than {key}.eject.base"),
            );
        }
    }
    Eject {
        failures,
        on,
        base,
        max: max.max(base),
    }
}

fn server(
    c: &mut Collector<'_>,
    key: &str,
    s: RawServer,
    ids: &mut HashMap<String, (usize, String)>,
) -> Option<Server> {
    let id_ok = if !is_valid_name(s.id.get_ref().as_bytes()) {
        c.at(
            s.id.span(),
            format!("{key}.id"),
            "server ids are 1-64 of A-Z a-z 0-9 _ . - :",
        );
        false
    } else if let Some((line, first)) = ids.get(s.id.get_ref()) {
        let message = format!(
            "server id {:?} is used twice: first at line {line} ({first}); ids are unique over all pools",
            s.id.get_ref()
        );
        c.at(s.id.span(), format!("{key}.id"), message);
        false
    } else {
        let first = (c.line(s.id.span().start), format!("{key}.id"));
        ids.insert(s.id.get_ref().clone(), first);
        true
    };
    let weight = int(c, &format!("{key}.weight"), s.weight, 1, 1, MAX_WEIGHT) as u32;
    let address = socket_addr(c, &format!("{key}.address"), &s.address);
    match (id_ok, address) {
        (true, Some(address)) => Some(Server {
            id: s.id.into_inner(),
            address,
            weight,
        }),
        _ => None,
    }
}

/// The tiers, and beside each its per-tenant limits.
pub(super) fn tiers_of(
    c: &mut Collector<'_>,
    tiers: std::collections::BTreeMap<Spanned<String>, super::super::raw::RawTier>,
    pools: &[Pool],
) -> (Vec<Tier>, Vec<TierLimits>) {
    if tiers.is_empty() {
        c.file_level(
            "tiers",
            "missing: expected at least one [tiers.NAME] with a pool",
        );
    }
    if tiers.len() > MAX_TIERS {
        c.file_level("tiers", format!("at most {MAX_TIERS} tiers"));
    }
    let mut out = Vec::with_capacity(tiers.len());
    let mut limits = Vec::with_capacity(tiers.len());
    for (name, tier) in tiers {
        let key = format!("tiers.{}", name.get_ref());
        if !is_valid_name(name.get_ref().as_bytes()) {
            c.at(
                name.span(),
                &key,
                "tier names are 1-64 of A-Z a-z 0-9 _ . - :",
            );
        }
        match pools.iter().position(|p| p.name == *tier.pool.get_ref()) {
            Some(i) => {
                let cost = int(c, &format!("{key}.cost"), tier.cost, 1, 1, 1000) as u32;
                let k_min = int(c, &format!("{key}.k_min"), tier.k_min, 1, 1, MAX_K) as usize;
                let k_max_default = (k_min as i64).clamp(4, MAX_K);
                let k_max_span = tier.k_max.as_ref().map(|k| k.span());
                let k_max = int(
                    c,
                    &format!("{key}.k_max"),
                    tier.k_max,
                    k_max_default,
                    1,
                    MAX_K,
                ) as usize;
                if k_max < k_min {
                    if let Some(span) = k_max_span {
                        c.at(
                            span,
                            format!("{key}.k_max"),
                            format!("must be at least k_min ({k_min})"),
                        );
                    }
                }
                limits.push(tier_limits(c, &key, tier.limits.unwrap_or_default(), cost));
                out.push(Tier {
                    name: name.into_inner(),
                    pool: i as PoolId,
                    cost,
                    k_min,
                    k_max: k_max.max(k_min),
                });
            }
            None => c.at(
                tier.pool.span(),
                format!("{key}.pool"),
                format!(
                    "no pool named {:?} (expected one of the [pools.NAME] tables)",
                    tier.pool.get_ref()
                ),
            ),
        }
    }
    (out, limits)
}
