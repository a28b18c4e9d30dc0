//! The preview phase: a request for a site in maintenance (or in
//! shadow) that carries
//! the preview credential (`[preview]`: a header or a cookie with the
//! token, or a client in one of the operators' networks) goes to the
//! site's pool in this datacenter, as if it were migrated, so that
//! operators and the customer look at the new copy before visitors do.
//! Everyone else keeps getting the maintenance page. The access log marks
//! such requests (`preview`).

use http::header::COOKIE;

use super::super::fields::Fields;
use super::super::handler::ConnCtx;
use crate::config::Preview;
use crate::routing::migration::MigrationState;
use crate::routing::{Action, Decision};
use crate::snapshot::Snapshot;

/// Turns `decision` into a local one when it is a maintenance answer and
/// the request carries the preview credential; returns whether it did.
#[inline]
pub fn preview(
    ctx: &ConnCtx,
    snap: &Snapshot,
    decision: &mut Decision,
    fields: Fields<'_>,
) -> bool {
    let Some((p, m)) = snap.config.preview.as_ref().zip(decision.tenant) else {
        return false;
    };
    let shadow = decision
        .state
        .is_some_and(|(s, _)| s == MigrationState::Shadow);
    if decision.action != Action::Maintenance && !shadow {
        return false;
    }
    if !allowed(p, ctx.peer.ip(), fields) {
        return false;
    }
    let r = snap.tenants.record(m.tenant);
    decision.action = Action::Local {
        tier: r.tier,
        pool: snap.config.tier(r.tier).pool,
        point: r.ring_point,
    };
    true
}

/// Whether a request from `client` with `fields` may preview.
fn allowed(p: &Preview, client: std::net::IpAddr, fields: Fields<'_>) -> bool {
    if p.networks.iter().any(|n| n.contains(&client)) {
        return true;
    }
    let Some(token) = p.token.as_deref().map(str::as_bytes) else {
        return false;
    };
    if let Some(h) = &p.header {
        if fields.get_all(h).any(|v| same(v, token)) {
            return true;
        }
    }
    if let Some(name) = &p.cookie {
        return fields
            .get_all(&COOKIE)
            .any(|v| cookie(v, name.as_bytes()).is_some_and(|c| same(c, token)));
    }
    false
}

/// The value of cookie `name` in a `Cookie` field.
fn cookie<'v>(field: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    field.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// Compares a credential in time independent of where it differs.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let f = b"a=1; preview_token=s3cret-s3cret-1; b=2";
        assert_eq!(cookie(f, b"preview_token"), Some(&b"s3cret-s3cret-1"[..]));
        assert_eq!(cookie(f, b"a"), Some(&b"1"[..]));
        assert_eq!(cookie(f, b"preview"), None);
        assert_eq!(cookie(b"novalue; x=", b"x"), Some(&b""[..]));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }
}
