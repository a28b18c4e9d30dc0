//! The first bytes of a TLS connection, read before deciding where it
//! goes: [`peek`] reads the ClientHello (in as many packets and records as
//! it takes, within a time and size bound) and parses it with rustls'
//! `Acceptor`, keeping every byte read so that the connection can still
//! be terminated here ([`Rewind`] gives them back to the handshake) or
//! passed on untouched ([`passthrough`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The largest ClientHello read: a handshake message may span records,
/// but one above 16 KiB plus record headers is not a browser's.
pub const MAX_HELLO: usize = 16 * 1024 + 4 * 5;

/// Why a ClientHello could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("not a TLS ClientHello: {0}")]
    Malformed(rustls::Error),
    #[error("ClientHello larger than {MAX_HELLO} bytes")]
    TooLarge,
    #[error("no complete ClientHello within {0:?}")]
    Timeout(Duration),
    #[error("the client closed before its ClientHello was complete")]
    Closed,
    #[error("reading the ClientHello: {0}")]
    Io(#[from] io::Error),
}

/// Reads the ClientHello: the bytes read, and the server name it asks for
/// (`None` without SNI).
pub async fn peek(
    stream: &mut TcpStream,
    within: Duration,
) -> (Vec<u8>, Result<Option<String>, HelloError>) {
    let mut read = Vec::with_capacity(1024);
    let result = tokio::time::timeout(within, parse(stream, &mut read))
        .await
        .unwrap_or(Err(HelloError::Timeout(within)));
    (read, result)
}

async fn parse(stream: &mut TcpStream, read: &mut Vec<u8>) -> Result<Option<String>, HelloError> {
    use tokio::io::AsyncReadExt;
    let mut acceptor = rustls::server::Acceptor::default();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HelloError::Closed);
        }
        read.extend_from_slice(&chunk[..n]);
        if read.len() > MAX_HELLO {
            return Err(HelloError::TooLarge);
        }
        let mut fresh = &chunk[..n];
        while !fresh.is_empty() {
            if acceptor.read_tls(&mut fresh)? == 0 {
                return Err(HelloError::TooLarge);
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return Ok(accepted.client_hello().server_name().map(str::to_string));
            }
            Ok(None) => continue,
            Err((e, _)) => return Err(HelloError::Malformed(e)),
        }
    }
}

/// A stream that first gives back bytes already read from it.
pub struct Rewind<T> {
    prefix: Vec<u8>,
    at: usize,
    inner: T,
}

impl<T> Rewind<T> {
    pub fn new(prefix: Vec<u8>, inner: T) -> Self {
        Rewind {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    // rustls hands several records at once: one writev, not one write each.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The two addresses of a PROXY header in one family (the header has
/// no way to mix them: a client that came over IPv4 to an IPv6 front is
/// written as an IPv4-mapped IPv6 address rather than lost).
fn one_family(client: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    use std::net::{IpAddr, SocketAddr as S};
    let v6 = |a: S| match a.ip() {
        IpAddr::V4(ip) => S::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    let v4 = |a: S| match a.ip() {
        IpAddr::V6(ip) => ip
            .to_ipv4_mapped()
            .map(|ip| S::new(IpAddr::V4(ip), a.port())),
        IpAddr::V4(_) => Some(a),
    };
    if client.is_ipv4() == destination.is_ipv4() {
        return (client, destination);
    }
    match (v4(client), v4(destination)) {
        (Some(c), Some(d)) => (c, d),
        _ => (v6(client), v6(destination)),
    }
}

/// Where and how a TLS connection is passed through.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    /// The legacy balancer's TLS port.
    pub to: SocketAddr,
    /// Whether a PROXY protocol v2 header goes first.
    pub proxy_protocol: bool,
    pub connect_timeout: Duration,
    /// The client's address (from an L4 tier's PROXY header, or the
    /// socket's peer).
    pub client: SocketAddr,
    /// The address the client connected to, when an L4 tier's PROXY
    /// header named it; the socket's own otherwise.
    pub destination: Option<SocketAddr>,
}

/// Passes a TLS connection undecrypted: a PROXY protocol v2 header with
/// the client's address first (when `proxy_protocol`), then the
/// ClientHello already read, then both directions until either side
/// closes. Returns the bytes sent each way (client to server first).
pub async fn passthrough(
    mut client: TcpStream,
    hello: &[u8],
    pass: Pass,
) -> io::Result<(u64, u64)> {
    let Pass {
        to,
        proxy_protocol,
        connect_timeout,
        ..
    } = pass;
    let mut upstream = tokio::time::timeout(connect_timeout, TcpStream::connect(to))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {to}")))??;
    upstream.set_nodelay(true)?;
    if proxy_protocol {
        let destination = match pass.destination {
            Some(d) => d,
            None => client.local_addr()?,
        };
        let addresses = one_family(pass.client, destination);
        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            addresses,
        )
        .build()
        .map_err(io::Error::other)?;
        upstream.write_all(&header).await?;
    }
    upstream.write_all(hello).await?;
    let (up, down) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok((up + hello.len() as u64, down))
}

#[cfg(test)]
mod tests {
    use super::one_family;

    #[test]
    fn a_proxy_header_gets_both_addresses_in_one_family() {
        let a = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert_eq!(
            one_family(a("192.0.2.7:1"), a("198.51.100.1:443")),
            (a("192.0.2.7:1"), a("198.51.100.1:443"))
        );
        assert_eq!(
            one_family(a("192.0.2.7:1"), a("[2001:db8::1]:443")),
            (a("[::ffff:192.0.2.7]:1"), a("[2001:db8::1]:443"))
        );
        assert_eq!(
            one_family(a("[2001:db8::7]:1"), a("198.51.100.1:443")),
            (a("[2001:db8::7]:1"), a("[::ffff:198.51.100.1]:443"))
        );
        assert_eq!(
            one_family(a("192.0.2.7:1"), a("[::ffff:198.51.100.1]:443")),
            (a("192.0.2.7:1"), a("198.51.100.1:443"))
        );
    }
}
