//! One HTTP/2 stream: its request through the phases ([`handler::answer`])
//! and its response sent back, the body within the stream's flow-control
//! window; a stream the client resets is dropped at once (and with it the
//! upstream exchange).

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body::Body;

use super::H2Body;
use crate::model::headers::hop_bit;
use crate::proxy::body::{RequestBody, ResponseBody};
use crate::proxy::fields::Fields;
use crate::proxy::handler::{self, ConnCtx};
use crate::proxy::headers;

/// Answers one stream.
pub async fn serve(
    ctx: Rc<ConnCtx>,
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    // In a block: what the phases use ends before the response is sent,
    // so that it takes no room beside the sending in this future (which a
    // connection holds per stream in flight).
    let response = {
        // The phases read the fields beside the request (its own map
        // stays empty, as an HTTP/1.x request's does); HTTP/1.1 wants one
        // `Cookie`.
        let (mut parts, recv) = req.into_parts();
        let mut map = std::mem::take(&mut parts.headers);
        headers::merge_cookies(&mut map);
        let body = if recv.is_end_stream() {
            RequestBody::empty()
        } else {
            RequestBody::h2(H2Body::new(recv, declared_length(&map)))
        };
        let req = Request::from_parts(parts, body);
        let mut answer = pin!(handler::answer(&ctx, req, Fields::Map(&map)));
        // Until the answer is there, a reset from the client ends the
        // stream (and drops the exchange in progress).
        poll_fn(|cx| {
            if let Poll::Ready(r) = answer.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            match respond.poll_reset(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    };
    let Some(response) = response else {
        tracing::debug!(client = %ctx.peer, "stream reset by the client before its answer");
        return;
    };
    let (mut parts, body) = response.into_parts();
    let end = body.is_end_stream();
    complete_head(&mut parts.headers, body.size_hint().exact(), end);
    match respond.send_response(Response::from_parts(parts, ()), end) {
        Ok(send) if !end => send_body(&ctx, body, send).await,
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(client = %ctx.peer, error = %e, "response head not sent");
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
        }
    }
}

/// The request's declared length (already checked by the `h2` crate: a
/// malformed or conflicting `content-length` resets the stream, and the
/// data must add up to it).
fn declared_length(map: &HeaderMap) -> Option<u64> {
    let v = map.get(header::CONTENT_LENGTH)?;
    std::str::from_utf8(v.as_bytes()).ok()?.parse().ok()
}

/// What HTTP/2 wants of a response's fields, in one pass: no
/// connection-specific field (the `h2` crate refuses a head with one; a
/// webserver's are dropped by the upstream side already, this keeps any
/// other out), `date` on predictor's own answers, and the length of a
/// body whose size is known.
fn complete_head(map: &mut HeaderMap, exact: Option<u64>, end: bool) {
    let (mut date, mut length, mut hop) = (false, false, false);
    for name in map.keys() {
        date |= name == header::DATE;
        length |= name == header::CONTENT_LENGTH;
        hop |= hop_bit(name.as_str().as_bytes()) != 0 || name == header::TE;
    }
    if hop {
        let names: Vec<_> = map
            .keys()
            .filter(|n| hop_bit(n.as_str().as_bytes()) != 0 || *n == header::TE)
            .cloned()
            .collect();
        for n in names {
            map.remove(n);
        }
    }
    if !date {
        if let Ok(v) = HeaderValue::from_bytes(&crate::proxy::front::date_now()) {
            map.insert(header::DATE, v);
        }
    }
    if let (false, false, Some(n)) = (length, end, exact) {
        map.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
}

/// Sends `body` on the stream, each piece within the capacity the client
/// grants; trailers end it if the body has them.
async fn send_body(ctx: &ConnCtx, body: ResponseBody, mut send: h2::SendStream<Bytes>) {
    let mut body = pin!(body);
    loop {
        // The next piece, or the client's reset while it is awaited.
        let frame = poll_fn(|cx| {
            if let Poll::Ready(f) = body.as_mut().poll_frame(cx) {
                return Poll::Ready(Ok(f));
            }
            match send.poll_reset(cx) {
                Poll::Ready(_) => Poll::Ready(Err(())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let frame = match frame {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Ok(Some(Err(e))) => {
                tracing::debug!(client = %ctx.peer, error = %e, "response cut short");
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
            Err(()) => {
                tracing::debug!(client = %ctx.peer, "stream reset by the client during its answer");
                return;
            }
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = send.send_trailers(trailers);
                }
                return;
            }
        };
        let last = body.is_end_stream();
        if data.is_empty() && !last {
            continue;
        }
        loop {
            let piece = if data.is_empty() {
                data.split_off(0)
            } else {
                send.reserve_capacity(data.len());
                let mut granted = send.capacity();
                while granted == 0 {
                    granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
                        Some(Ok(n)) => n,
                        // Reset or closed: nothing more can be sent.
                        _ => return,
                    };
                }
                data.split_to(granted.min(data.len()))
            };
            let end = last && data.is_empty();
            if send.send_data(piece, end).is_err() || end {
                return;
            }
            if data.is_empty() {
                break;
            }
        }
    }
}
