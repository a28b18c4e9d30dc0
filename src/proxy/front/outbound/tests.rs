use super::*;
use bytes::BytesMut;
use http::header::HeaderValue;
use http_body::Frame;

fn parts(status: u16, fields: &[(&'static str, &'static str)]) -> response::Parts {
    let mut r = http::Response::new(());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    for (n, v) in fields {
        r.headers_mut().append(*n, HeaderValue::from_static(v));
    }
    r.into_parts().0
}

/// A body of a few pieces, each ready at once.
struct Pieces(std::collections::VecDeque<Bytes>);

impl Body for Pieces {
    type Data = Bytes;
    type Error = super::super::super::upstream::BodyError;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

const KEEP: Answering = Answering {
    head: false,
    http10: false,
    closing: false,
};

fn encode(
    p: &response::Parts,
    hint: http_body::SizeHint,
    to: Answering,
) -> (String, BodyOut, bool) {
    let mut out = Vec::new();
    let (b, c) = head(p, None, hint, to, &mut out);
    (String::from_utf8(out).unwrap(), b, c)
}

#[test]
fn a_response_is_framed_by_its_length_chunks_or_close() {
    let with_date = [("date", "Tue, 01 Dec 2026 10:00:00 GMT")];
    let p = parts(200, &[("content-length", "2"), with_date[0]]);
    let (h, b, c) = encode(&p, http_body::SizeHint::with_exact(2), KEEP);
    assert_eq!(
        h,
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n"
    );
    assert_eq!((b, c), (BodyOut::Plain, false));

    let p = parts(200, &with_date);
    let (h, b, _) = encode(&p, http_body::SizeHint::default(), KEEP);
    assert!(h.ends_with("transfer-encoding: chunked\r\n\r\n"), "{h}");
    assert_eq!(b, BodyOut::Chunked);

    let to10 = Answering {
        http10: true,
        ..KEEP
    };
    let (h, b, c) = encode(&p, http_body::SizeHint::default(), to10);
    assert!(h.ends_with("connection: close\r\n\r\n"), "{h}");
    assert!(!h.contains("chunked"));
    assert_eq!((b, c), (BodyOut::UntilClose, true));

    let (h, b, c) = encode(&p, http_body::SizeHint::with_exact(7), to10);
    assert!(
        h.ends_with("content-length: 7\r\nconnection: keep-alive\r\n\r\n"),
        "{h}"
    );
    assert_eq!((b, c), (BodyOut::Plain, false));
}

#[test]
fn bodiless_answers_keep_their_fields_and_send_no_body() {
    let p = parts(200, &[("content-length", "10")]);
    let (h, b, _) = encode(
        &p,
        http_body::SizeHint::with_exact(10),
        Answering { head: true, ..KEEP },
    );
    assert!(h.contains("content-length: 10\r\n"), "{h}");
    assert_eq!(b, BodyOut::None);
    for status in [204, 304] {
        let (h, b, _) = encode(&parts(status, &[]), http_body::SizeHint::default(), KEEP);
        assert!(
            !h.contains("chunked") && !h.contains("content-length"),
            "{h}"
        );
        assert_eq!(b, BodyOut::None);
    }
}

#[test]
fn a_close_asked_for_is_written_once() {
    let p = parts(502, &[("connection", "close")]);
    let (h, _, c) = encode(&p, http_body::SizeHint::with_exact(0), KEEP);
    assert_eq!(h.matches("connection").count(), 1, "{h}");
    assert!(c);
    let p = parts(101, &[("connection", "upgrade"), ("upgrade", "websocket")]);
    let (h, b, c) = encode(&p, http_body::SizeHint::with_exact(0), KEEP);
    assert!(
        h.contains("connection: upgrade\r\n") && !h.contains("close"),
        "{h}"
    );
    assert_eq!((b, c), (BodyOut::None, false));
}

#[test]
fn the_upstreams_fields_follow_the_maps() {
    let p = parts(200, &[("x-own", "1")]);
    let f = Fields {
        bytes: b"content-length: 3\r\ndate: Tue, 01 Dec 2026 10:00:00 GMT\r\nvia: 1.1 p\r\n"
            .to_vec(),
        length: true,
        date: true,
    };
    let mut out = Vec::new();
    let (b, c) = head(
        &p,
        Some(&f),
        http_body::SizeHint::with_exact(3),
        KEEP,
        &mut out,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nx-own: 1\r\ncontent-length: 3\r\ndate: Tue, 01 Dec 2026 10:00:00 GMT\r\nvia: 1.1 p\r\n\r\n"
    );
    assert_eq!((b, c), (BodyOut::Plain, false));
}

#[test]
fn dates_are_http_dates() {
    let d = date_now();
    let d = std::str::from_utf8(&d).unwrap();
    assert!(httpdate::parse_http_date(d).is_ok(), "{d}");
}

/// Writes `pieces` as the upstream body of a chunked response through a
/// socket that takes 7 bytes at a time.
async fn written(pieces: &[&str], framing: BodyOut) -> String {
    written_through(pieces, framing, 7).await.0
}

/// The same through a socket taking `per_write` bytes at a time; also
/// the head buffer's capacity at the end.
async fn written_through(pieces: &[&str], framing: BodyOut, per_write: usize) -> (String, usize) {
    let (client, server) = tokio::io::duplex(per_write);
    let conn = RefCell::new(Inbound::new(server, BytesMut::new()));
    let reader = tokio::spawn(async move {
        let mut client = client;
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut got)
            .await
            .unwrap();
        String::from_utf8(got).unwrap()
    });
    let body = Pieces(
        pieces
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect(),
    );
    let mut out = b"HEAD\r\n".to_vec();
    write(&conn, &mut out, body, framing).await.unwrap();
    drop(conn);
    (reader.await.unwrap(), out.capacity())
}

#[tokio::test]
async fn chunks_are_framed_through_short_writes() {
    let got = written(&["hello", "", "a somewhat longer piece"], BodyOut::Chunked).await;
    assert_eq!(
        got,
        "HEAD\r\n5\r\nhello\r\n17\r\na somewhat longer piece\r\n0\r\n\r\n"
    );
    let got = written(&["abc", "def"], BodyOut::Plain).await;
    assert_eq!(got, "HEAD\r\nabcdef");
    let got = written(&[], BodyOut::Chunked).await;
    assert_eq!(got, "HEAD\r\n0\r\n\r\n");
}

#[tokio::test]
async fn small_pieces_are_gathered_large_ones_written_as_they_are() {
    let big = "b".repeat(3 * COALESCE_UP_TO);
    let small = "s".repeat(100);
    let mut pieces = vec![small.as_str(); 200];
    pieces.insert(50, big.as_str());
    for framing in [BodyOut::Chunked, BodyOut::Plain] {
        let (got, capacity) = written_through(&pieces, framing, 1 << 16).await;
        let mut want = String::from("HEAD\r\n");
        for p in &pieces {
            if framing == BodyOut::Chunked {
                want.push_str(&format!("{:x}\r\n{p}\r\n", p.len()));
            } else {
                want.push_str(p);
            }
        }
        if framing == BodyOut::Chunked {
            want.push_str("0\r\n\r\n");
        }
        assert_eq!(got, want);
        // The head buffer holds one gathered write at a time, not the
        // whole streamed body.
        assert!(capacity <= 2 * COALESCE_UP_TO, "{capacity}");
    }
}
