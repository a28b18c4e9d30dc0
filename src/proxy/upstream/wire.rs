//! The bytes of an HTTP/1.1 exchange with an upstream: the request head
//! written in one pass from the rewritten request (request line, fields,
//! the body's framing), and the response head turned into the response
//! the client side sends, hop-by-hop fields left out on the way.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode};

use super::super::edits::Edits;
use super::super::fields::Fields as RequestFields;
use super::super::h1::response::{ResponseError, ResponseHead};
use super::super::h1::{RawFields, ResponseFraming};
use super::conn::BodyOut;
use crate::model::headers::{eq_lowercase, is_hop_by_hop};

/// A request's fields on their way upstream: the client's, and what this
/// hop changes in them.
#[derive(Clone, Copy)]
pub struct ClientFields<'a> {
    pub fields: RequestFields<'a>,
    pub edits: Option<&'a Edits>,
}

/// Writes the head of `req` (origin-form) to `out`, its fields changed by
/// `edits` on the way (the client's fields that stay, then this hop's);
/// `bodiless` when its body has ended. Returns how its body follows: a
/// body of unknown length goes chunked.
///
/// The client's fields come from the head it sent over HTTP/1.x (copied
/// in runs, in its order and case, as the response's are:
/// [`response_fields`]), or from its map (HTTP/2). Both give the same
/// fields (tested side by side).
pub(super) fn request_head<B>(
    req: &Request<B>,
    fields: ClientFields<'_>,
    bodiless: bool,
    out: &mut Vec<u8>,
) -> BodyOut {
    let ClientFields { fields, edits } = fields;
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut length = false;
    let mut keep = |name: &[u8]| {
        if edits.is_some_and(|e| e.drops_raw(name)) {
            return false;
        }
        length |= eq_lowercase(name, b"content-length");
        true
    };
    match fields.raw() {
        Some(raw) => in_runs(raw, out, keep),
        None => {
            for (name, value) in fields.iter() {
                if keep(name) {
                    line(out, name, value);
                }
            }
        }
    }
    if let Some(edits) = edits {
        edits.each_added(|name, value| field(out, name, value));
    }
    let body = if bodiless {
        BodyOut::Done
    } else if length {
        BodyOut::Plain
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        BodyOut::Chunked
    };
    out.extend_from_slice(b"\r\n");
    body
}

#[inline]
fn field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    line(out, name.as_str().as_bytes(), value.as_bytes());
}

#[inline]
fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A response's fields as the client gets them, written once by the
/// upstream side: `name: value\r\n` lines, names as the upstream wrote
/// them (as HAProxy and nginx pass them), hop-by-hop fields left out. The client side copies them into its head as they
/// are: no `HeaderMap` is built for an HTTP/1.1 response on its way to an
/// HTTP/1.1 client (an HTTP/2 client's gets [`response_map`] instead).
#[derive(Debug, Default)]
pub struct Fields {
    pub bytes: Vec<u8>,
    /// A `Content-Length` line is among them.
    pub length: bool,
    /// A `Date` line is among them.
    pub date: bool,
}

impl Fields {
    /// Adds a line (this hop's own, e.g. `Via`).
    pub fn push(&mut self, name: &HeaderName, value: &HeaderValue) {
        field(&mut self.bytes, name, value);
    }
}

/// The response's end-to-end fields as a header map, for an HTTP/2
/// client (hyper's server writes the map): the same fields as
/// [`response_fields`], their values slices of `buf` (shared, not
/// copied: no allocation per field, as hyper's own parser does).
pub(super) fn response_map(
    buf: &Bytes,
    head: &ResponseHead,
) -> Result<(StatusCode, HeaderMap), ResponseError> {
    let status =
        StatusCode::from_u16(head.status).map_err(|_| ResponseError::Malformed("status"))?;
    let upgrade = head.framing == ResponseFraming::Upgrade;
    let listed = connection_listed(buf, head);
    let mut headers = HeaderMap::with_capacity(head.fields.len() + 1);
    for f in &head.fields {
        let name = &buf[f.name.clone()];
        if !listed.is_empty() && listed.iter().any(|l| l.eq_ignore_ascii_case(name)) {
            continue;
        }
        if is_hop_by_hop(name) && !(upgrade && eq_lowercase(name, b"upgrade")) {
            continue;
        }
        let name =
            HeaderName::from_bytes(name).map_err(|_| ResponseError::Malformed("field name"))?;
        let value = HeaderValue::from_maybe_shared(buf.slice(f.value.clone()))
            .map_err(|_| ResponseError::Malformed("field value"))?;
        headers.append(name, value);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    Ok((status, headers))
}

/// Writes the fields of the response head `head` (parsed from `buf`) that
/// go on to the client into `out` ([`Fields`]): hop-by-hop fields (the
/// fixed list and those `Connection` names) stay here; a `101` keeps
/// `Upgrade` and says `Connection: upgrade`. Returns the status.
/// (`httparse` has checked every name and value, and the codec every line
/// end: nothing else is.)
///
/// Fields that go on one after another are copied as one run of the
/// head's bytes (each line as the webserver wrote it, up to its value's
/// end): one copy for most responses rather than four per field. A name
/// with whitespace before its colon is written again without it (RFC 9112
/// §5.1).
#[inline]
pub(super) fn response_fields(
    buf: &[u8],
    head: &ResponseHead,
    out: &mut Fields,
) -> Result<StatusCode, ResponseError> {
    let status =
        StatusCode::from_u16(head.status).map_err(|_| ResponseError::Malformed("status"))?;
    let upgrade = head.framing == ResponseFraming::Upgrade;
    let listed = connection_listed(buf, head);
    let raw = RawFields {
        bytes: buf,
        fields: &head.fields,
    };
    in_runs(raw, &mut out.bytes, |name| {
        let hop = (!listed.is_empty() && listed.iter().any(|l| l.eq_ignore_ascii_case(name)))
            || (is_hop_by_hop(name) && !(upgrade && eq_lowercase(name, b"upgrade")));
        if hop {
            return false;
        }
        out.length |= eq_lowercase(name, b"content-length");
        out.date |= eq_lowercase(name, b"date");
        true
    });
    if upgrade {
        out.bytes.extend_from_slice(b"connection: upgrade\r\n");
    }
    Ok(status)
}

/// Writes the field lines of `raw` that `keep` keeps (it is given each
/// name as written), copying lines that follow one another as one run of
/// the head's bytes, up to the last one's value: one copy for most heads
/// rather than four per field. A name with whitespace before its colon (a
/// response may have one) is written again without it (RFC 9112 §5.1).
/// (`httparse` has checked every name and value, and the codec every line
/// end.)
#[inline]
fn in_runs(raw: RawFields<'_>, out: &mut Vec<u8>, mut keep: impl FnMut(&[u8]) -> bool) {
    let buf = raw.bytes;
    // The run of whole lines not yet copied: its start, and its last
    // value's end.
    let mut run: Option<(usize, usize)> = None;
    for f in raw.fields {
        let name = &buf[f.name.clone()];
        if !keep(name) {
            copy_run(buf, run.take(), out);
            continue;
        }
        if buf.get(f.name.end) == Some(&b':') {
            let start = run.map_or(f.name.start, |(start, _)| start);
            let end = f.value.end.clamp(f.name.end + 1, buf.len());
            run = Some((start, end));
        } else {
            copy_run(buf, run.take(), out);
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&buf[f.value.clone()]);
            out.extend_from_slice(b"\r\n");
        }
    }
    copy_run(buf, run, out);
}

/// Copies a run of field lines (see [`in_runs`]) and its line end.
#[inline]
fn copy_run(buf: &[u8], run: Option<(usize, usize)>, out: &mut Vec<u8>) {
    if let Some((start, end)) = run {
        out.extend_from_slice(&buf[start..end]);
        out.extend_from_slice(b"\r\n");
    }
}

/// The field names a response's `Connection` lists (beyond its own
/// options): hop-by-hop too. Rare, so nothing is allocated without them.
fn connection_listed<'b>(buf: &'b [u8], head: &ResponseHead) -> Vec<&'b [u8]> {
    if !head.connection.lists_fields {
        return Vec::new();
    }
    let mut listed = Vec::new();
    for f in &head.fields {
        if !eq_lowercase(&buf[f.name.clone()], b"connection") {
            continue;
        }
        for t in buf[f.value.clone()].split(|&b| b == b',') {
            let t = t.trim_ascii();
            if !t.is_empty()
                && !eq_lowercase(t, b"close")
                && !eq_lowercase(t, b"keep-alive")
                && !eq_lowercase(t, b"upgrade")
            {
                listed.push(t);
            }
        }
    }
    listed
}

#[cfg(test)]
mod tests;
