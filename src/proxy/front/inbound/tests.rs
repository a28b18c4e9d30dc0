use super::*;
use http_body::Body;
use tokio::io::AsyncWriteExt;

type Conn = Rc<RefCell<Inbound<std::io::Cursor<Vec<u8>>>>>;

/// A connection whose client sent `sent` (then closed), its head already
/// taken.
fn conn(sent: &'static [u8]) -> Conn {
    Rc::new(RefCell::new(Inbound::new(
        std::io::Cursor::new(sent.to_vec()),
        BytesMut::new(),
    )))
}

/// A connection whose client sent `sent` as a body framed by `framing`,
/// and that body as the request's.
fn body_of(sent: &'static [u8], framing: Framing) -> (Conn, RequestBody) {
    let c = conn(sent);
    c.borrow_mut().start_body(framing, false);
    let shared: Shared = c.clone();
    (c, RequestBody::h1(ClientBody::new(shared, framing)))
}

async fn read_all(body: &mut RequestBody) -> Result<Vec<u8>, ClientBodyError> {
    let mut all = Vec::new();
    while let Some(f) = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
        all.extend_from_slice(f?.data_ref().unwrap());
    }
    Ok(all)
}

#[tokio::test]
async fn a_length_framed_body_stops_at_its_length() {
    let (c, mut body) = body_of(b"hello, next request", Framing::Length(5));
    assert_eq!(read_all(&mut body).await.unwrap(), b"hello");
    assert!(body.is_end_stream());
    assert_eq!(&c.borrow().buf[..], b", next request");
}

#[tokio::test]
async fn a_chunked_body_is_validated_and_unframed() {
    let (c, mut body) = body_of(b"4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\nGET", Framing::Chunked);
    assert_eq!(read_all(&mut body).await.unwrap(), b"wikipedia");
    assert_eq!(&c.borrow().buf[..], b"GET");

    let (c, mut body) = body_of(b"zz\r\nwiki\r\n", Framing::Chunked);
    assert!(matches!(
        read_all(&mut body).await,
        Err(ClientBodyError::Chunked(_))
    ));
    assert!(!c.borrow().body_done());
}

#[tokio::test]
async fn a_body_cut_short_is_the_clients_error() {
    let (_conn, mut body) = body_of(b"hel", Framing::Length(5));
    assert!(matches!(
        read_all(&mut body).await,
        Err(ClientBodyError::Truncated)
    ));
}

#[tokio::test]
async fn continue_is_sent_when_the_body_is_first_read() {
    let (client, server) = tokio::io::duplex(1024);
    let c = Rc::new(RefCell::new(Inbound::new(server, BytesMut::new())));
    c.borrow_mut().start_body(Framing::Length(2), true);
    assert_eq!(c.borrow().continue_at, Some(0));
    let shared: Shared = c.clone();
    let mut body = RequestBody::h1(ClientBody::new(shared, Framing::Length(2)));
    let mut client = client;
    let reader = async {
        let mut got = [0u8; CONTINUE.len()];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut got)
            .await
            .unwrap();
        assert_eq!(&got[..], CONTINUE);
        client.write_all(b"ok").await.unwrap();
        client
    };
    let (all, _client) = tokio::join!(read_all(&mut body), reader);
    assert_eq!(all.unwrap(), b"ok");
    assert_eq!(c.borrow().continue_at, None);
}

#[test]
fn read_buffers_are_lent_and_taken_back_only_when_free() {
    let pool = ReadBuffers::default();
    let mut buf = pool.take();
    assert_eq!(buf.capacity(), READ_BUFFER);
    buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    // The head is still held (by a request, a log record): the buffer
    // is not kept.
    let head = buf.split().freeze();
    pool.give_back(buf);
    assert!(pool.0.borrow().is_empty());
    drop(head);
    // Read to its end and free: kept, and lent whole again.
    let mut buf = pool.take();
    buf.extend_from_slice(b"abc");
    buf.clear();
    pool.give_back(buf);
    assert_eq!(pool.0.borrow().len(), 1);
    assert_eq!(pool.take().capacity(), READ_BUFFER);
}

#[test]
fn the_request_is_built_from_the_head_without_its_fields() {
    let raw = Bytes::from_static(
        b"PURGE /a?b HTTP/1.0\r\nHost: s.example\r\nX-Two: 1\r\nx-two: 2\r\n\r\n",
    );
    let mut head = RequestHead::default();
    head.parse(&raw, 8192).unwrap();
    let r = request(&head, &raw, RequestBody::empty()).unwrap();
    assert_eq!(r.method().as_str(), "PURGE");
    assert_eq!(r.uri(), "/a?b");
    assert_eq!(r.version(), Version::HTTP_10);
    // Its fields are read from the head, never put in its map.
    assert!(r.headers().is_empty());
    let fields = crate::proxy::fields::Fields::head(&raw, &head.fields);
    assert_eq!(fields.get(&http::header::HOST), Some(&b"s.example"[..]));
    let two = http::HeaderName::from_static("x-two");
    assert_eq!(fields.get_all(&two).count(), 2);
}
