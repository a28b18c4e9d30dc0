//! `raw::RawConfig` -> [`Config`]: defaults, ranges, references, uniqueness.
//!
//! Every check runs even after an earlier one failed, so that one `check`
//! shows every problem of the file.

use std::sync::Arc;

use http::StatusCode;

use super::raw::{RawAccessLog, RawConfig, Spanned};
use super::{
    Collector, Config, ConfigError, Limits, Listener, LogOutput, Maintenance, PlacementSettings,
    Protocol, ProxySettings, RawDocument, Timeouts, UnknownHosts,
};

mod isolation;
mod legacy;
mod pools;
mod tls;
mod values;

use pools::{pools_of, tiers_of};
pub(crate) use values::{duration, int, is_token, keyword, socket_addr};

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
        admin,
        access_log,
        tls,
        placement,
        reload,
        preview,
        shadow,
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

    let listeners = listeners(&mut c, listen, tls.is_some());

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
        drain_notice: values::duration_or_zero(
            &mut c,
            "timeouts.drain_notice",
            timeouts.drain_notice,
        ),
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

    let forward = legacy::forward(&mut c, forward);
    let legacy = legacy.and_then(|l| legacy::legacy(&mut c, l.into_inner(), &dir));

    let placement = PlacementSettings {
        balance_factor: match placement.balance_factor {
            None => 1.25,
            Some(f) if (1.0..=10.0).contains(f.get_ref()) && *f.get_ref() > 1.0 => *f.get_ref(),
            Some(f) => {
                c.at(
                    f.span(),
                    "placement.balance_factor",
                    format!(
                        "expected a number above 1.0 and at most 10 (1.25 = no server above 125 % of its share), found {}",
                        f.get_ref()
                    ),
                );
                1.25
            }
        },
        hot_hold: values::duration(&mut c, "placement.hot_hold", placement.hot_hold, 10),
    };
    let admin = admin.and_then(|a| {
        let addr = socket_addr(&mut c, "admin.address", &a.address)?;
        // Both are bound with SO_REUSEPORT: the same address would be
        // accepted, and share clients between proxy and admin.
        // (Port 0 is a different free port for each.)
        let overlaps = |l: &Listener| {
            addr.port() != 0
                && l.address.port() == addr.port()
                && l.address.is_ipv4() == addr.is_ipv4()
                && (l.address.ip() == addr.ip()
                    || l.address.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        };
        if let Some(l) = listeners.iter().find(|l| overlaps(l)) {
            c.at(
                a.address.span(),
                "admin.address",
                format!(
                    "{addr} overlaps the listener {}: the admin listener needs an address of its own",
                    l.address
                ),
            );
        }
        Some(addr)
    });
    let access_log = access_log.and_then(|l| log_output(&mut c, l));
    let tls = tls.and_then(|t| tls::tls(&mut c, t, &dir));
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

    let reload = values::reload_guard(&mut c, reload);
    let preview = preview.and_then(|p| legacy::preview(&mut c, p));
    let shadow = values::shadow(&mut c, shadow);
    let (pools, pool_isolation) = pools_of(&mut c, pools);
    let (tiers, tier_limits) = tiers_of(&mut c, tiers, &pools);

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
        admin,
        access_log,
        tls,
        placement,
        tiers,
        pools,
        isolation: crate::config::isolation::Isolation {
            tiers: tier_limits,
            pools: pool_isolation,
        },
        reload,
        preview,
        shadow,
    })
}

/// `[access_log]`: `stdout` or an absolute file path; off when
/// `enabled = false`.
fn log_output(c: &mut Collector<'_>, l: RawAccessLog) -> Option<LogOutput> {
    let output = match l.output {
        None => LogOutput::Stdout,
        Some(o) if o.get_ref() == "stdout" => LogOutput::Stdout,
        Some(o) if std::path::Path::new(o.get_ref()).is_absolute() => {
            LogOutput::File(o.into_inner().into())
        }
        Some(o) => {
            c.at(
                o.span(),
                "access_log.output",
                format!(
                    "expected \"stdout\" or an absolute file path like \"/var/log/predictor/access.log\", found {:?}",
                    o.get_ref()
                ),
            );
            return None;
        }
    };
    l.enabled.unwrap_or(true).then_some(output)
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
    has_tls: bool,
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
        let protocol = keyword(
            c,
            &format!("{key}.protocol"),
            l.protocol.as_ref(),
            &[
                ("auto", Protocol::Auto),
                ("http1", Protocol::Http1),
                ("h2c", Protocol::H2c),
                ("https", Protocol::Https),
            ],
            "expected \"auto\", \"http1\", \"h2c\" or \"https\"",
        );
        if let (Protocol::Https, Some(p), false) = (protocol, &l.protocol, has_tls) {
            c.at(
                p.span(),
                format!("{key}.protocol"),
                "an https listener needs a [tls] section naming the certificate folder",
            );
        }
        if let Some(address) = socket_addr(c, &format!("{key}.address"), &l.address) {
            if out.iter().any(|o| o.address == address) {
                c.at(l.address.span(), format!("{key}.address"), "listed twice");
            }
            let proxy_protocol =
                proxy_protocol(c, &key, l.proxy_protocol, l.proxy_protocol_timeout);
            out.push(Listener {
                address,
                protocol,
                defer_accept: l.defer_accept.is_none_or(|b| *b.get_ref()),
                proxy_protocol,
            });
        }
    }
    out
}

/// `[[listen]] proxy_protocol` (the sources, at least one) and its
/// `proxy_protocol_timeout` (5 s by default; refused without the sources).
fn proxy_protocol(
    c: &mut Collector<'_>,
    key: &str,
    from: Option<Spanned<Vec<Spanned<String>>>>,
    timeout: Option<Spanned<String>>,
) -> Option<Arc<super::ProxyProtocol>> {
    let Some(list) = from else {
        if let Some(t) = &timeout {
            c.at(
                t.span(),
                format!("{key}.proxy_protocol_timeout"),
                "set without proxy_protocol (the sources that send the header)",
            );
        }
        return None;
    };
    if list.get_ref().is_empty() {
        c.at(
            list.span(),
            format!("{key}.proxy_protocol"),
            "empty: list the L4 balancers' addresses or networks, or remove the key",
        );
    }
    let from = values::networks(c, &format!("{key}.proxy_protocol"), Some(list.into_inner()));
    let timeout = values::duration(c, &format!("{key}.proxy_protocol_timeout"), timeout, 5);
    Some(Arc::new(super::ProxyProtocol { from, timeout }))
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
