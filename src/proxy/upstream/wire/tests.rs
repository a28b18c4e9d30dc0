use super::super::super::h1::Status;
use super::super::super::h1::response::Answering;
use super::*;
use http::Request;

fn parsed(raw: &[u8], to: Answering) -> ResponseHead {
    let mut head = ResponseHead::default();
    assert!(matches!(
        head.parse(raw, 65536, to),
        Ok(Status::Complete(n)) if n == raw.len()
    ));
    head
}

const PLAIN: Answering = Answering {
    head: false,
    upgrade: false,
};

#[test]
fn the_request_head_is_the_rewritten_request_with_its_framing() {
    let mut req = Request::new(());
    *req.uri_mut() = "/a/b?c=d".parse().unwrap();
    req.headers_mut()
        .insert(header::HOST, HeaderValue::from_static("site.example"));
    req.headers_mut()
        .append("x-two", HeaderValue::from_static("1"));
    req.headers_mut()
        .append("x-two", HeaderValue::from_static("2"));
    let mut out = Vec::new();
    let fields = ClientFields {
        fields: RequestFields::Map(req.headers()),
        edits: None,
    };
    assert_eq!(request_head(&req, fields, true, &mut out), BodyOut::Done);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET /a/b?c=d HTTP/1.1\r\nhost: site.example\r\nx-two: 1\r\nx-two: 2\r\n\r\n"
    );
}

/// The client's fields written from its head (HTTP/1.x: runs of its
/// bytes) and from the request's map (HTTP/2) are the same fields, for
/// a head with every kind of field an edit touches, written in mixed
/// case, from an untrusted and from a trusted client; the head's own
/// order and case are kept.
#[test]
fn request_fields_from_the_head_are_those_from_the_map() {
    use super::super::super::edits::test_edits;
    use super::super::super::h1::request::RequestHead;
    use http::header::HeaderName;

    let head = b"POST /up?x=1 HTTP/1.1\r\nHost: site.example\r\nAccept: */*\r\nConnection: keep-alive, X-Drop-Me\r\nX-Drop-Me: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nForwarded: for=6.6.6.6\r\nX-Request-Id: spoof\r\nX-Tenant: spoof\r\nX-Hop: spoof\r\nVia: 1.1 cdn\r\nCookie: a=1\r\nCookie: b=2\r\nContent-Length: 4\r\nUser-Agent: test/1\r\n\r\n";
    let mut parsed = RequestHead::default();
    assert!(matches!(
        parsed.parse(head, 65536),
        Ok(Status::Complete(n)) if n == head.len()
    ));
    let mut map = HeaderMap::new();
    for f in &parsed.fields {
        map.append(
            HeaderName::from_bytes(&head[f.name.clone()]).unwrap(),
            HeaderValue::from_bytes(&head[f.value.clone()]).unwrap(),
        );
    }
    let mut req = Request::post("/up?x=1").body(()).unwrap();
    *req.headers_mut() = map;
    let lines = |out: &[u8]| -> Vec<String> {
        let text = String::from_utf8(out.to_vec()).unwrap();
        let mut v: Vec<String> = text
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                format!("{}: {}", n.to_ascii_lowercase(), v.trim())
            })
            .collect();
        v.sort();
        v
    };
    for trusted in [false, true] {
        let edits = test_edits(req.headers(), trusted);
        let bytes = Bytes::from_static(head);
        let raw = RequestFields::head(&bytes, &parsed.fields);
        let (mut from_head, mut from_map) = (Vec::new(), Vec::new());
        let edits = Some(&edits);
        let a = request_head(
            &req,
            ClientFields { fields: raw, edits },
            false,
            &mut from_head,
        );
        let b = request_head(
            &req,
            ClientFields {
                fields: RequestFields::Map(req.headers()),
                edits,
            },
            false,
            &mut from_map,
        );
        assert_eq!((a, b), (BodyOut::Plain, BodyOut::Plain));
        assert_eq!(lines(&from_head), lines(&from_map), "trusted: {trusted}");
        let text = String::from_utf8(from_head).unwrap();
        assert!(
            text.starts_with("POST /up?x=1 HTTP/1.1\r\nAccept: */*\r\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\r\nCookie: a=1\r\nCookie: b=2\r\nContent-Length: 4\r\nUser-Agent: test/1\r\n"
            ),
            "{text}"
        );
        for gone in [
            "X-Drop-Me",
            "Keep-Alive",
            "TE:",
            "spoof",
            "6.6.6.6, 192",
            "evil.example",
        ] {
            assert!(trusted || !text.contains(gone), "{gone} in {text}");
        }
    }
}

fn fields(raw: &[u8], to: Answering) -> (StatusCode, Fields) {
    let mut out = Fields::default();
    let status = response_fields(raw, &parsed(raw, to), &mut out).unwrap();
    (status, out)
}

#[test]
fn hop_by_hop_response_fields_stay_here() {
    let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nX-Secret: 1\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n";
    let (status, f) = fields(raw, PLAIN);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        String::from_utf8(f.bytes.clone()).unwrap(),
        "Content-Length: 2\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
    );
    assert!(f.length);
    let (_, map) = response_map(&Bytes::from_static(raw), &parsed(raw, PLAIN)).unwrap();
    let names: Vec<_> = map.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["content-length", "set-cookie"]);
    assert_eq!(map.get_all("set-cookie").iter().count(), 2);
}

/// Fields go on as the webserver wrote them (their order, spacing and
/// names' case); whitespace before a colon does not; hop-by-hop fields
/// anywhere (first, between, last) cut the runs cleanly.
#[test]
fn response_fields_go_on_as_written_in_runs() {
    let raw = b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nServer: nginx\r\nX-A:tight\r\nX-B:   spaced   \r\nConnection: keep-alive\r\nX-C : 1\r\nX-D: \r\nDate: Mon, 01 Dec 2025 00:00:00 GMT\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (_, f) = fields(raw, PLAIN);
    assert_eq!(
        String::from_utf8(f.bytes.clone()).unwrap(),
        "Server: nginx\r\nX-A:tight\r\nX-B:   spaced\r\nX-C: 1\r\nX-D: \r\nDate: Mon, 01 Dec 2025 00:00:00 GMT\r\n"
    );
    assert!(f.date && !f.length);
    let raw = b"HTTP/1.1 204 No Content\r\n\r\n";
    assert!(fields(raw, PLAIN).1.bytes.is_empty());
}

#[test]
fn an_accepted_upgrade_keeps_its_protocol() {
    let raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
    let to = Answering {
        head: false,
        upgrade: true,
    };
    let (status, f) = fields(raw, to);
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    assert!(!f.length);
    assert!(String::from_utf8_lossy(&f.bytes).ends_with("connection: upgrade\r\n"));
    let (_, map) = response_map(&Bytes::from_static(raw), &parsed(raw, to)).unwrap();
    assert_eq!(map[header::UPGRADE], "websocket");
    assert_eq!(map[header::CONNECTION], "upgrade");
    assert!(map.contains_key("sec-websocket-accept"));
}

#[test]
fn a_status_out_of_range_is_refused() {
    let raw = b"HTTP/1.1 099 Odd\r\n\r\n";
    let mut head = ResponseHead::default();
    if let Ok(Status::Complete(_)) = head.parse(raw, 65536, PLAIN) {
        assert!(response_fields(raw, &head, &mut Fields::default()).is_err());
    }
}
