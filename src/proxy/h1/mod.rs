//! HTTP/1.1 message framing for predictor's own hot path (issue 16): the
//! request and response heads as `httparse` reads them, checked the way a
//! strict intermediary must, and the body framing they imply.
//!
//! Owns: which bytes of a buffer are the head, which header lines it has
//! (as ranges into that buffer: nothing is copied, no `HeaderMap`), what
//! frames the body that follows ([`Framing`], [`ResponseFraming`]), and a
//! streaming validator of chunked bodies ([`chunked`]). Pure: no I/O, no
//! allocation once a [`request::RequestHead`] or [`response::ResponseHead`]
//! is reused for the next message.
//!
//! What is refused, and why (RFC 9112, and where proxies were burnt):
//! a request with both `Content-Length` and `Transfer-Encoding`, two
//! `Content-Length` lines or a list in one, a length that is not plain
//! digits or overflows, a `Transfer-Encoding` other than exactly one
//! `chunked`, `Transfer-Encoding` in HTTP/1.0, obs-fold, a line ending in a
//! bare LF, NUL/CR/LF inside a value, two `Host` lines, an HTTP/1.1 request
//! without `Host`. A refused request gets `400` (`431` for a head too
//! large) and nothing reaches an upstream; a refused response is a `502`
//! and its connection is closed.
//!
//! Used by: the client side ([`super::front`]) reads every HTTP/1.x
//! request head and body with it, the upstream side
//! ([`super::upstream`]) every response head and body.

pub mod chunked;
pub mod request;
pub mod response;

#[cfg(test)]
mod tests;

use crate::model::headers::eq_lowercase;
use std::ops::Range;

/// One header line: its name and value as ranges into the head's buffer
/// (the value without surrounding whitespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// A parsed head's fields as the client sent them: the head's bytes and
/// the ranges of its fields, for writing them on as runs of those bytes.
#[derive(Debug, Clone, Copy)]
pub struct RawFields<'a> {
    pub bytes: &'a [u8],
    pub fields: &'a [Field],
}

/// The protocol version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (no `Content-Length`, or `0`, and not chunked).
    None,
    Length(u64),
    Chunked,
}

/// How a response's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: an answer to `HEAD`, a 1xx, 204 or 304 (whatever the
    /// headers say), or `Content-Length: 0`.
    None,
    Length(u64),
    Chunked,
    /// Read to the end of the connection, which is not reused.
    UntilClose,
    /// `101 Switching Protocols` to a request that asked to upgrade: from
    /// here on, bytes are passed both ways unparsed.
    Upgrade,
}

/// What `Connection` (and the version) say about the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionFlags {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// Another token: the name of a field that is hop-by-hop on this hop.
    pub lists_fields: bool,
}

/// Whether the parse found a whole head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// More bytes are needed.
    Partial,
    /// The head is complete and this many bytes long.
    Complete(usize),
}

/// Takes what `buf` holds of a body framed by its length (`left` bytes
/// still to come) from its front: the data (shared with `buf`'s storage,
/// not copied) and whether the body ended.
#[inline]
pub fn take_length(buf: &mut bytes::BytesMut, left: &mut u64) -> (bytes::Bytes, bool) {
    let n = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
    let data = buf.split_to(n).freeze();
    *left -= n as u64;
    (data, *left == 0)
}

/// At most this many header lines in a head (a `431` beyond).
pub const MAX_HEADERS: usize = 100;

/// What both heads' parses come to before their fields are read.
enum Framed {
    Partial,
    /// A whole head of this many bytes, within the limit, with CRLF line
    /// ends only.
    Complete(usize),
}

/// Why a head is refused whatever its side.
enum HeadFault {
    TooLarge,
    TooManyHeaders,
    BareLf,
    /// What `httparse` refused.
    Parse(httparse::Error),
}

/// The common checks of `httparse`'s answer on `buf`: a head larger than
/// `max_head` (complete or not), a bare LF or NUL (refused as soon as it
/// is read, not once the head is complete).
fn framed(
    parsed: httparse::Result<usize>,
    buf: &[u8],
    max_head: usize,
) -> Result<Framed, HeadFault> {
    match parsed {
        Ok(httparse::Status::Complete(len)) if len > max_head => Err(HeadFault::TooLarge),
        Ok(httparse::Status::Complete(len)) if has_bare_lf(&buf[..len]) => Err(HeadFault::BareLf),
        Ok(httparse::Status::Complete(len)) => Ok(Framed::Complete(len)),
        Ok(httparse::Status::Partial) if buf.len() >= max_head => Err(HeadFault::TooLarge),
        Ok(httparse::Status::Partial) if has_bare_lf_or_nul(buf) => Err(HeadFault::BareLf),
        Ok(httparse::Status::Partial) => Ok(Framed::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(HeadFault::TooManyHeaders),
        Err(e) => Err(HeadFault::Parse(e)),
    }
}

/// The position of `part` inside `buf` (`part` is a subslice of it, as
/// `httparse` hands them out).
fn range_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

/// Trims spaces and tabs on both sides.
fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// A `Content-Length` value: 1 to 20 digits, nothing else (no sign, no
/// list, no hex), within `u64`.
fn content_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 20 {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Whether a whole head that `httparse` accepted has a line ending in a
/// bare LF. `httparse` lets a bare LF end a line but no other control
/// byte through (no NUL, no CR inside a line, every CR followed by LF), so
/// such a head has more LFs than CRs: one pass over the head that the
/// compiler vectorises, instead of a search per line (~400 instructions
/// less per head, `benches/callgrind.sh`).
fn has_bare_lf(head: &[u8]) -> bool {
    // Counted in byte-wide lanes (at most 255 bytes a round, so a count
    // cannot wrap): the compiler vectorises each round 16 bytes at a time.
    let mut diff = 0i64;
    for chunk in head.chunks(255) {
        let (mut cr, mut lf) = (0u8, 0u8);
        for &b in chunk {
            cr += u8::from(b == b'\r');
            lf += u8::from(b == b'\n');
        }
        diff += i64::from(lf) - i64::from(cr);
    }
    diff != 0
}

/// Whether `head` (a head so far, or a whole one) has a line that ends in
/// a bare LF, or a NUL anywhere.
fn has_bare_lf_or_nul(head: &[u8]) -> bool {
    if memchr::memchr(0, head).is_some() {
        return true;
    }
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

/// The comma-separated tokens of a `Connection` value, folded into `flags`.
fn connection_tokens(v: &[u8], flags: &mut ConnectionFlags) {
    for token in v.split(|&b| b == b',') {
        let token = trim(token);
        if eq_lowercase(token, b"close") {
            flags.close = true;
        } else if eq_lowercase(token, b"keep-alive") {
            flags.keep_alive = true;
        } else if eq_lowercase(token, b"upgrade") {
            flags.upgrade = true;
        } else if !token.is_empty() {
            flags.lists_fields = true;
        }
    }
}

/// The header fields both heads check the same way.
#[derive(Default)]
struct Checked {
    length: Option<u64>,
    chunked: bool,
    connection: ConnectionFlags,
}

/// Why a head's framing fields are refused (the caller words the side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldError {
    TwoLengths,
    BadLength,
    TwoEncodings,
    NotChunked,
}

impl Checked {
    /// Takes one field into account.
    fn field(&mut self, name: &[u8], value: &[u8], seen: &mut u8) -> Result<(), FieldError> {
        // Most fields are none of the three: their length says so.
        if !matches!(name.len(), 10 | 14 | 17) {
            return Ok(());
        }
        if eq_lowercase(name, b"content-length") {
            if *seen & LENGTH != 0 {
                return Err(FieldError::TwoLengths);
            }
            *seen |= LENGTH;
            self.length = Some(content_length(value).ok_or(FieldError::BadLength)?);
        } else if eq_lowercase(name, b"transfer-encoding") {
            if *seen & ENCODING != 0 {
                return Err(FieldError::TwoEncodings);
            }
            *seen |= ENCODING;
            if !eq_lowercase(trim(value), b"chunked") {
                return Err(FieldError::NotChunked);
            }
            self.chunked = true;
        } else if eq_lowercase(name, b"connection") {
            connection_tokens(value, &mut self.connection);
        }
        Ok(())
    }
}

const LENGTH: u8 = 1;
const ENCODING: u8 = 2;
