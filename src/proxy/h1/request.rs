//! A request head: parsed by `httparse`, checked as a strict intermediary
//! must, its body's framing decided (RFC 9112 §6). A refused head is a
//! [`RequestError`] whose status the client gets; nothing of it may reach
//! an upstream.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::{
    Checked, ConnectionFlags, Field, FieldError, Framed, Framing, HeadFault, MAX_HEADERS, Status,
    Version, framed, range_in,
};
use crate::model::headers::eq_lowercase;

/// A request method, as far as the proxy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Trace,
    Connect,
    /// Any other token (forwarded as written).
    Other,
}

impl Method {
    fn of(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// Safe to send twice (RFC 9110 §9.2.2).
    pub fn is_idempotent(self) -> bool {
        match self {
            Method::Get
            | Method::Head
            | Method::Put
            | Method::Delete
            | Method::Options
            | Method::Trace => true,
            Method::Post | Method::Patch | Method::Connect | Method::Other => false,
        }
    }
}

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request head larger than the limit")]
    TooLarge,
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("HTTP version not supported")]
    Version,
    #[error("malformed request head ({0})")]
    Malformed(&'static str),
    #[error("line ending in a bare LF, or a NUL in the head")]
    BareLf,
    #[error("two Content-Length lines, or a list in one")]
    TwoLengths,
    #[error("Content-Length is not a plain decimal number")]
    BadLength,
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndEncoding,
    #[error("Transfer-Encoding other than exactly one \"chunked\"")]
    Encoding,
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    EncodingInHttp10,
    #[error("two Host lines")]
    TwoHosts,
    #[error("HTTP/1.1 request without Host")]
    NoHost,
    #[error("an expectation other than 100-continue")]
    Expectation,
}

impl RequestError {
    /// The status the client gets.
    pub fn status(self) -> u16 {
        match self {
            RequestError::TooLarge | RequestError::TooManyHeaders => 431,
            RequestError::Version => 505,
            RequestError::Expectation => 417,
            RequestError::Malformed(_)
            | RequestError::BareLf
            | RequestError::TwoLengths
            | RequestError::BadLength
            | RequestError::LengthAndEncoding
            | RequestError::Encoding
            | RequestError::EncodingInHttp10
            | RequestError::TwoHosts
            | RequestError::NoHost => 400,
        }
    }
}

impl From<HeadFault> for RequestError {
    fn from(f: HeadFault) -> Self {
        match f {
            HeadFault::TooLarge => RequestError::TooLarge,
            HeadFault::TooManyHeaders => RequestError::TooManyHeaders,
            HeadFault::BareLf => RequestError::BareLf,
            HeadFault::Parse(e) => RequestError::Malformed(error_name(e)),
        }
    }
}

impl From<FieldError> for RequestError {
    fn from(e: FieldError) -> Self {
        match e {
            FieldError::TwoLengths => RequestError::TwoLengths,
            FieldError::BadLength => RequestError::BadLength,
            FieldError::TwoEncodings | FieldError::NotChunked => RequestError::Encoding,
        }
    }
}

/// A parsed request head; reused from one request to the next (its field
/// list keeps its capacity).
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub method_token: Range<usize>,
    pub target: Range<usize>,
    pub version: Version,
    pub fields: Vec<Field>,
    /// The `Host` line, as an index into `fields`.
    pub host: Option<usize>,
    pub framing: Framing,
    pub connection: ConnectionFlags,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead {
            method: Method::Get,
            method_token: 0..0,
            target: 0..0,
            version: Version::Http11,
            fields: Vec::with_capacity(16),
            host: None,
            framing: Framing::None,
            connection: ConnectionFlags::default(),
            expect_continue: false,
        }
    }
}

impl RequestHead {
    /// Parses the head at the start of `buf` (at most `max_head` bytes).
    /// On `Complete(n)`, `self` describes `buf[..n]` and the body (if any)
    /// starts at `n`.
    pub fn parse(&mut self, buf: &[u8], max_head: usize) -> Result<Status, RequestError> {
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut req,
            buf,
            &mut headers,
        );
        let len = match framed(parsed, buf, max_head) {
            Ok(Framed::Complete(len)) => len,
            Ok(Framed::Partial) => return Ok(Status::Partial),
            Err(HeadFault::Parse(httparse::Error::Version)) if names_other_version(buf) => {
                return Err(RequestError::Version);
            }
            Err(fault) => return Err(fault.into()),
        };
        let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
            return Err(RequestError::Malformed("request line"));
        };
        self.method = Method::of(method.as_bytes());
        self.method_token = range_in(buf, method.as_bytes());
        self.target = range_in(buf, path.as_bytes());
        self.version = if minor == 1 {
            Version::Http11
        } else {
            Version::Http10
        };
        self.fields.clear();
        self.host = None;
        self.expect_continue = false;
        let mut checked = Checked::default();
        let mut seen = 0u8;
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            // httparse has trimmed the spaces and tabs around it
            // (`a_generated_head_parses_to_its_parts`).
            let value = h.value;
            if eq_lowercase(name, b"host") {
                if self.host.is_some() {
                    return Err(RequestError::TwoHosts);
                }
                self.host = Some(self.fields.len());
            } else if eq_lowercase(name, b"expect") {
                if !eq_lowercase(value, b"100-continue") {
                    return Err(RequestError::Expectation);
                }
                self.expect_continue = true;
            } else {
                checked.field(name, value, &mut seen)?;
            }
            self.fields.push(Field {
                name: range_in(buf, name),
                value: range_in(buf, value),
            });
        }
        if checked.chunked && self.version == Version::Http10 {
            return Err(RequestError::EncodingInHttp10);
        }
        if checked.chunked && checked.length.is_some() {
            return Err(RequestError::LengthAndEncoding);
        }
        if self.host.is_none() && self.version == Version::Http11 {
            return Err(RequestError::NoHost);
        }
        self.framing = match (checked.chunked, checked.length) {
            (true, _) => Framing::Chunked,
            (false, Some(0) | None) => Framing::None,
            (false, Some(n)) => Framing::Length(n),
        };
        self.connection = checked.connection;
        Ok(Status::Complete(len))
    }

    /// Whether the connection may carry another request after this one
    /// (as far as the client is concerned).
    pub fn keeps_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.connection.close,
            Version::Http10 => self.connection.keep_alive && !self.connection.close,
        }
    }

    /// The value of the `Host` line, in `buf` (the buffer parsed).
    pub fn host<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.host
            .and_then(|i| self.fields.get(i))
            .map(|f| &buf[f.value.clone()])
    }
}

/// Whether the request line ends in a well-formed version other than
/// HTTP/1.x (`505`); any other version error is a malformed line (`400`).
fn names_other_version(buf: &[u8]) -> bool {
    let line = buf
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(buf);
    match line.len().checked_sub(8).map(|at| &line[at..]) {
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor]) => {
            major.is_ascii_digit() && minor.is_ascii_digit() && *major != b'1'
        }
        _ => false,
    }
}

/// What `httparse` refused, in a word for the log.
fn error_name(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "header name",
        httparse::Error::HeaderValue => "header value",
        httparse::Error::NewLine => "line ending",
        httparse::Error::Status => "status",
        httparse::Error::Token => "method or target",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "version",
    }
}
