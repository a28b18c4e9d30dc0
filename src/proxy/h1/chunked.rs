//! A chunked body (RFC 9112 §7.1), validated while it streams: the data
//! bytes are found where they lie in the input (nothing is copied), and
//! everything else is checked byte by byte, in any split of the input.
//!
//! Strict where proxies were burnt: a size is 1 to 16 hex digits (no
//! sign, no `0x`, no overflow), only spaces or tabs may follow it before
//! `;`, extensions are bounded and hold no control byte, every line ends in
//! CRLF (a bare LF anywhere is refused), a chunk's data is followed by
//! exactly CRLF, and the trailer section is bounded. Extensions and
//! trailers are checked and passed over, not interpreted.

use std::ops::Range;

/// Bounds of what is not data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one size line (digits and extensions, without CRLF).
    pub max_size_line: usize,
    /// Bytes of the whole trailer section (CRLFs included).
    pub max_trailers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size_line: 4096,
            max_trailers: 8192,
        }
    }
}

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk size is not 1 to 16 hex digits")]
    BadSize,
    #[error("chunk size line or extension too long")]
    LineTooLong,
    #[error("control byte in a chunk extension")]
    BadExtension,
    #[error("line ending in a bare LF")]
    BareLf,
    #[error("CR not followed by LF")]
    BareCr,
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
    #[error("trailer section too large")]
    TrailersTooLarge,
    #[error("control byte in a trailer line")]
    BadTrailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a size (`digits` so far).
    Size,
    /// After the digits: spaces or tabs, then `;` or CR.
    AfterSize,
    Extension,
    /// CR seen at the end of a size line.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

/// One step of [`ChunkedDecoder::feed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input taken (the rest is for the next call, or, once
    /// `done`, is what follows the body).
    pub consumed: usize,
    /// Data bytes found, as a range of the input (empty when none).
    pub data: Range<usize>,
    /// The body ended (last chunk, trailers, final CRLF).
    pub done: bool,
}

/// The state of one chunked body being read.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    limits: Limits,
    /// The chunk size being read, then the data bytes left in the chunk.
    size: u64,
    digits: u8,
    /// Bytes of the current size line.
    line: usize,
    /// Bytes of the trailer section so far.
    trailers: usize,
}

impl ChunkedDecoder {
    /// Takes what `buf` holds of the body from its front: the data bytes
    /// found (shared with `buf`'s storage, not copied) and whether the
    /// body ended (what follows it stays in `buf`).
    pub fn take(&mut self, buf: &mut bytes::BytesMut) -> Result<(bytes::Bytes, bool), ChunkError> {
        use bytes::Buf;
        let step = self.feed(buf)?;
        buf.advance(step.data.start);
        let data = buf.split_to(step.data.len()).freeze();
        buf.advance(step.consumed - step.data.end);
        Ok((data, step.done))
    }

    pub fn new(limits: Limits) -> Self {
        ChunkedDecoder {
            state: State::Size,
            limits,
            size: 0,
            digits: 0,
            line: 0,
            trailers: 0,
        }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads from `input` up to and including the next data bytes (or to
    /// its end, or to the end of the body). Call again with the rest.
    pub fn feed(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Data {
                let left = input.len() - i;
                let take = usize::try_from(self.size).map_or(left, |s| s.min(left));
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                return Ok(Step {
                    consumed: i + take,
                    data: i..i + take,
                    done: false,
                });
            }
            if self.state == State::Done {
                break;
            }
            self.byte(input[i])?;
            i += 1;
        }
        Ok(Step {
            consumed: i,
            data: i..i,
            done: self.state == State::Done,
        })
    }

    /// One byte outside the data.
    fn byte(&mut self, b: u8) -> Result<(), ChunkError> {
        match self.state {
            State::Size | State::AfterSize | State::Extension => {
                if b != b'\r' && b != b'\n' {
                    self.line += 1;
                    if self.line > self.limits.max_size_line {
                        return Err(ChunkError::LineTooLong);
                    }
                }
            }
            State::TrailerStart | State::Trailer | State::TrailerLf | State::FinalLf => {
                self.trailers += 1;
                if self.trailers > self.limits.max_trailers {
                    return Err(ChunkError::TrailersTooLarge);
                }
            }
            State::SizeLf | State::Data | State::DataCr | State::DataLf | State::Done => {}
        }
        self.state = match (self.state, b) {
            (
                State::Size
                | State::AfterSize
                | State::Extension
                | State::DataCr
                | State::TrailerStart
                | State::Trailer,
                b'\n',
            ) => return Err(ChunkError::BareLf),
            (State::Size, _) => match hex(b) {
                Some(d) if self.digits < 16 => {
                    self.digits += 1;
                    self.size = (self.size << 4) | u64::from(d);
                    State::Size
                }
                Some(_) => return Err(ChunkError::BadSize),
                None if self.digits == 0 => return Err(ChunkError::BadSize),
                None => match b {
                    b'\r' => State::SizeLf,
                    b';' => State::Extension,
                    b' ' | b'\t' => State::AfterSize,
                    _ => return Err(ChunkError::BadSize),
                },
            },
            (State::AfterSize, b' ' | b'\t') => State::AfterSize,
            (State::AfterSize, b';') => State::Extension,
            (State::AfterSize, b'\r') => State::SizeLf,
            (State::AfterSize, _) => return Err(ChunkError::BadSize),
            (State::Extension, b'\r') => State::SizeLf,
            (State::Extension, b'\t' | b' '..=b'~' | 0x80..=0xff) => State::Extension,
            (State::Extension, _) => return Err(ChunkError::BadExtension),
            (State::SizeLf, b'\n') => {
                self.line = 0;
                self.digits = 0;
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            (State::SizeLf, _) => return Err(ChunkError::BareCr),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size,
            (State::DataCr | State::DataLf, _) => return Err(ChunkError::MissingCrlf),
            (State::TrailerStart, b'\r') => State::FinalLf,
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::TrailerStart | State::Trailer, b'\t' | b' '..=b'~' | 0x80..=0xff) => {
                State::Trailer
            }
            (State::TrailerStart | State::Trailer, _) => return Err(ChunkError::BadTrailer),
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::FinalLf, b'\n') => State::Done,
            (State::TrailerLf | State::FinalLf, _) => return Err(ChunkError::BareCr),
            (State::Data | State::Done, _) => self.state,
        };
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
