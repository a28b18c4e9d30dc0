//! A TLS handshake load generator (not a criterion bench: `tls-peers.sh`
//! runs it against predictor and HAProxy in turn).
//!
//!     cargo bench --bench handshakes -- ADDR SNI SECONDS CONNECTIONS full|resumed
//!
//! `CONNECTIONS` tasks on one thread each loop: connect, handshake (TLS
//! 1.3, no ALPN), one `GET /` with `Connection: close`, read to the end
//! (which also takes the session tickets), close. `full` offers no session;
//! `resumed` offers the last ticket of the same task's previous connection.
//! The certificate is not verified (the client's cost per handshake stays
//! below the server's, so one client core can load one server core).
//! Prints one line: connections, per second, how many resumed, errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts any certificate: the load generator measures the server.
#[derive(Debug)]
struct Anything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Anything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Default)]
struct Counts {
    done: AtomicU64,
    resumed: AtomicU64,
    errors: AtomicU64,
}

fn config(resume: bool) -> Arc<rustls::ClientConfig> {
    let provider = predictor::tls::provider();
    let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Anything(provider)))
        .with_no_client_auth();
    if !resume {
        c.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(c)
}

async fn one(
    addr: std::net::SocketAddr,
    name: &ServerName<'static>,
    connector: &tokio_rustls::TlsConnector,
    request: &[u8],
    counts: &Counts,
) -> std::io::Result<()> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(name.clone(), tcp).await?;
    tls.write_all(request).await?;
    let mut sink = Vec::with_capacity(512);
    // A peer closing without close_notify after the answer is fine here.
    let _ = tls.read_to_end(&mut sink).await;
    if !sink.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("not a 200"));
    }
    if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        counts.resumed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [addr, sni, secs, conns, mode] = &args[..] else {
        eprintln!("usage: handshakes ADDR SNI SECONDS CONNECTIONS full|resumed");
        std::process::exit(2);
    };
    let addr: std::net::SocketAddr = addr.parse().expect("ADDR");
    let name = ServerName::try_from(sni.clone()).expect("SNI");
    let secs: f64 = secs.parse().expect("SECONDS");
    let conns: usize = conns.parse().expect("CONNECTIONS");
    let resume = mode == "resumed";
    let request =
        format!("GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").into_bytes();
    let counts = Arc::new(Counts::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    rt.block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|_| {
                // One client config per task: `resumed` resumes the task's
                // own previous session.
                let connector = tokio_rustls::TlsConnector::from(config(resume));
                let (name, request, counts) = (name.clone(), request.clone(), counts.clone());
                tokio::spawn(async move {
                    while Instant::now() < until {
                        match one(addr, &name, &connector, &request, &counts).await {
                            Ok(()) => counts.done.fetch_add(1, Ordering::Relaxed),
                            Err(_) => counts.errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let took = started.elapsed().as_secs_f64();
    let done = counts.done.load(Ordering::Relaxed);
    println!(
        "connections {done} per_second {:.0} resumed {} errors {} seconds {took:.2}",
        done as f64 / took,
        counts.resumed.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
    );
}
