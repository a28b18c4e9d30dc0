//! HTTPS termination: rustls on an `https` listener, the certificate of
//! each handshake from the certificate folder by SNI (exact, wildcard,
//! default), HTTP/2 or HTTP/1.1 by ALPN, and a certificate rotated on disk
//! picked up by the folder watch without a restart.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use predictor::reload::{Reloader, watch};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::support::backend::Backend;
use crate::support::{
    Answer, Folder, Proxy, WAIT, config_toml, eventually, get_on, h1_over, metric, read,
};

/// A self-signed certificate for `names` (an IP address as an IP SAN),
/// written with its key to `dir/certs/file`.
fn write_cert(dir: &Path, file: &str, names: &[&str]) -> CertificateDer<'static> {
    let key = rcgen::KeyPair::generate().unwrap();
    let (ips, dns): (Vec<&str>, Vec<&str>) = names
        .iter()
        .partition(|n| n.parse::<std::net::IpAddr>().is_ok());
    let mut params =
        rcgen::CertificateParams::new(dns.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    for ip in ips {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(ip.parse().unwrap()));
    }
    let cert = params.self_signed(&key).unwrap();
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(
        dir.join("certs").join(file),
        cert.pem() + &key.serialize_pem(),
    )
    .unwrap();
    cert.der().clone()
}

/// `predictor.toml` with one `https` listener, the pool `web`, then `extra`.
fn https_toml(web: &Backend, extra: &str) -> String {
    config_toml(&[("web", vec![("w", web.addr)])], None, "").replace(
        "[[listen]]\naddress = \"127.0.0.1:0\"\n",
        "[[listen]]\naddress = \"127.0.0.1:0\"\nprotocol = \"https\"\n",
    ) + extra
}

fn folder(web: &Backend) -> Folder {
    let toml = https_toml(
        web,
        "[tls]\ncertificates = \"certs\"\ndefault_certificate = \"default.pem\"\n",
    );
    Folder::new(
        &toml,
        "s.example\tt\tweb\tf\n*.w.example\tt\tweb\tf\no.example\to\tweb\tf\n",
        "default = \"migrated\"\n",
    )
}

/// A TLS connection and the certificate the server presented.
type Opened = std::io::Result<(
    tokio_rustls::client::TlsStream<TcpStream>,
    CertificateDer<'static>,
)>;

/// A TLS connection to `addr` for `name`, trusting `roots`, offering
/// `alpn`; the certificate presented and the protocol agreed.
async fn connect(
    addr: std::net::SocketAddr,
    name: &str,
    roots: &[&CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Opened {
    let tcp = TcpStream::connect(addr).await?;
    handshake(tcp, name, roots, alpn).await
}

/// [`connect`] over a connection already open.
async fn handshake(
    tcp: TcpStream,
    name: &str,
    roots: &[&CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Opened {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add((*r).clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(predictor::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = tokio::time::timeout(
        WAIT,
        connector.connect(ServerName::try_from(name.to_string()).unwrap(), tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))??;
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok((tls, cert))
}

/// Connects for `name` trusting `cert` alone: `cert` is what the server
/// presents, and a GET for `name` gets `status`.
async fn served(
    addr: std::net::SocketAddr,
    name: &str,
    cert: &CertificateDer<'static>,
    status: u16,
) {
    let (tls, got) = connect(addr, name, &[cert], &[]).await.unwrap();
    assert_eq!(&got, cert, "{name}");
    assert_eq!(get_h1(tls, name).await.status, status, "{name}");
}

async fn get_h1(tls: tokio_rustls::client::TlsStream<TcpStream>, host: &str) -> Answer {
    get_on(&mut h1_over(tls).await, host, "/").await
}

/// The status of a GET for each of `hosts` in turn, on one HTTP/1.1
/// connection.
async fn statuses_on(tls: tokio_rustls::client::TlsStream<TcpStream>, hosts: &[&str]) -> Vec<u16> {
    let mut s = h1_over(tls).await;
    let mut out = Vec::new();
    for host in hosts {
        out.push(get_on(&mut s, host, "/").await.status.as_u16());
    }
    out
}

#[tokio::test]
async fn https_serves_each_site_its_certificate_over_http1_and_http2() {
    let web = Backend::start("web").await;
    let f = folder(&web);
    let site = write_cert(f.path(), "s.pem", &["s.example"]);
    let wild = write_cert(f.path(), "w.pem", &["*.w.example"]);
    let default = write_cert(f.path(), "default.pem", &["default.example", "127.0.0.1"]);
    let proxy = Proxy::start(&f);
    let all = [&site, &wild, &default];

    // HTTP/1.1 by ALPN, exact name.
    let (tls, cert) = connect(proxy.addr, "s.example", &all, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(cert, site);
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let a = get_h1(tls, "s.example").await;
    assert_eq!(a.status, 200, "{a:?}");
    let seen = web.last();
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));

    // HTTP/2 by ALPN, wildcard name.
    let (tls, cert) = connect(proxy.addr, "shop.w.example", &all, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(cert, wild);
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut s, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://shop.w.example/x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, s.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    let a = read(resp).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(web.last().uri, "/x");

    // Without SNI (a client connecting to an IP address): the default
    // certificate. A name without a certificate gets it too, and a client
    // checking the name refuses it.
    let (_, cert) = connect(proxy.addr, "127.0.0.1", &all, &[]).await.unwrap();
    assert_eq!(cert, default);
    assert!(
        connect(proxy.addr, "other.example", &all, &[])
            .await
            .is_err()
    );
    // The site still answers after those failed handshakes.
    let (tls, _) = connect(proxy.addr, "s.example", &all, &[]).await.unwrap();
    assert_eq!(get_h1(tls, "s.example").await.status, 200);

    // On a connection opened for s.example, a Host of the same tenant
    // passes; another tenant's gets 421 and never reaches a webserver.
    let (tls, _) = connect(proxy.addr, "s.example", &all, &[]).await.unwrap();
    let before = web.seen().len();
    assert_eq!(
        statuses_on(tls, &["shop.w.example", "o.example", "s.example"]).await,
        [200, 421, 200]
    );
    assert_eq!(web.seen().len(), before + 2);

    // Five handshakes completed, one refused by the client (failed on this
    // side too: the client aborts after the certificate). Keys were parsed
    // once per certificate used (3), then found in the cache (3).
    let m = |s: &str| metric(proxy.server(), s);
    eventually("the handshake counts", || {
        m("predictor_tls_handshakes_total{result=\"ok\"}") == 5.0
            && m("predictor_tls_handshakes_total{result=\"failed\"}") == 1.0
    })
    .await;
    assert_eq!(m("predictor_tls_key_cache_total{result=\"miss\"}"), 3.0);
    assert_eq!(m("predictor_tls_key_cache_total{result=\"hit\"}"), 3.0);
    let snap = proxy.server().snapshot().load();
    let mut text = String::new();
    predictor::admin::scrape::certificates(&mut text, &snap, 0);
    assert!(text.contains("predictor_tls_certificates 3\n"), "{text}");
    assert!(
        text.contains("predictor_tls_certificates_expiring 0\n"),
        "{text}"
    );
    // Far in the future every certificate has expired.
    let mut text = String::new();
    predictor::admin::scrape::certificates(&mut text, &snap, 1 << 40);
    assert!(
        text.contains("predictor_tls_certificates_expiring 3\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let web = Backend::start("web").await;
    let f = folder(&web);
    let old = write_cert(f.path(), "s.pem", &["s.example"]);
    write_cert(f.path(), "default.pem", &["default.example"]);
    let snapshot = predictor::snapshot::Snapshot::load(f.path()).unwrap();
    let proxy = Proxy::from_server(predictor::server::Server::start(snapshot).unwrap());
    let reloader = Arc::new(Reloader::new(
        proxy.server().snapshot().clone(),
        f.path(),
        proxy.server().metrics().clone(),
    ));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(watch(reloader.clone(), stopped));
    eventually("the watch to start", || reloader.watching()).await;

    let (_, cert) = connect(proxy.addr, "s.example", &[&old], &[])
        .await
        .unwrap();
    assert_eq!(cert, old);
    let generation = proxy.server().snapshot().load().generation;

    // Renewed: a new file renamed over the old one, as certbot's deploy
    // hooks and cert-manager do.
    let tmp = tempfile::tempdir().unwrap();
    let new = write_cert(tmp.path(), "s.pem", &["s.example"]);
    std::fs::rename(tmp.path().join("certs/s.pem"), f.path().join("certs/s.pem")).unwrap();
    eventually("the renewed certificate to load", || {
        proxy.server().snapshot().load().generation > generation
    })
    .await;
    served(proxy.addr, "s.example", &new, 200).await;

    // A Kubernetes Secret mounted in the folder: `k.pem` is a symlink
    // through `..data` into a timestamped folder, and an update swaps
    // `..data` (no event names `k.pem`): the whole folder is looked at.
    let certs = f.path().join("certs");
    let secret = |version: &str| {
        let tmp = tempfile::tempdir().unwrap();
        let cert = write_cert(tmp.path(), "k.pem", &["k.w.example"]);
        std::fs::create_dir(certs.join(version)).unwrap();
        std::fs::rename(
            tmp.path().join("certs/k.pem"),
            certs.join(version).join("k.pem"),
        )
        .unwrap();
        std::os::unix::fs::symlink(version, certs.join("..data_tmp")).unwrap();
        std::fs::rename(certs.join("..data_tmp"), certs.join("..data")).unwrap();
        cert
    };
    let first = secret("..2026_11_30_1");
    std::os::unix::fs::symlink("..data/k.pem", certs.join("k.pem")).unwrap();
    eventually("the Secret's certificate to load", || {
        proxy
            .server()
            .snapshot()
            .load()
            .certs
            .lookup("k.w.example")
            .is_some()
    })
    .await;
    served(proxy.addr, "k.w.example", &first, 200).await;
    let generation = proxy.server().snapshot().load().generation;
    let second = secret("..2026_11_30_2");
    eventually("the Secret's update to load", || {
        proxy.server().snapshot().load().generation > generation
    })
    .await;
    served(proxy.addr, "k.w.example", &second, 200).await;
}

/// `misdirected = "host"` and `"allow"` on one connection opened for
/// s.example (tenant t, like shop.w.example; o.example is tenant o), and
/// `no_sni = "close"`: a connection without SNI is closed before any
/// handshake, counted, and the listener keeps serving.
#[tokio::test]
async fn misdirected_modes_and_connections_without_sni() {
    let web = Backend::start("web").await;
    for (mode, expected) in [("host", [200, 421, 421]), ("allow", [200, 200, 200])] {
        let toml = https_toml(
            &web,
            &format!(
                "[legacy]\naddress = \"127.0.0.1:9\"\n\
                 [tls]\ncertificates = \"certs\"\nmisdirected = \"{mode}\"\n\
                 [tls.passthrough]\naddress = \"127.0.0.1:9\"\nno_sni = \"close\"\n"
            ),
        );
        let f = Folder::new(
            &toml,
            "s.example\tt\tweb\tf\n*.w.example\tt\tweb\tf\no.example\to\tweb\tf\n",
            "default = \"migrated\"\n",
        );
        let site = write_cert(f.path(), "s.pem", &["s.example", "127.0.0.1"]);
        let proxy = Proxy::start(&f);
        let before = web.seen().len();
        let (tls, _) = connect(proxy.addr, "s.example", &[&site], &[])
            .await
            .unwrap();
        assert_eq!(
            statuses_on(tls, &["s.example", "shop.w.example", "o.example"]).await,
            expected,
            "misdirected = {mode}"
        );
        let forwarded = expected.iter().filter(|s| **s == 200).count();
        assert_eq!(
            web.seen().len(),
            before + forwarded,
            "421s are not forwarded"
        );

        assert!(
            connect(proxy.addr, "127.0.0.1", &[&site], &[])
                .await
                .is_err(),
            "no SNI: closed"
        );
        let m = |s: &str| metric(proxy.server(), s);
        eventually("the closed hello to count", || {
            m("predictor_tls_handshakes_total{result=\"no_sni_closed\"}") == 1.0
        })
        .await;
        served(proxy.addr, "s.example", &site, 200).await;
    }
}

/// The legacy cluster's site behind its HAProxy: reads the PROXY v2 header
/// HAProxy sends (the client's address as HAProxy got it, the SNI in the
/// authority TLV), then one request, and answers with both.
async fn legacy_site() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = vec![0u8; 16];
                s.read_exact(&mut head).await.unwrap();
                let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
                head.resize(16 + len, 0);
                s.read_exact(&mut head[16..]).await.unwrap();
                let h = ppp::v2::Header::try_from(&head[..]).unwrap();
                let ppp::v2::Addresses::IPv4(a) = h.addresses else {
                    panic!("{h:?}")
                };
                let sni = h
                    .tlvs()
                    .filter_map(Result::ok)
                    .find(|t| t.kind == ppp::v2::Type::Authority as u8)
                    .map(|t| String::from_utf8_lossy(&t.value).into_owned())
                    .unwrap_or_default();
                let mut req = Vec::new();
                while !req.ends_with(b"\r\n\r\n") {
                    let mut b = [0u8; 1];
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    req.push(b[0]);
                }
                let body = format!("legacy from {} for {sni}", a.source_address);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// Passthrough: a legacy site's TLS goes undecrypted to a real HAProxy
/// in TCP mode (`accept-proxy`, its own certificate, a site behind it);
/// the session completes with the legacy certificate, and the client's
/// address from predictor's PROXY v2 header goes on to the site (the
/// client connects from 127.0.0.2, predictor from 127.0.0.1). A migrated
/// site on the same listener is terminated here, and so is a legacy site
/// whose certificate is in the folder.
#[tokio::test]
async fn legacy_sites_pass_through_to_haproxy_with_the_client_address() {
    use crate::support::haproxy::{Haproxy, available, free_port};
    if !available("legacy_sites_pass_through_to_haproxy_with_the_client_address") {
        return;
    }
    let web = Backend::start("web").await;
    let legacy_cert_dir = tempfile::tempdir().unwrap();
    let legacy_cert = write_cert(
        legacy_cert_dir.path(),
        "legacy.pem",
        &["old.example", "127.0.0.1"],
    );
    let crt = legacy_cert_dir.path().join("certs/legacy.pem");
    let port = free_port();
    let site_addr = legacy_site().await;
    let haproxy = Haproxy::start_on(
        port,
        &format!(
            "frontend legacy_tls\n  mode tcp\n  bind 127.0.0.1:{{port}} accept-proxy ssl crt {}\n  \
             default_backend sites\n\
             backend sites\n  mode tcp\n  server site {site_addr} send-proxy-v2 proxy-v2-options authority\n",
            crt.display()
        ),
    );
    let toml = https_toml(&web, "")
        + &format!(
            "[legacy]\naddress = \"127.0.0.1:9\"\n\
             [tls]\ncertificates = \"certs\"\n\
             [tls.passthrough]\naddress = \"{}\"\nno_sni = \"legacy\"\n",
            haproxy.addr
        );
    let f = Folder::new(
        &toml,
        "s.example\tt\tweb\tf-new\nold.example\to\tweb\tf-old\nkept.example\tk\tweb\tf-old\n",
        "default = \"migrated\"\n[filers]\nf-old = \"legacy\"\n",
    );
    let site = write_cert(f.path(), "s.pem", &["s.example"]);
    let kept = write_cert(f.path(), "kept.pem", &["kept.example"]);
    let proxy = Proxy::start(&f);

    // From 127.0.0.2, so that the address HAProxy reports is the client's.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = socket.connect(proxy.addr).await.unwrap();
    let (tls, cert) = handshake(tcp, "old.example", &[&legacy_cert], &[])
        .await
        .unwrap();
    assert_eq!(
        cert, legacy_cert,
        "the legacy side's certificate, end to end"
    );
    let a = get_h1(tls, "old.example").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body, "legacy from 127.0.0.2 for old.example");
    assert!(web.seen().is_empty());

    // Without SNI (`no_sni = "legacy"`): passed too, no authority on.
    let (tls, cert) = connect(proxy.addr, "127.0.0.1", &[&legacy_cert], &[])
        .await
        .unwrap();
    assert_eq!(cert, legacy_cert);
    let a = get_h1(tls, "old.example").await;
    assert_eq!(a.body, "legacy from 127.0.0.1 for ");

    // Migrated: terminated here with the folder's certificate.
    served(proxy.addr, "s.example", &site, 200).await;
    // Legacy, but with a local certificate: terminated here, then sent to
    // the legacy balancer over HTTP (down here: 502), not passed through.
    served(proxy.addr, "kept.example", &kept, 502).await;

    let m = |s: &str| metric(proxy.server(), s);
    eventually("the passthrough counts", || {
        m("predictor_tls_passthrough_connections_total{result=\"ok\"}") == 2.0
    })
    .await;
    assert!(m("predictor_tls_passthrough_bytes_total{direction=\"in\"}") > 200.0);
    assert!(m("predictor_tls_passthrough_bytes_total{direction=\"out\"}") > 200.0);
    assert_eq!(m("predictor_tls_handshakes_total{result=\"ok\"}"), 2.0);
}

/// ClientHellos that are not: garbage, a hello cut short and left hanging,
/// one far too large. Each is closed (the hanging one after the handshake
/// timeout), and the listener keeps serving.
#[tokio::test]
async fn bad_and_slow_client_hellos_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let web = Backend::start("web").await;
    let f = Folder::new(
        &https_toml(
            &web,
            "[tls]\ncertificates = \"certs\"\nhandshake_timeout = \"300ms\"\n",
        ),
        "s.example\tt\tweb\tf\n",
        "default = \"migrated\"\n",
    );
    let site = write_cert(f.path(), "s.pem", &["s.example"]);
    let proxy = Proxy::start(&f);

    let closed = |mut s: TcpStream| async move {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        // Closed, perhaps after a TLS alert (record type 21).
        assert!(
            n == 0 || buf[0] == 21,
            "got {n} bytes: {:?}",
            &buf[..n.min(16)]
        );
    };
    // Not TLS at all.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: s.example\r\n\r\n")
        .await
        .unwrap();
    closed(s).await;
    // A record header announcing a hello that never comes in full.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&[22, 3, 1, 0x02, 0x00, 1, 0, 1]).await.unwrap();
    let started = std::time::Instant::now();
    closed(s).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    // A hello claiming to be huge, sent in many small records.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut junk = vec![22, 3, 1, 0x40, 0x00, 1, 0xff, 0xff, 0xff];
    junk.resize(5 + 0x4000, 0);
    for _ in 0..3 {
        if s.write_all(&junk).await.is_err() {
            break;
        }
    }
    closed(s).await;

    let (tls, _) = connect(proxy.addr, "s.example", &[&site], &[])
        .await
        .unwrap();
    assert_eq!(get_h1(tls, "s.example").await.status, 200);

    let m = |s: &str| metric(proxy.server(), s);
    assert_eq!(m("predictor_tls_handshakes_total{result=\"timeout\"}"), 1.0);
    assert_eq!(
        m("predictor_tls_handshakes_total{result=\"malformed\"}")
            + m("predictor_tls_handshakes_total{result=\"too_large\"}"),
        2.0
    );
}

/// A client coming back resumes its session (a ticket from the first
/// connection) instead of a full handshake.
#[tokio::test]
async fn a_returning_client_resumes_its_session() {
    let web = Backend::start("web").await;
    let f = folder(&web);
    let site = write_cert(f.path(), "s.pem", &["s.example"]);
    write_cert(f.path(), "default.pem", &["default.example"]);
    let proxy = Proxy::start(&f);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(site).unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(predictor::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(proxy.addr).await.unwrap();
        let name = ServerName::try_from("s.example").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        kinds.push(tls.get_ref().1.handshake_kind());
        // A request and its answer: the session ticket comes with them.
        assert_eq!(get_h1(tls, "s.example").await.status, 200);
    }
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}

/// A ClientHello cut into many TLS records (64-byte fragments), written
/// in many small packets with pauses between them, is read whole: the
/// handshake completes and the request is served.
#[tokio::test]
async fn a_client_hello_in_many_records_and_packets_is_served() {
    let web = Backend::start("web").await;
    let f = Folder::new(
        &https_toml(&web, "[tls]\ncertificates = \"certs\"\n"),
        "s.example\tt\tweb\tf\n",
        "default = \"migrated\"\n",
    );
    let site = write_cert(f.path(), "s.pem", &["s.example"]);
    let proxy = Proxy::start(&f);
    let addr = proxy.addr;
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(site).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(predictor::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.max_fragment_size = Some(64);
        let name = ServerName::try_from("s.example").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut hello = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut hello).unwrap();
        }
        let records = {
            let (mut n, mut at) = (0, 0);
            while at + 5 <= hello.len() {
                at += 5 + usize::from(u16::from_be_bytes([hello[at + 3], hello[at + 4]]));
                n += 1;
            }
            n
        };
        assert!(records >= 4, "{records} records");
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        for piece in hello.chunks(37) {
            tcp.write_all(piece).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(b"GET / HTTP/1.1\r\nHost: s.example\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        // The server may close without close_notify after the answer.
        let _ = tls.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn status_names_the_refused_certificate_files() {
    let web = Backend::start("web").await;
    let toml = https_toml(
        &web,
        "[tls]\ncertificates = \"certs\"\n[admin]\naddress = \"127.0.0.1:0\"\n",
    );
    let f = Folder::new(&toml, "s.example\tt\tweb\tf\n", "default = \"migrated\"\n");
    write_cert(f.path(), "s.pem", &["s.example"]);
    std::fs::write(f.path().join("certs/broken.pem"), "not a certificate\n").unwrap();
    let proxy = Proxy::start(&f);
    let admin = proxy.server().admin_addr().unwrap();
    let status = crate::support::get(admin, "admin", "/status").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    let certs = &v["certificates"];
    assert_eq!(certs["indexed"], 1, "{certs}");
    assert_eq!(certs["expiring"], 0, "{certs}");
    let refused = certs["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{certs}");
    let why = refused[0].as_str().unwrap();
    assert!(
        why.contains("broken.pem") && why.contains("no certificate"),
        "{why}"
    );
}

/// Behind an L4 tier on an `https` listener: the balancer's PROXY header
/// is read before the ClientHello. A terminated site's webserver gets the
/// visitor in `X-Forwarded-For`; a legacy site passed through undecrypted
/// gets a PROXY v2 header naming the visitor and the address the visitor
/// connected to (not the balancer's connection).
#[tokio::test]
async fn an_l4_tiers_proxy_header_comes_before_tls_and_on_through_passthrough() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let web = Backend::start("web").await;
    // The legacy TLS port: reports the PROXY header predictor sends.
    let legacy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let legacy_addr = legacy.local_addr().unwrap();
    let (told, mut heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = legacy.accept().await {
            let mut head = [0u8; 28];
            if s.read_exact(&mut head).await.is_ok() {
                let _ = told.send(head.to_vec());
            }
        }
    });
    let toml = https_toml(&web, "").replace(
        "protocol = \"https\"\n",
        "protocol = \"https\"\nproxy_protocol = [\"127.0.0.1\"]\n",
    ) + &format!(
        "[legacy]\naddress = \"127.0.0.1:9\"\n[tls]\ncertificates = \"certs\"\n\
         [tls.passthrough]\naddress = \"{legacy_addr}\"\n"
    );
    let f = Folder::new(
        &toml,
        "s.example\tt\tweb\tf-new\nold.example\to\tweb\tf-old\n",
        "default = \"migrated\"\n[filers]\nf-old = \"legacy\"\n",
    );
    let site = write_cert(f.path(), "s.pem", &["s.example"]);
    let proxy = Proxy::start(&f);
    let front: std::net::SocketAddr = "198.51.100.1:443".parse().unwrap();
    let header = |visitor: &str| {
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (visitor.parse::<std::net::SocketAddr>().unwrap(), front),
        )
        .build()
        .unwrap()
    };

    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(&header("192.0.2.7:40000")).await.unwrap();
    let (tls, cert) = handshake(tcp, "s.example", &[&site], &[]).await.unwrap();
    assert_eq!(cert, site);
    assert_eq!(get_h1(tls, "s.example").await.status, 200);
    assert_eq!(web.last().header("x-forwarded-for"), Some("192.0.2.7"));
    assert_eq!(web.last().header("x-forwarded-proto"), Some("https"));

    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(&header("192.0.2.8:40001")).await.unwrap();
    // The legacy side never answers the handshake: only its PROXY header
    // is looked at.
    let roots = [&site];
    let hello = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        handshake(tcp, "old.example", &roots, &[]),
    );
    let (_, got) = tokio::join!(hello, tokio::time::timeout(WAIT, heard.recv()));
    let got = got.unwrap().unwrap();
    let got = ppp::v2::Header::try_from(&got[..]).unwrap();
    let ppp::v2::Addresses::IPv4(a) = got.addresses else {
        panic!("{got:?}")
    };
    assert_eq!(
        (a.source_address.to_string(), a.source_port),
        ("192.0.2.8".to_string(), 40001)
    );
    assert_eq!(
        std::net::SocketAddr::from((a.destination_address, a.destination_port)),
        front
    );
}
