//! `[forward]` and `[legacy]`: what upstreams are told about the client,
//! and how the tunnel to the legacy balancer is used and checked.

use std::path::Path;

use http::HeaderName;

use super::super::raw::{RawForward, RawLegacy, RawPreview, RawProbe, Spanned};
use super::super::{Collector, Forward, Legacy, Preview, Probe, UpstreamProtocol};
use super::values::{duration, int, interval_and_timeout, keyword, networks, socket_addr};

pub(super) fn forward(c: &mut Collector<'_>, f: RawForward) -> Forward {
    let trusted_proxies = networks(c, "forward.trusted_proxies", f.trusted_proxies);
    Forward {
        tenant_header: f
            .tenant_header
            .and_then(|h| header_name(c, "forward.tenant_header", &h)),
        trusted_proxies,
        forwarded: f.forwarded.unwrap_or(false),
        request_id_header: f
            .request_id_header
            .and_then(|h| header_name(c, "forward.request_id_header", &h))
            .unwrap_or(HeaderName::from_static("x-request-id")),
    }
}

pub(super) fn legacy(c: &mut Collector<'_>, l: RawLegacy, dir: &Path) -> Option<Legacy> {
    let address = socket_addr(c, "legacy.address", &l.address);
    let protocol = keyword(
        c,
        "legacy.protocol",
        l.protocol.as_ref(),
        &[
            ("http1", UpstreamProtocol::Http1),
            ("h2c", UpstreamProtocol::H2c),
        ],
        "expected \"http1\" or \"h2c\"",
    );
    let d = |c: &mut Collector<'_>, key: &str, v, default| {
        duration(c, &format!("legacy.{key}"), v, default)
    };
    let connect_timeout = d(c, "connect_timeout", l.connect_timeout, 3);
    let response_timeout = d(c, "response_timeout", l.response_timeout, 60);
    let idle_timeout = d(c, "idle_timeout", l.idle_timeout, 20);
    let max_lifetime = d(c, "max_lifetime", l.max_lifetime, 600);
    let max_idle = int(c, "legacy.max_idle", l.max_idle, 1024, 0, 100_000) as usize;
    let max_pending_connects = int(
        c,
        "legacy.max_pending_connects",
        l.max_pending_connects,
        64,
        1,
        100_000,
    ) as usize;
    let hop_header = match &l.hop_header {
        Some(h) => header_name(c, "legacy.hop_header", h),
        None => Some(HeaderName::from_static("x-predictor-hop")),
    };
    let probe = probe(c, "legacy.probe", l.probe);
    Some(Legacy {
        address: address?,
        protocol,
        connect_timeout,
        response_timeout,
        idle_timeout,
        max_lifetime,
        max_idle,
        max_pending_connects,
        hop_header: hop_header?,
        down_page: l.down_page.map(|p| dir.join(p.get_ref())),
        probe: probe?,
    })
}

/// An active HTTP check under `key` (`legacy.probe`, `pools.NAME.check`).
pub(super) fn probe(c: &mut Collector<'_>, key: &str, p: RawProbe) -> Option<Probe> {
    let path = match &p.path {
        None => Some(http::uri::PathAndQuery::from_static("/")),
        Some(v) => match v.get_ref().parse::<http::uri::PathAndQuery>() {
            Ok(pq) if v.get_ref().starts_with('/') => Some(pq),
            _ => {
                c.at(
                    v.span(),
                    format!("{key}.path"),
                    format!("expected a path like \"/health\", found {:?}", v.get_ref()),
                );
                None
            }
        },
    };
    let host = match &p.host {
        None => Some(http::HeaderValue::from_static("predictor-probe")),
        Some(v) => match crate::model::host::normalize(v.get_ref().as_bytes()) {
            Ok(_) => http::HeaderValue::from_str(v.get_ref()).ok(),
            Err(e) => {
                c.at(
                    v.span(),
                    format!("{key}.host"),
                    format!("expected a host name: {e}"),
                );
                None
            }
        },
    };
    let (interval, timeout) = interval_and_timeout(c, key, p.interval, p.timeout);
    let rise = int(c, &format!("{key}.rise"), p.rise, 2, 1, 100) as u32;
    let fall = int(c, &format!("{key}.fall"), p.fall, 3, 1, 100) as u32;
    Some(Probe {
        path: path?,
        host: host?,
        interval,
        timeout,
        rise,
        fall,
    })
}

/// A header name predictor does not manage itself.
pub(super) fn header_name(
    c: &mut Collector<'_>,
    key: &str,
    h: &Spanned<String>,
) -> Option<HeaderName> {
    match HeaderName::from_bytes(h.get_ref().as_bytes()) {
        Ok(name) if !crate::model::headers::is_managed_header(&name) => Some(name),
        Ok(_) => {
            c.at(
                h.span(),
                key,
                "this header is set or removed by predictor itself; pick another name",
            );
            None
        }
        Err(_) => {
            c.at(h.span(), key, "expected an HTTP header name");
            None
        }
    }
}

/// Shortest preview token: a guessable one would open every site in
/// maintenance to anyone.
const MIN_TOKEN: usize = 16;

/// `[preview]`: a header or a cookie with a token, or networks (or both).
pub(super) fn preview(c: &mut Collector<'_>, p: Spanned<RawPreview>) -> Option<Preview> {
    let span = p.span();
    let p = p.into_inner();
    let header = p.header.and_then(|h| header_name(c, "preview.header", &h));
    let cookie = p.cookie.and_then(|k| {
        let ok = !k.get_ref().is_empty()
            && k.get_ref()
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !ok {
            c.at(
                k.span(),
                "preview.cookie",
                format!("expected a cookie name (a token), found {:?}", k.get_ref()),
            );
        }
        ok.then(|| k.into_inner())
    });
    let token = p.token.and_then(|t| {
        let ok =
            t.get_ref().len() >= MIN_TOKEN && t.get_ref().bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            c.at(
                t.span(),
                "preview.token",
                format!("expected at least {MIN_TOKEN} printable characters without spaces"),
            );
        }
        ok.then(|| t.into_inner())
    });
    let networks = networks(c, "preview.networks", p.networks);
    if (header.is_some() || cookie.is_some()) != token.is_some() {
        c.at(
            span.clone(),
            "preview",
            "a header or a cookie and a token go together",
        );
    }
    if header.is_none() && cookie.is_none() && networks.is_empty() {
        c.at(
            span,
            "preview",
            "expected a header or a cookie with a token, or networks",
        );
    }
    Some(Preview {
        header,
        cookie,
        token,
        networks,
    })
}
