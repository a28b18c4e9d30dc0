//! A request body read from an HTTP/2 stream: its data as it comes, the
//! window given back as it is passed on (the client sends no faster than
//! the upstream takes it), then its trailers.

use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::proxy::body::ClientBodyError;

/// The body of a request on an HTTP/2 stream.
pub struct H2Body {
    recv: h2::RecvStream,
    /// What is left of a declared length (the `h2` crate holds the data
    /// to it).
    remaining: Option<u64>,
    data_done: bool,
    finished: bool,
}

impl H2Body {
    pub fn new(recv: h2::RecvStream, declared: Option<u64>) -> Self {
        H2Body {
            recv,
            remaining: declared,
            data_done: false,
            finished: false,
        }
    }

    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Passed on: the client may send as much again.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(r) = &mut self.remaining {
                        *r = r.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(ClientBodyError::Stream(e))));
                }
                None => self.data_done = true,
            }
        }
        let trailers = ready!(self.recv.poll_trailers(cx));
        self.finished = true;
        match trailers {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(ClientBodyError::Stream(e)))),
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.finished || self.recv.is_end_stream()
    }

    pub fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None if self.is_end_stream() => SizeHint::with_exact(0),
            None => SizeHint::default(),
        }
    }
}
