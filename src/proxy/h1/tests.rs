//! The codec against the framing cases of RFC 9112 and the smuggling
//! classes proxies were burnt by; property tests for what no input may do.

use proptest::prelude::*;

use super::chunked::{ChunkError, ChunkedDecoder, Limits, Step};
use super::request::{Method, RequestError, RequestHead};
use super::response::{Answering, ResponseError, ResponseHead};
use super::{Framing, ResponseFraming, Status, Version};

const MAX: usize = 16 << 10;

fn request(raw: &str) -> Result<(RequestHead, usize), RequestError> {
    let mut head = RequestHead::default();
    match head.parse(raw.as_bytes(), MAX)? {
        Status::Complete(n) => Ok((head, n)),
        Status::Partial => panic!("partial: {raw:?}"),
    }
}

fn refused(raw: &str) -> RequestError {
    request(raw).expect_err(raw)
}

#[test]
fn a_plain_request_is_read_with_its_framing() {
    let raw = "GET /a?b HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\nNEXT";
    let (head, n) = request(raw).unwrap();
    assert_eq!(n, raw.len() - 4);
    assert_eq!(head.method, Method::Get);
    assert_eq!(&raw.as_bytes()[head.target.clone()], b"/a?b");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.host(raw.as_bytes()), Some(&b"a.example"[..]));
    assert_eq!(head.framing, Framing::None);
    assert!(head.keeps_alive());
    assert_eq!(head.fields.len(), 2);

    let (head, _) = request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  12 \r\n\r\n").unwrap();
    assert_eq!(head.framing, Framing::Length(12));
    let (head, _) =
        request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
    assert_eq!(head.framing, Framing::Chunked);
    let (head, _) = request("GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(!head.keeps_alive(), "HTTP/1.0 closes unless asked");
    let (head, _) = request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    assert!(head.keeps_alive());
    let (head, _) = request("GET / HTTP/1.1\r\nHost: a\r\nConnection: x, Close\r\n\r\n").unwrap();
    assert!(!head.keeps_alive());
    let (head, _) =
        request("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .unwrap();
    assert!(head.connection.upgrade);
    let (head, _) =
        request("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
    assert!(head.expect_continue);
    assert!(head.method.is_idempotent());
}

#[test]
fn a_head_in_pieces_is_partial_until_complete() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut head = RequestHead::default();
    for cut in 0..raw.len() {
        assert_eq!(head.parse(&raw[..cut], MAX), Ok(Status::Partial), "{cut}");
    }
    assert_eq!(head.parse(raw, MAX), Ok(Status::Complete(raw.len())));
    assert_eq!(head.parse(raw, 10), Err(RequestError::TooLarge));
    assert_eq!(head.parse(&raw[..12], 10), Err(RequestError::TooLarge));
}

#[test]
fn smuggling_shapes_are_refused_with_400() {
    use RequestError as E;
    let cases: &[(&str, RequestError)] = &[
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            E::LengthAndEncoding,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            E::TwoLengths,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            E::BadLength,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            E::BadLength,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
            E::BadLength,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            E::BadLength,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
            E::BadLength,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            E::Encoding,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            E::Encoding,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            E::Encoding,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            E::Encoding,
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            E::EncodingInHttp10,
        ),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", E::TwoHosts),
        ("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", E::NoHost),
        ("GET / HTTP/1.1\nHost: a\r\n\r\n", E::BareLf),
        ("GET / HTTP/1.1\r\nHost: a\n\r\n", E::BareLf),
        ("GET / HTTP/1.1\r\nHost: a\r\n\n", E::BareLf),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n",
            E::Expectation,
        ),
    ];
    for (raw, expected) in cases {
        let got = refused(raw);
        assert_eq!(got, *expected, "{raw:?}");
        assert_eq!(
            got.status(),
            if *expected == E::Expectation {
                417
            } else {
                400
            }
        );
    }
    // obs-fold, NUL and CR inside a value: refused by the parser itself.
    for raw in [
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: o\0ne\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: o\rne\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX A: one\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n X-A: one\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(refused(raw).status(), 400, "{raw:?}");
    }
    assert_eq!(refused("GET / HTTP/2.0\r\n\r\n").status(), 505);
    let many: String = (0..super::MAX_HEADERS + 1)
        .map(|i| format!("X-{i}: v\r\n"))
        .collect();
    assert_eq!(
        refused(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")),
        RequestError::TooManyHeaders
    );
}

fn response(raw: &str, to: Answering) -> Result<ResponseHead, ResponseError> {
    let mut head = ResponseHead::default();
    match head.parse(raw.as_bytes(), MAX, to)? {
        Status::Complete(_) => Ok(head),
        Status::Partial => panic!("partial: {raw:?}"),
    }
}

const GET: Answering = Answering {
    head: false,
    upgrade: false,
};

#[test]
fn a_response_is_framed_by_its_status_its_request_and_its_fields() {
    let framing = |raw: &str, to| response(raw, to).unwrap().framing;
    let head = Answering {
        head: true,
        upgrade: false,
    };
    let upgrade = Answering {
        head: false,
        upgrade: true,
    };
    use ResponseFraming as F;
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", GET),
        F::Length(3)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", head),
        F::None
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", GET),
        F::Chunked
    );
    assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n", GET), F::UntilClose);
    assert_eq!(
        framing("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", GET),
        F::None
    );
    assert_eq!(
        framing(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            GET
        ),
        F::None
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", GET),
        F::None
    );
    let early = response("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", GET).unwrap();
    assert!(early.is_interim());
    assert_eq!(early.framing, F::None);
    assert_eq!(
        framing(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            upgrade
        ),
        F::Upgrade
    );
    assert_eq!(
        response("HTTP/1.1 101 Switching Protocols\r\n\r\n", GET).unwrap_err(),
        ResponseError::UnaskedUpgrade
    );

    let keeps = |raw: &str| response(raw, GET).unwrap().keeps_alive();
    assert!(keeps("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"));
    assert!(!keeps(
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n"
    ));
    assert!(!keeps("HTTP/1.1 200 OK\r\n\r\n"), "close-delimited");
    assert!(!keeps("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"));
    assert!(keeps(
        "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n"
    ));
}

/// RFC 9112 §5.1: whitespace between a response field's name and its
/// colon is removed (a request with it is refused), and the field counts
/// for the framing.
#[test]
fn space_before_a_response_colon_is_removed() {
    let raw = "HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\n";
    let head = response(raw, GET).unwrap();
    assert_eq!(head.framing, ResponseFraming::Length(3));
    assert_eq!(&raw[head.fields[0].name.clone()], "Content-Length");
    assert_eq!(refused("GET / HTTP/1.1\r\nHost : a\r\n\r\n").status(), 400);
}

#[test]
fn a_bad_response_head_is_refused() {
    use ResponseError as E;
    for (raw, expected) in [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            E::LengthAndEncoding,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            E::TwoLengths,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            E::BadLength,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            E::Encoding,
        ),
        (
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            E::EncodingInHttp10,
        ),
        ("HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n", E::BareLf),
    ] {
        assert_eq!(response(raw, GET).unwrap_err(), expected, "{raw:?}");
    }
    assert!(response("HTTP/1.1 2000 OK\r\n\r\n", GET).is_err());
    assert!(response("HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n", GET).is_err());
    assert!(response("HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", GET).is_err());
    assert!(response("HTTQ/1.1 200 OK\r\n\r\n", GET).is_err());
}

/// Decodes `body` fed in pieces of `split` bytes; the data, and the bytes
/// left after the end.
fn decode(body: &[u8], split: usize) -> Result<(Vec<u8>, usize), ChunkError> {
    let mut d = ChunkedDecoder::new(Limits::default());
    let mut data = Vec::new();
    let mut at = 0;
    while !d.is_done() && at < body.len() {
        let end = (at + split.max(1)).min(body.len());
        let piece = &body[at..end];
        let Step {
            consumed,
            data: got,
            done,
        } = d.feed(piece)?;
        data.extend_from_slice(&piece[got]);
        at += consumed;
        if done {
            break;
        }
    }
    assert!(d.is_done(), "not done: {:?}", String::from_utf8_lossy(body));
    Ok((data, body.len() - at))
}

#[test]
fn a_chunked_body_yields_its_data_and_stops_at_its_end() {
    let body = b"4\r\nWiki\r\n5;name=\"v\"\r\npedia\r\nE \r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nGET /next";
    for split in [1, 2, 3, 7, 64, 1000] {
        let (data, left) = decode(body, split).unwrap();
        assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.", "split {split}");
        assert_eq!(left, b"GET /next".len(), "split {split}");
    }
    assert_eq!(decode(b"0\r\n\r\n", 1).unwrap(), (Vec::new(), 0));
    assert_eq!(
        decode(b"000A\r\n0123456789\r\n0\r\n\r\n", 3).unwrap().0,
        b"0123456789"
    );
}

#[test]
fn bad_chunked_framing_is_refused() {
    use ChunkError as E;
    let err = |body: &[u8]| decode(body, 1).unwrap_err();
    assert_eq!(err(b"zz\r\n"), E::BadSize);
    assert_eq!(err(b"\r\n"), E::BadSize);
    assert_eq!(err(b"-1\r\n"), E::BadSize);
    assert_eq!(err(b"0x5\r\n"), E::BadSize);
    assert_eq!(err(b"10000000000000000\r\n"), E::BadSize, "17 digits");
    assert_eq!(err(b"5\nhello\r\n0\r\n\r\n"), E::BareLf);
    assert_eq!(err(b"5;a\nb\r\nhello\r\n0\r\n\r\n"), E::BareLf);
    assert_eq!(err(b"5;a\x01\r\nhello\r\n0\r\n\r\n"), E::BadExtension);
    assert_eq!(err(b"5\rhello"), E::BareCr);
    assert_eq!(err(b"5\r\nhelloX\r\n"), E::MissingCrlf);
    assert_eq!(err(b"5\r\nhello\n0\r\n\r\n"), E::BareLf);
    assert_eq!(err(b"5 x\r\n"), E::BadSize);
    assert_eq!(err(b"0\r\nX: 1\n\r\n"), E::BareLf);
    assert_eq!(err(b"0\r\n\n"), E::BareLf);
    assert_eq!(err(b"0\r\nX: \x00\r\n\r\n"), E::BadTrailer);
    let long = format!("1;{}\r\n", "a".repeat(5000));
    assert_eq!(err(long.as_bytes()), E::LineTooLong);
    let trailers = format!("0\r\n{}\r\n", "X-T: v\r\n".repeat(2000));
    assert_eq!(err(trailers.as_bytes()), E::TrailersTooLarge);
}

/// A chunked encoding of `chunks`, with extensions where `ext` says.
fn encode(chunks: &[Vec<u8>], ext: bool, trailer: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        out.extend_from_slice(format!("{:x}", c.len()).as_bytes());
        if ext {
            out.extend_from_slice(b" ; e=\"v\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    if trailer {
        out.extend_from_slice(b"X-Sum: 1\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any valid body, cut anywhere, yields exactly its data and stops at
    /// its end.
    #[test]
    fn chunked_round_trips_in_any_split(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
        ext in any::<bool>(),
        trailer in any::<bool>(),
        split in 1usize..64,
        tail in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut body = encode(&chunks, ext, trailer);
        body.extend_from_slice(&tail);
        let (data, left) = decode(&body, split).unwrap();
        prop_assert_eq!(data, chunks.concat());
        prop_assert_eq!(left, tail.len());
    }

    /// No input makes the decoder panic, loop, or claim more than it got.
    #[test]
    fn chunked_takes_any_bytes_safely(
        input in prop::collection::vec(any::<u8>(), 0..512),
        split in 1usize..32,
    ) {
        let mut d = ChunkedDecoder::new(Limits::default());
        let mut at = 0;
        while at < input.len() {
            let end = (at + split).min(input.len());
            match d.feed(&input[at..end]) {
                Ok(step) => {
                    prop_assert!(step.consumed <= end - at);
                    prop_assert!(step.data.end <= step.consumed);
                    if step.done { break; }
                    prop_assert!(step.consumed > 0, "progress on non-empty input");
                    at += step.consumed;
                }
                Err(_) => break,
            }
        }
    }

    /// No input makes the head parsers panic; what they accept ends
    /// within the input and names ranges inside it.
    #[test]
    fn heads_take_any_bytes_safely(input in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut req = RequestHead::default();
        if let Ok(Status::Complete(n)) = req.parse(&input, MAX) {
            prop_assert!(n <= input.len());
            for f in &req.fields {
                prop_assert!(f.name.end <= n && f.value.end <= n);
            }
        }
        let mut res = ResponseHead::default();
        if let Ok(Status::Complete(n)) = res.parse(&input, MAX, GET) {
            prop_assert!(n <= input.len());
        }
    }

    /// Any valid request head built from parts parses to those parts, with
    /// the framing RFC 9112 gives it.
    #[test]
    fn a_generated_head_parses_to_its_parts(
        method in prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "DELETE", "PURGE"]),
        path in "/[a-z0-9/._~%-]{0,40}",
        host in "[a-z0-9]{1,20}(\\.[a-z0-9]{1,10}){0,3}",
        others in prop::collection::vec(("x-[a-z]{1,10}", "[ -~]{0,30}"), 0..10),
        body in prop::option::of(prop_oneof![(0u64..u64::MAX).prop_map(Some), Just(None)]),
    ) {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (n, v) in &others {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        match body {
            Some(Some(n)) => raw.push_str(&format!("Content-Length: {n}\r\n")),
            Some(None) => raw.push_str("Transfer-Encoding: chunked\r\n"),
            None => {}
        }
        raw.push_str("\r\n");
        let (head, n) = request(&raw).unwrap();
        prop_assert_eq!(n, raw.len());
        prop_assert_eq!(&raw.as_bytes()[head.target.clone()], path.as_bytes());
        prop_assert_eq!(head.host(raw.as_bytes()), Some(host.as_bytes()));
        prop_assert_eq!(head.fields.len(), 1 + others.len() + usize::from(body.is_some()));
        for (f, (name, value)) in head.fields[1..].iter().zip(&others) {
            prop_assert_eq!(&raw.as_bytes()[f.name.clone()], name.as_bytes());
            prop_assert_eq!(&raw.as_bytes()[f.value.clone()], value.trim_matches([' ', '\t']).as_bytes());
        }
        let expected = match body {
            Some(Some(0)) | None => Framing::None,
            Some(Some(n)) => Framing::Length(n),
            Some(None) => Framing::Chunked,
        };
        prop_assert_eq!(head.framing, expected);
    }
}
