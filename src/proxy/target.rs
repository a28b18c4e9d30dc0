//! The request target as routed and as forwarded: which authority routes
//! a request (HTTP/2 `:authority`, an absolute-form target, or `Host`),
//! and the origin-form target the upstream gets.

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Version};

use super::error::ProxyError;
use super::fields::Fields;
use super::headers::Scan;
use crate::routing::host;

/// The authority that routes the request and that the upstream sees:
/// HTTP/2 `:authority`, the authority of an absolute-form target, or the
/// `Host` header. `None` for an HTTP/1.0 request without any.
pub fn request_authority<B>(
    req: &Request<B>,
    fields: Fields<'_>,
    scan: &Scan,
) -> Result<Option<HeaderValue>, ProxyError> {
    if scan.hosts > 1 {
        return Err(ProxyError::DuplicateHost);
    }
    let host = if scan.hosts == 1 {
        fields.value(&header::HOST)
    } else {
        None
    };
    let uri_authority = req.uri().authority();
    let version = req.version();
    match (uri_authority, host) {
        (Some(a), Some(h)) if version >= Version::HTTP_2 => {
            if a.as_str().as_bytes().eq_ignore_ascii_case(h.as_bytes()) {
                Ok(Some(h))
            } else {
                Err(ProxyError::AuthorityMismatch {
                    authority: a.as_str().into(),
                    host: String::from_utf8_lossy(h.as_bytes()).into(),
                })
            }
        }
        // Absolute-form (HTTP/1) or :authority (HTTP/2): it wins over Host.
        (Some(a), _) => HeaderValue::from_str(a.as_str())
            .map(Some)
            .map_err(|_| ProxyError::BadHost(host::HostError::BadChar('?'))),
        (None, Some(h)) => Ok(Some(h)),
        (None, None) if version <= Version::HTTP_10 => Ok(None),
        (None, None) => Err(ProxyError::MissingHost),
    }
}

/// The request target as an origin server expects it (`/path?query`).
pub fn origin_form(uri: Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri;
    }
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(pq)
}
