//! `raw::RawConfig` -> [`Config`]: defaults, ranges, references, uniqueness.
//!
//! Every check runs even after an earlier one failed, so that one `check`
//! shows every problem of the file.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, StatusCode};

use super::raw::{RawConfig, RawServer, Spanned};
use super::{
    Collector, Config, ConfigError, Forward, Legacy, Limits, Listener, Maintenance, Pool, PoolId,
    Protocol, ProxySettings, RawDocument, Server, Tier, Timeouts, UnknownHosts, is_valid_name,
};

const MAX_TIERS: usize = 255;
const MAX_POOLS: usize = 255;
const MAX_SERVERS_PER_POOL: usize = 4096;
const MAX_WEIGHT: i64 = 256;

pub(super) fn config(doc: RawDocument) -> Result<Config, ConfigError> {
    let RawDocument { file, text, config } = doc;
    let dir = file
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| ".".into());
    let mut c = Collector::new(&file, &text);
    let RawConfig {
        tenants,
        migration,
        proxy,
        listen,
        timeouts,
        limits,
        forward,
        unknown_hosts,
        maintenance,
        legacy,
        tiers,
        pools,
    } = config;

    let tenants_file = required_path(&mut c, "tenants", tenants, &dir);
    let migration_file = required_path(&mut c, "migration", migration, &dir);

    let proxy = ProxySettings {
        name: match proxy.name {
            Some(n) if is_token(n.get_ref()) => n.into_inner(),
            Some(n) => {
                c.at(
                    n.span(),
                    "proxy.name",
                    "expected a token without spaces (like \"predictor\")",
                );
                String::new()
            }
            None => "predictor".into(),
        },
        workers: int(&mut c, "proxy.workers", proxy.workers, 0, 0, 1024) as usize,
    };

    let listeners = listeners(&mut c, listen);

    let timeouts = Timeouts {
        connect: duration(&mut c, "timeouts.connect", timeouts.connect, 2),
        request_header: duration(
            &mut c,
            "timeouts.request_header",
            timeouts.request_header,
            10,
        ),
        client_idle: duration(&mut c, "timeouts.client_idle", timeouts.client_idle, 60),
        upstream_response: duration(
            &mut c,
            "timeouts.upstream_response",
            timeouts.upstream_response,
            60,
        ),
        upstream_idle: duration(&mut c, "timeouts.upstream_idle", timeouts.upstream_idle, 4),
        drain: duration(&mut c, "timeouts.drain", timeouts.drain, 30),
    };

    let limits = Limits {
        max_connections: int(
            &mut c,
            "limits.max_connections",
            limits.max_connections,
            100_000,
            1,
            10_000_000,
        ) as usize,
        // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
        max_request_header_bytes: int(
            &mut c,
            "limits.max_request_header_bytes",
            limits.max_request_header_bytes,
            65_536,
            8_192,
            1 << 24,
        ) as usize,
        h2_max_concurrent_streams: int(
            &mut c,
            "limits.h2_max_concurrent_streams",
            limits.h2_max_concurrent_streams,
            128,
            1,
            65_535,
        ) as u32,
        upstream_idle_per_server: int(
            &mut c,
            "limits.upstream_idle_per_server",
            limits.upstream_idle_per_server,
            256,
            0,
            100_000,
        ) as usize,
        upstream_attempts: int(
            &mut c,
            "limits.upstream_attempts",
            limits.upstream_attempts,
            2,
            1,
            8,
        ) as usize,
    };

    let forward = Forward {
        tenant_header: forward.tenant_header.and_then(|h| {
            match HeaderName::from_bytes(h.get_ref().as_bytes()) {
                Ok(name) if !super::super::proxy::is_managed_header(&name) => Some(name),
                Ok(_) => {
                    c.at(
                        h.span(),
                        "forward.tenant_header",
                        "this header is set or removed by predictor itself; pick another name",
                    );
                    None
                }
                Err(_) => {
                    c.at(
                        h.span(),
                        "forward.tenant_header",
                        "expected an HTTP header name",
                    );
                    None
                }
            }
        }),
    };

    let legacy = legacy.and_then(|l| {
        let l = l.into_inner();
        socket_addr(&mut c, "legacy.address", &l.address).map(|address| Legacy { address })
    });

    let unknown_hosts = unknown(&mut c, unknown_hosts, legacy.is_some());

    let maintenance = Maintenance {
        retry_after: duration(
            &mut c,
            "maintenance.retry_after",
            maintenance.retry_after,
            600,
        ),
        page: maintenance.page.map(|p| dir.join(p.get_ref())),
    };

    let pools = pools_of(&mut c, pools);
    let tiers = tiers_of(&mut c, tiers, &pools);

    c.problems.into_result()?;
    Ok(Config {
        dir,
        file,
        tenants_file,
        migration_file,
        proxy,
        listeners,
        timeouts,
        limits,
        forward,
        unknown_hosts,
        maintenance,
        legacy,
        tiers,
        pools,
    })
}

fn required_path(
    c: &mut Collector<'_>,
    key: &str,
    value: Option<Spanned<String>>,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    match value {
        Some(v) if !v.get_ref().is_empty() => dir.join(v.get_ref()),
        Some(v) => {
            c.at(
                v.span(),
                key,
                "expected a file name, relative to the config folder",
            );
            Default::default()
        }
        None => {
            c.file_level(
                key,
                "missing: expected a file name, relative to the config folder",
            );
            Default::default()
        }
    }
}

fn listeners(
    c: &mut Collector<'_>,
    listen: Vec<Spanned<super::raw::RawListener>>,
) -> Vec<Listener> {
    if listen.is_empty() {
        c.file_level(
            "listen",
            "missing: expected at least one [[listen]] table with an address like \"0.0.0.0:80\"",
        );
    }
    let mut out: Vec<Listener> = Vec::with_capacity(listen.len());
    for (i, l) in listen.into_iter().enumerate() {
        let l = l.into_inner();
        let key = format!("listen[{i}]");
        let protocol = match l
            .protocol
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()))
        {
            None | Some(("auto", _)) => Protocol::Auto,
            Some(("http1", _)) => Protocol::Http1,
            Some(("h2c", _)) => Protocol::H2c,
            Some((_, span)) => {
                c.at(
                    span,
                    format!("{key}.protocol"),
                    "expected \"auto\", \"http1\" or \"h2c\"",
                );
                Protocol::Auto
            }
        };
        if let Some(address) = socket_addr(c, &format!("{key}.address"), &l.address) {
            if out.iter().any(|o| o.address == address) {
                c.at(l.address.span(), format!("{key}.address"), "listed twice");
            }
            out.push(Listener { address, protocol });
        }
    }
    out
}

fn unknown(
    c: &mut Collector<'_>,
    u: super::raw::RawUnknownHosts,
    has_legacy: bool,
) -> UnknownHosts {
    let status = match u.status {
        None => StatusCode::MISDIRECTED_REQUEST,
        Some(s) if *s.get_ref() == 421 => StatusCode::MISDIRECTED_REQUEST,
        Some(s) if *s.get_ref() == 404 => StatusCode::NOT_FOUND,
        Some(s) => {
            c.at(s.span(), "unknown_hosts.status", "expected 421 or 404");
            StatusCode::MISDIRECTED_REQUEST
        }
    };
    match u.action {
        None if has_legacy => UnknownHosts::Legacy,
        None => UnknownHosts::Reject(status),
        Some(a) => match a.get_ref().as_str() {
            "legacy" if has_legacy => UnknownHosts::Legacy,
            "legacy" => {
                c.at(
                    a.span(),
                    "unknown_hosts.action",
                    "\"legacy\" needs a [legacy] section with the legacy balancer's address",
                );
                UnknownHosts::Reject(status)
            }
            "reject" => UnknownHosts::Reject(status),
            _ => {
                c.at(
                    a.span(),
                    "unknown_hosts.action",
                    "expected \"legacy\" or \"reject\"",
                );
                UnknownHosts::Reject(status)
            }
        },
    }
}

fn pools_of(
    c: &mut Collector<'_>,
    pools: std::collections::BTreeMap<Spanned<String>, super::raw::RawPool>,
) -> Vec<Pool> {
    if pools.len() > MAX_POOLS {
        c.file_level("pools", format!("at most {MAX_POOLS} pools"));
    }
    let mut ids: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(pools.len());
    for (name, pool) in pools {
        let key = format!("pools.{}", name.get_ref());
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
            if let Some(server) =
                server(c, &format!("{key}.servers[{i}]"), s.into_inner(), &mut ids)
            {
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
        out.push(Pool {
            name: name.into_inner(),
            servers,
        });
    }
    out
}

fn server(
    c: &mut Collector<'_>,
    key: &str,
    s: RawServer,
    ids: &mut HashSet<String>,
) -> Option<Server> {
    let id_ok = if !is_valid_name(s.id.get_ref().as_bytes()) {
        c.at(
            s.id.span(),
            format!("{key}.id"),
            "server ids are 1-64 of A-Z a-z 0-9 _ . - :",
        );
        false
    } else if !ids.insert(s.id.get_ref().clone()) {
        c.at(
            s.id.span(),
            format!("{key}.id"),
            format!(
                "server id {:?} is used twice; ids are unique over all pools",
                s.id.get_ref()
            ),
        );
        false
    } else {
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

fn tiers_of(
    c: &mut Collector<'_>,
    tiers: std::collections::BTreeMap<Spanned<String>, super::raw::RawTier>,
    pools: &[Pool],
) -> Vec<Tier> {
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
            Some(i) => out.push(Tier {
                name: name.into_inner(),
                pool: i as PoolId,
            }),
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
    out
}

fn socket_addr(c: &mut Collector<'_>, key: &str, v: &Spanned<String>) -> Option<SocketAddr> {
    match v.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            c.at(
                v.span(),
                key,
                format!(
                    "expected an IP address and port like \"10.0.0.1:80\" or \"[2001:db8::1]:80\", found {:?}",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

fn duration(
    c: &mut Collector<'_>,
    key: &str,
    v: Option<Spanned<String>>,
    default_secs: u64,
) -> Duration {
    let Some(v) = v else {
        return Duration::from_secs(default_secs);
    };
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            c.at(
                v.span(),
                key,
                format!(
                    "expected a positive duration like \"2s\" or \"500ms\", found {:?}",
                    v.get_ref()
                ),
            );
            Duration::from_secs(default_secs)
        }
    }
}

fn int(
    c: &mut Collector<'_>,
    key: &str,
    v: Option<Spanned<i64>>,
    default: i64,
    min: i64,
    max: i64,
) -> i64 {
    let Some(v) = v else {
        return default;
    };
    let n = *v.get_ref();
    if (min..=max).contains(&n) {
        n
    } else {
        c.at(
            v.span(),
            key,
            format!("expected a whole number from {min} to {max}, found {n}"),
        );
        default
    }
}

/// An RFC 9110 token (for the `Via` pseudonym).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
