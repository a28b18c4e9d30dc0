//! The rewrite phase: the request as the upstream gets it (decided here,
//! applied as its head is written: [`super::super::edits`]). HTTP/1.1,
//! origin-form, the routed `Host`; hop-by-hop headers removed (an upgrade
//! keeps its own two); `X-Forwarded-*`, `Forwarded` and `Via` set, with a
//! client's own values kept only from a trusted proxy; the tenant header
//! and the hop marker where the plan says; a request id (a trusted
//! proxy's kept, else a new one).

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Version};

use super::super::account::Account;
use super::super::body::RequestBody;
use super::super::edits::{self, Edits};
use super::super::fields::Fields;
use super::super::forwarding::Forwarding;
use super::super::handler::ConnCtx;
use super::super::headers::{self, Scan};
use super::super::target::origin_form;
use super::plan::Forward;
use crate::snapshot::Snapshot;

/// What the rewrite reads of the snapshot, copied out (for a forward)
/// before it is let go.
pub struct Fixed {
    /// The client is a trusted proxy (its forwarding headers and request
    /// id are kept).
    trusted: bool,
    id_header: HeaderName,
    forwarded: bool,
    /// `Via` for the request, by the version it came in.
    via: HeaderValue,
}

impl Fixed {
    /// The rewrite's part, and the `Via` of the response (from an
    /// HTTP/1.1 upstream) for the respond phase.
    #[inline]
    pub fn of(snap: &Snapshot, client: IpAddr, version: Version) -> (Fixed, HeaderValue) {
        let forward = &snap.config.forward;
        let fixed = Fixed {
            trusted: forward.trusts(client),
            id_header: forward.request_id_header.clone(),
            forwarded: forward.forwarded,
            via: snap.via.for_version(version).clone(),
        };
        (fixed, snap.via.for_version(Version::HTTP_11).clone())
    }
}

/// The request's fields as the client sent them, and the authority it
/// was routed by.
pub struct AsSent<'a> {
    pub fields: Fields<'a>,
    /// One pass over `fields`.
    pub scan: &'a Scan,
    pub authority: Option<HeaderValue>,
}

/// Rewrites `req` in place for `forward` with `fixed` (in place: a request
/// is ~270 bytes, and taking it apart and back by value was three copies).
/// The client's header fields stay as they came (`sent`): what this hop
/// changes goes to `forward.edits`, applied as the upstream head is
/// written. `forward.upgrade` says whether it asks to upgrade.
#[inline]
pub fn request(
    ctx: &ConnCtx,
    req: &mut Request<RequestBody>,
    sent: AsSent<'_>,
    fixed: Fixed,
    forward: &mut Forward,
    account: &mut Account,
) {
    let AsSent {
        fields,
        scan,
        authority,
    } = sent;
    let version = req.version();
    let upgrade = if version == Version::HTTP_11 {
        headers::upgrade_protocol(fields, scan)
    } else {
        None
    };
    forward.upgrade = upgrade.is_some();
    forward.client_h2 = version == Version::HTTP_2;
    // HTTP/1.1 needs a Host, empty when the target has none.
    let host = authority.unwrap_or_else(|| HeaderValue::from_static(""));
    let forwarding = Forwarding {
        client: &ctx.client,
        trusted: fixed.trusted,
        proto: ctx.proto,
        host: (!host.is_empty()).then_some(&host),
        via: &fixed.via,
        forwarded: fixed.forwarded,
    }
    .edits(fields, scan);
    // A trusted proxy's request id goes on; anyone else's is replaced.
    let kept = if fixed.trusted {
        fields.value(&fixed.id_header).filter(|v| !v.is_empty())
    } else {
        None
    };
    let (id, generated) = match kept {
        Some(v) => (v, false),
        None => (ctx.worker.ids.next(), true),
    };
    forward.edits = Some(Edits::new(
        fields,
        edits::Parts {
            scan: *scan,
            upgrade,
            forwarding,
            host,
            id: (fixed.id_header, id.clone()),
            tenant: forward.tenant_header.take(),
            marker: forward.legacy.as_ref().map(|l| l.marker.clone()),
        },
    ));
    let uri = std::mem::take(req.uri_mut());
    *req.uri_mut() = origin_form(uri);
    *req.version_mut() = Version::HTTP_11;
    let body = std::mem::replace(req.body_mut(), RequestBody::empty());
    *req.body_mut() = account.request_body(body, id, generated);
}
