//! A response head from an upstream: parsed by `httparse`, checked, its
//! body's framing decided from the status, the request it answers and
//! its fields (RFC 9112 §6.3). A refused head is a [`ResponseError`]: the
//! client gets `502` and the upstream connection is closed.

use std::mem::MaybeUninit;

use super::{
    Checked, ConnectionFlags, Field, FieldError, Framed, HeadFault, MAX_HEADERS, ResponseFraming,
    Status, Version, framed, range_in,
};

/// Why a response head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("response head larger than the limit")]
    TooLarge,
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("malformed response head ({0})")]
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
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    EncodingInHttp10,
    #[error("101 to a request that did not ask to upgrade")]
    UnaskedUpgrade,
}

impl From<HeadFault> for ResponseError {
    fn from(f: HeadFault) -> Self {
        match f {
            HeadFault::TooLarge => ResponseError::TooLarge,
            HeadFault::TooManyHeaders => ResponseError::TooManyHeaders,
            HeadFault::BareLf => ResponseError::BareLf,
            HeadFault::Parse(_) => ResponseError::Malformed("status line or field"),
        }
    }
}

impl From<FieldError> for ResponseError {
    fn from(e: FieldError) -> Self {
        match e {
            FieldError::TwoLengths => ResponseError::TwoLengths,
            FieldError::BadLength => ResponseError::BadLength,
            FieldError::TwoEncodings | FieldError::NotChunked => ResponseError::Encoding,
        }
    }
}

/// What the response answers: it decides whether a body follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answering {
    /// The request was `HEAD`: no body, whatever the fields say.
    pub head: bool,
    /// The request asked to upgrade (`Connection: upgrade` + `Upgrade`).
    pub upgrade: bool,
}

/// A parsed response head; reused from one response to the next.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub version: Version,
    pub fields: Vec<Field>,
    pub framing: ResponseFraming,
    pub connection: ConnectionFlags,
}

impl Default for ResponseHead {
    fn default() -> Self {
        ResponseHead {
            status: 0,
            version: Version::Http11,
            fields: Vec::with_capacity(16),
            framing: ResponseFraming::None,
            connection: ConnectionFlags::default(),
        }
    }
}

impl ResponseHead {
    /// Parses the head at the start of `buf` (at most `max_head` bytes),
    /// an answer to `to`. A 1xx other than an accepted `101` is a head of
    /// its own ([`ResponseHead::is_interim`]): the final one follows.
    pub fn parse(
        &mut self,
        buf: &[u8],
        max_head: usize,
        to: Answering,
    ) -> Result<Status, ResponseError> {
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        // RFC 9112 §5.1: a proxy removes whitespace between a response
        // field's name and its colon (as hyper's client did), where a
        // request with it is refused.
        let parsed = httparse::ParserConfig::default()
            .allow_spaces_after_header_name_in_responses(true)
            .parse_response_with_uninit_headers(&mut res, buf, &mut headers);
        let len = match framed(parsed, buf, max_head)? {
            Framed::Complete(len) => len,
            Framed::Partial => return Ok(Status::Partial),
        };
        let (Some(code), Some(minor)) = (res.code, res.version) else {
            return Err(ResponseError::Malformed("status line"));
        };
        self.status = code;
        self.version = if minor == 1 {
            Version::Http11
        } else {
            Version::Http10
        };
        self.fields.clear();
        let mut checked = Checked::default();
        let mut seen = 0u8;
        for h in res.headers.iter() {
            // httparse has trimmed the spaces and tabs around it
            // (`a_generated_head_parses_to_its_parts`).
            let value = h.value;
            checked.field(h.name.as_bytes(), value, &mut seen)?;
            self.fields.push(Field {
                name: range_in(buf, h.name.as_bytes()),
                value: range_in(buf, value),
            });
        }
        if checked.chunked && self.version == Version::Http10 {
            return Err(ResponseError::EncodingInHttp10);
        }
        if checked.chunked && checked.length.is_some() {
            return Err(ResponseError::LengthAndEncoding);
        }
        self.connection = checked.connection;
        self.framing = match code {
            101 if to.upgrade => ResponseFraming::Upgrade,
            101 => return Err(ResponseError::UnaskedUpgrade),
            100..=199 | 204 | 304 => ResponseFraming::None,
            _ if to.head => ResponseFraming::None,
            _ => match (checked.chunked, checked.length) {
                (true, _) => ResponseFraming::Chunked,
                (false, Some(0)) => ResponseFraming::None,
                (false, Some(n)) => ResponseFraming::Length(n),
                (false, None) => ResponseFraming::UntilClose,
            },
        };
        Ok(Status::Complete(len))
    }

    /// A 1xx other than `101`: an interim answer, the final head follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// Whether the upstream connection may be reused after this response
    /// (its body read to the end): not close-delimited, and the server did
    /// not say it closes.
    pub fn keeps_alive(&self) -> bool {
        let open = match self.version {
            Version::Http11 => !self.connection.close,
            Version::Http10 => self.connection.keep_alive && !self.connection.close,
        };
        open && !matches!(
            self.framing,
            ResponseFraming::UntilClose | ResponseFraming::Upgrade
        )
    }
}
