//! The check phase: what a strict intermediary refuses before routing,
//! and the authority the request is routed by.

use http::header::HeaderValue;
use http::{Method, Request};

use super::super::body::RequestBody;
use super::super::error::ProxyError;
use super::super::fields::Fields;
use super::super::handler::ConnCtx;
use super::super::headers::Scan;
use super::super::misdirected;
use super::super::target::request_authority;
use crate::model::host::{self, Host};
use crate::snapshot::Snapshot;

/// What the check found: the request's authority (as sent; `None` for an
/// HTTP/1.0 request without one) and its normalised host.
pub struct Checked {
    pub authority: Option<HeaderValue>,
    pub host: Option<Host>,
}

/// Refuses `CONNECT` (framing was checked with the head: HTTP/1 by
/// [`super::super::h1`], HTTP/2 by hyper), two `Host`s, a malformed host, a host of another tenant than the TLS connection's; finds the
/// routing authority (HTTP/2 `:authority` or an absolute-form target over
/// `Host`).
#[inline]
pub fn check(
    ctx: &ConnCtx,
    req: &Request<RequestBody>,
    fields: Fields<'_>,
    scan: &Scan,
    snap: &Snapshot,
) -> Result<Checked, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::Connect);
    }
    let authority = request_authority(req, fields, scan)?;
    let host = authority
        .as_ref()
        .map(|a| host::normalize(a.as_bytes()))
        .transpose()?;
    if let (Some(sni), Some(h)) = (&ctx.sni, &host) {
        misdirected::check(snap, sni, h)?;
    }
    Ok(Checked { authority, host })
}
