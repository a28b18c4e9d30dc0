//! The PROXY protocol on listeners (`[[listen]] proxy_protocol`): behind
//! an L4 balancer that is not in direct-return mode every connection comes
//! from the balancer, and the header it writes first (v1 text or v2
//! binary, HAProxy's `send-proxy`/`send-proxy-v2`) carries the visitor's
//! address. Read here, after the accept and before anything else (before
//! the TLS ClientHello on `https` listeners), the address it carries
//! becomes the connection's client address for everything after: the
//! forwarding headers, the access log, trusted-proxy decisions, tenant
//! and client limits, `/top`, and the PROXY header predictor itself
//! writes on passed-through TLS.
//!
//! Only the listed sources are believed. From them the header is
//! required; from anyone else it is refused (a visitor could otherwise
//! claim any address) while a connection without one is served as it
//! came (a client reaching the instance directly, a probe). Every refusal
//! closes the connection and counts in `predictor_proxy_headers_total`.
//!
//! The header is read without reading past it: the socket is peeked, the
//! header's length taken from what was peeked, and exactly that many bytes
//! consumed, so the request (or ClientHello) after it stays in the socket
//! for the protocol that reads it, and the connection keeps its plain
//! `TcpStream` type. A header that arrives in pieces is consumed piece by
//! piece. Cost per connection: two system calls (the peek, the read of
//! the header) and ~450 instructions (`CG_CLOSE=1 CG_PROXY_HEADER=v2
//! benches/callgrind.sh`, docs/performance.md).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::ProxyProtocol;
use crate::metrics::ProxyHeaderMetrics;

/// The largest header accepted (v2 with its TLVs; a v1 line is at most
/// 107 bytes). Balancers send 16 + 12 (IPv4) or + 36 (IPv6) bytes plus a
/// few TLVs (AWS NLB ~ 60, Google ~ 30).
pub const MAX_HEADER: usize = 1024;

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// The longest v1 line, its CRLF included.
const V1_MAX: usize = 107;

/// Where a connection comes from, as its PROXY header (or the socket)
/// says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The client's address.
    pub client: SocketAddr,
    /// The address the client connected to (the balancer's front), when
    /// a header named it; `None` means the socket's own.
    pub destination: Option<SocketAddr>,
}

/// Why a connection was closed at its PROXY header.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("no PROXY protocol header from a source listed in proxy_protocol")]
    Missing,
    #[error("a PROXY protocol header from a source not listed in proxy_protocol")]
    Unexpected,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("PROXY protocol header not received within {0:?}")]
    Timeout(Duration),
    #[error("connection closed before its PROXY protocol header")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

impl InboundError {
    /// Counts this refusal in `m`.
    pub fn count(&self, m: &ProxyHeaderMetrics) {
        match self {
            InboundError::Missing => m.missing.increment(1),
            InboundError::Unexpected => m.unexpected.increment(1),
            InboundError::Malformed(_) => m.malformed.increment(1),
            InboundError::Timeout(_) => m.timeout.increment(1),
            InboundError::Closed | InboundError::Io(_) => m.closed.increment(1),
        }
    }
}

/// What the first bytes of a connection are.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// A whole header of `len` bytes; `source` and `destination` are
    /// `None` for `LOCAL`/`UNKNOWN` (and address families other than
    /// TCP over IPv4 or IPv6).
    Header {
        len: usize,
        source: Option<SocketAddr>,
        destination: Option<SocketAddr>,
    },
    /// Not a PROXY header: the protocol's own first bytes.
    Absent,
    /// The start of a header (or of a signature): more bytes needed.
    Incomplete,
    Malformed(String),
}

/// A header's source and destination, each an (address, port).
fn pair<A: Into<std::net::IpAddr>>(
    source: (A, u16),
    destination: (A, u16),
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    (
        Some(SocketAddr::new(source.0.into(), source.1)),
        Some(SocketAddr::new(destination.0.into(), destination.1)),
    )
}

/// Classifies the first bytes of a connection (pure: [`ppp`] parses).
fn parse(bytes: &[u8]) -> Parsed {
    let starts = |signature: &[u8]| {
        let n = bytes.len().min(signature.len());
        bytes[..n] == signature[..n]
    };
    if bytes.is_empty() {
        Parsed::Incomplete
    } else if starts(V2_SIGNATURE) {
        if bytes.len() < 16 {
            return Parsed::Incomplete;
        }
        let len = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
        if len > MAX_HEADER {
            return Parsed::Malformed(format!("{len} bytes, more than {MAX_HEADER}"));
        }
        if bytes.len() < len {
            return Parsed::Incomplete;
        }
        match ppp::v2::Header::try_from(&bytes[..len]) {
            Ok(h) => {
                let (source, destination) = match (h.command, h.addresses) {
                    (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => pair(
                        (a.source_address, a.source_port),
                        (a.destination_address, a.destination_port),
                    ),
                    (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => pair(
                        (a.source_address, a.source_port),
                        (a.destination_address, a.destination_port),
                    ),
                    _ => (None, None),
                };
                Parsed::Header {
                    len,
                    source,
                    destination,
                }
            }
            Err(e) => Parsed::Malformed(e.to_string()),
        }
    } else if starts(V1_SIGNATURE) {
        // The line is judged once it has ended (ppp takes some prefixes,
        // like one ending in a space, for errors).
        if !bytes[..bytes.len().min(V1_MAX)].contains(&b'\n') {
            return if bytes.len() >= V1_MAX {
                Parsed::Malformed(format!("a line longer than {V1_MAX} bytes"))
            } else {
                Parsed::Incomplete
            };
        }
        match ppp::v1::Header::try_from(bytes) {
            Ok(h) => {
                let (source, destination) = match h.addresses {
                    ppp::v1::Addresses::Tcp4(a) => pair(
                        (a.source_address, a.source_port),
                        (a.destination_address, a.destination_port),
                    ),
                    ppp::v1::Addresses::Tcp6(a) => pair(
                        (a.source_address, a.source_port),
                        (a.destination_address, a.destination_port),
                    ),
                    ppp::v1::Addresses::Unknown => (None, None),
                };
                Parsed::Header {
                    len: h.header.len(),
                    source,
                    destination,
                }
            }
            Err(e) => Parsed::Malformed(e.to_string()),
        }
    } else {
        Parsed::Absent
    }
}

/// Reads the PROXY header of a connection from `peer` on a listener with
/// `p`, leaving the bytes after it in the socket. Counts the connection
/// in `m` when it is kept; a refusal is counted by the caller
/// ([`InboundError::count`]).
pub async fn read(
    stream: &mut TcpStream,
    peer: SocketAddr,
    p: &ProxyProtocol,
    m: &ProxyHeaderMetrics,
) -> Result<Origin, InboundError> {
    let expected = p.expects(peer.ip());
    let direct = Origin {
        client: peer,
        destination: None,
    };
    match tokio::time::timeout(p.timeout, take(stream, peer, expected)).await {
        Ok(Ok(origin)) => {
            if !expected {
                m.direct.increment(1);
            } else if origin.destination.is_none() {
                m.local.increment(1);
            } else {
                m.ok.increment(1);
            }
            Ok(origin)
        }
        Ok(Err(e)) => Err(e),
        // A source not listed that has not spoken yet: its protocol's own
        // timeout (`timeouts.request_header`, the TLS handshake's) goes on.
        Err(_) if !expected => {
            m.direct.increment(1);
            Ok(direct)
        }
        Err(_) => Err(InboundError::Timeout(p.timeout)),
    }
}

/// How long a source not listed that sent the start of a signature and
/// paused is left before it is peeked again (its bytes cannot be consumed:
/// they may be its request).
const PARTIAL_PAUSE: Duration = Duration::from_millis(5);

async fn take(
    stream: &mut TcpStream,
    peer: SocketAddr,
    expected: bool,
) -> Result<Origin, InboundError> {
    let direct = Origin {
        client: peer,
        destination: None,
    };
    // Bytes of the header consumed so far (it came in pieces).
    let mut got: Vec<u8> = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return if expected || !got.is_empty() {
                Err(InboundError::Closed)
            } else {
                // Closed without a word: the protocol sees it.
                Ok(direct)
            };
        }
        let parsed = if got.is_empty() {
            parse(&buf[..n])
        } else {
            let mut joined = got.clone();
            joined.extend_from_slice(&buf[..n]);
            parse(&joined)
        };
        match (parsed, expected) {
            (Parsed::Header { .. } | Parsed::Malformed(_), false) => {
                return Err(InboundError::Unexpected);
            }
            (Parsed::Absent, false) => return Ok(direct),
            (Parsed::Incomplete, false) => tokio::time::sleep(PARTIAL_PAUSE).await,
            (Parsed::Absent, true) => return Err(InboundError::Missing),
            (Parsed::Malformed(why), true) => return Err(InboundError::Malformed(why)),
            (
                Parsed::Header {
                    len,
                    source,
                    destination,
                },
                true,
            ) => {
                // What is left of the header is among the bytes peeked.
                stream.read_exact(&mut buf[..len - got.len()]).await?;
                return Ok(match source {
                    Some(client) => Origin {
                        client,
                        destination,
                    },
                    None => direct,
                });
            }
            (Parsed::Incomplete, true) => {
                if got.len() + n > MAX_HEADER {
                    return Err(InboundError::Malformed(format!(
                        "more than {MAX_HEADER} bytes"
                    )));
                }
                // Every byte peeked belongs to the header: take them, so
                // that the next peek waits for new ones.
                stream.read_exact(&mut buf[..n]).await?;
                got.extend_from_slice(&buf[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (source, destination),
        )
        .build()
        .unwrap()
    }

    fn header(source: &str, destination: &str, len: usize) -> Parsed {
        Parsed::Header {
            len,
            source: Some(source.parse().unwrap()),
            destination: Some(destination.parse().unwrap()),
        }
    }

    #[test]
    fn both_versions_are_read_up_to_their_end() {
        let src: SocketAddr = "192.0.2.7:51000".parse().unwrap();
        let dst: SocketAddr = "198.51.100.1:443".parse().unwrap();
        let mut bytes = v2(src, dst);
        assert_eq!(bytes.len(), 28);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&bytes),
            header("192.0.2.7:51000", "198.51.100.1:443", 28)
        );
        let six = v2(
            "[2001:db8::7]:51000".parse().unwrap(),
            "[2001:db8::1]:80".parse().unwrap(),
        );
        assert_eq!(
            parse(&six),
            header("[2001:db8::7]:51000", "[2001:db8::1]:80", 52)
        );

        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(line),
            header("192.0.2.7:51000", "198.51.100.1:443", 45)
        );
        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 80\r\n\x16\x03\x01";
        assert_eq!(
            parse(line),
            header("[2001:db8::7]:51000", "[2001:db8::1]:80", 45)
        );
    }

    #[test]
    fn local_and_unknown_keep_the_connections_address() {
        let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
        assert_eq!(
            parse(local),
            Parsed::Header {
                len: 16,
                source: None,
                destination: None
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\nGET"),
            Parsed::Header {
                len: 15,
                source: None,
                destination: None
            }
        );
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let mut v2 = v2(
            "192.0.2.7:1".parse().unwrap(),
            "192.0.2.8:2".parse().unwrap(),
        );
        v2.push(b'G');
        let v1 = b"PROXY TCP4 192.0.2.7 192.0.2.8 1 2\r\nG";
        for whole in [&v2[..], &v1[..]] {
            for cut in 0..whole.len() - 1 {
                assert_eq!(parse(&whole[..cut]), Parsed::Incomplete, "{cut}");
            }
            assert!(matches!(parse(whole), Parsed::Header { .. }));
        }
    }

    #[test]
    fn requests_and_hellos_are_not_headers() {
        for first in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROPFIND /x HTTP/1.1\r\n",
            b"POST / HTTP/1.1\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01",
            b"\r\nGET / HTTP/1.1\r\n",
        ] {
            assert_eq!(parse(first), Parsed::Absent, "{first:?}");
        }
    }

    #[test]
    fn broken_headers_are_malformed() {
        for bad in [
            &b"PROXY TCP4 300.0.0.1 192.0.2.8 1 2\r\n"[..],
            b"PROXY TCP9 192.0.2.7 192.0.2.8 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 192.0.2.8 1 2\n\n",
            // Version 3.
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            // Longer than accepted.
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Malformed(_)),
                "{bad:?}: {:?}",
                parse(bad)
            );
        }
        // A v1 line that never ends.
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(120, b'1');
        assert!(matches!(parse(&long), Parsed::Malformed(_)));
    }

    const LISTED: &str = "127.0.0.0/8";

    fn settings(from: &str) -> ProxyProtocol {
        ProxyProtocol {
            from: vec![from.parse().unwrap()],
            timeout: Duration::from_millis(300),
        }
    }

    /// Connects, writes `pieces` (a pause between them, so that they
    /// arrive as separate segments, as from a slow sender; merged, the
    /// test holds too), keeps the connection open, and reads the header
    /// on the accepted side with `from` listed. Returns the result and
    /// what is left in the socket.
    async fn exchange(from: &str, pieces: &[&[u8]]) -> (Result<Origin, InboundError>, Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            for p in pieces {
                c.write_all(&p).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Open until the test is done with it (aborted below).
            std::future::pending::<()>().await;
            drop(c);
        });
        let (mut s, peer) = listener.accept().await.unwrap();
        let m = crate::metrics::Metrics::new();
        let got = read(&mut s, peer, &settings(from), &m.proxy_headers).await;
        let mut rest = vec![0u8; 64];
        let n = if got.is_ok() {
            tokio::time::timeout(Duration::from_millis(100), s.read(&mut rest))
                .await
                .map_or(0, |r| r.unwrap())
        } else {
            0
        };
        rest.truncate(n);
        client.abort();
        (got, rest)
    }

    #[tokio::test]
    async fn a_listed_source_gives_its_clients_address_and_nothing_more_is_read() {
        let header = v2(
            "192.0.2.7:51000".parse().unwrap(),
            "198.51.100.1:80".parse().unwrap(),
        );
        let mut first = header.clone();
        first.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (got, rest) = exchange(LISTED, &[&first]).await;
        let origin = got.unwrap();
        assert_eq!(origin.client, "192.0.2.7:51000".parse().unwrap());
        assert_eq!(origin.destination, Some("198.51.100.1:80".parse().unwrap()));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");

        // In pieces, the request after it.
        let (got, rest) = exchange(LISTED, &[&header[..3], &header[3..20], &first[20..]]).await;
        assert_eq!(got.unwrap().client, "192.0.2.7:51000".parse().unwrap());
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");

        let (got, rest) = exchange(
            LISTED,
            &[b"PROXY TCP4 192.0.2.9 198.51.100.1 4000 80\r", b"\nGET"],
        )
        .await;
        assert_eq!(got.unwrap().client, "192.0.2.9:4000".parse().unwrap());
        assert_eq!(rest, b"GET");
    }

    #[tokio::test]
    async fn refusals_and_direct_clients() {
        let header = v2(
            "192.0.2.7:51000".parse().unwrap(),
            "198.51.100.1:80".parse().unwrap(),
        );
        // Listed, without a header.
        let (got, _) = exchange(LISTED, &[b"GET / HTTP/1.1\r\n"]).await;
        assert!(matches!(got, Err(InboundError::Missing)), "{got:?}");
        // Listed, a header cut short.
        let (got, _) = exchange(LISTED, &[&header[..20]]).await;
        assert!(matches!(got, Err(InboundError::Timeout(_))), "{got:?}");
        // Listed, silent.
        let (got, _) = exchange(LISTED, &[]).await;
        assert!(matches!(got, Err(InboundError::Timeout(_))), "{got:?}");

        // Not listed: a header is refused, a request served as it came
        // (nothing consumed), even one starting like a signature.
        let elsewhere = "10.9.0.0/16";
        let (got, _) = exchange(elsewhere, &[&header]).await;
        assert!(matches!(got, Err(InboundError::Unexpected)), "{got:?}");
        let (got, _) = exchange(elsewhere, &[b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"]).await;
        assert!(matches!(got, Err(InboundError::Unexpected)), "{got:?}");
        let (got, rest) = exchange(elsewhere, &[b"GET / HTTP/1.1\r\n"]).await;
        assert_eq!(got.unwrap().destination, None);
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (got, rest) = exchange(elsewhere, &[b"PRO", b"PFIND / HTTP/1.1\r\n"]).await;
        assert_eq!(got.unwrap().destination, None);
        assert_eq!(rest, b"PROPFIND / HTTP/1.1\r\n");
        // Silent: handed on to its protocol's own timeout.
        let (got, _) = exchange(elsewhere, &[]).await;
        assert!(got.is_ok(), "{got:?}");
    }
}
