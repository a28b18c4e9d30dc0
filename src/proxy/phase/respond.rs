//! The respond phase: the upstream's answer back to the client (an
//! upgrade spliced both ways, the response's hop-by-hop headers removed,
//! `Via` added, the body streamed), and the pages predictor answers
//! itself.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::super::body::{Held, ResponseBody};
use super::super::error::{ProxyError, page};
use super::super::fields::Fields;
use super::super::headers::{self, Scan};
use super::super::upstream::{Exchange, Received};
use super::plan::Forward;

/// The client's response to `exchange`, for the request `forward` was;
/// `via_back` is the response's `Via`.
#[inline]
pub fn respond(
    exchange: Exchange,
    forward: &mut Forward,
    via_back: HeaderValue,
) -> Result<Response<ResponseBody>, ProxyError> {
    let held = Held {
        server: forward.in_flight.take(),
        tenant: forward.tenant.take(),
    };
    let (mut parts, body) = exchange.response.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        let addr = forward.server.unwrap_or(forward.targets[0]);
        let (true, Received::H1(body)) = (forward.upgrade, body) else {
            return Err(ProxyError::UnexpectedUpgrade { addr });
        };
        let Some(upstream) = body.into_upgraded() else {
            return Err(ProxyError::UnexpectedUpgrade { addr });
        };
        // The upstream's head came without its hop-by-hop fields and with
        // `Connection: upgrade` (`upstream::wire`); the client connection
        // splices the two once it has written it (`front::upgrade`).
        let mut fields = exchange.fields.unwrap_or_default();
        fields.push(&header::VIA, &via_back);
        let mut body = ResponseBody::upgraded(upstream);
        body.set_held(held);
        body.set_fields(fields);
        return Ok(Response::from_parts(parts, body));
    }
    if let Received::H2(_) = body {
        // hyper's HTTP/2 client leaves the fields as they came.
        let scan = Scan::of(Fields::Map(&parts.headers));
        headers::strip_hop_by_hop(&mut parts.headers, &scan, None);
    }
    // (An upgrade that was declined leaves its connection in an unclear
    // state: `upstream::send` does not reuse it.)
    let mut response = Response::from_parts(parts, ResponseBody::upstream(body));
    let body = response.body_mut();
    body.set_held(held);
    match exchange.fields {
        // From HTTP/1.1: the fields as the client gets them, `Via` last.
        Some(mut fields) => {
            fields.push(&header::VIA, &via_back);
            body.set_fields(fields);
        }
        None => {
            response.headers_mut().append(header::VIA, via_back);
        }
    }
    Ok(response)
}

/// A page predictor answers itself.
pub fn local(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::local(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The answer to a request that failed (the status from
/// [`ProxyError::status`], the one mapping of errors to statuses).
pub fn error_response(e: &ProxyError) -> Response<ResponseBody> {
    let status = e.status();
    let mut r = local(status, Bytes::from_static(page(status).as_bytes()));
    if e.closes_connection() {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(secs) = e.retry_after() {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}
