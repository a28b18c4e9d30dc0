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

/// Passes a TLS connection to `to` undecrypted: a PROXY protocol v2
/// header with the client's address first (when `proxy_protocol`), then
/// the ClientHello already read, then both directions until either side
/// closes. Returns the bytes sent each way (client to server first).
pub async fn passthrough(
    mut client: TcpStream,
    hello: &[u8],
    to: SocketAddr,
    proxy_protocol: bool,
    connect_timeout: Duration,
) -> io::Result<(u64, u64)> {
    let mut upstream = tokio::time::timeout(connect_timeout, TcpStream::connect(to))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {to}")))??;
    upstream.set_nodelay(true)?;
    if proxy_protocol {
        let addresses = (client.peer_addr()?, client.local_addr()?);
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
