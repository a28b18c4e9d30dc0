//! A connection on an `https` listener: its ClientHello is read first
//! ([`crate::tls::hello::peek`]) and decides the way ([`way`]): a legacy
//! site without a local certificate is passed to the legacy balancer's
//! TLS port undecrypted (with a PROXY v2 header carrying the client's
//! address); everything else is terminated here, the bytes already read
//! given back to the handshake, and served as HTTP/2 or HTTP/1.1 by ALPN.
//! A ClientHello that is malformed, too large or too slow closes the
//! connection (logged); one without SNI goes as `[tls.passthrough]
//! no_sni` says.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use super::drain::Watcher;
use tokio::net::TcpStream;

use super::inbound::Origin;
use super::worker::{self, Builders};
use crate::config::NoSni;
use crate::proxy::client_io::ConnShared;
use crate::proxy::front;
use crate::proxy::handler::{ConnCtx, WorkerShared};
use crate::routing::{Action, host};
use crate::snapshot::Snapshot;
use crate::tls::hello::{self, HelloError, Rewind};

/// Where a TLS connection goes.
#[derive(Debug, PartialEq, Eq)]
enum Way {
    Terminate,
    Pass {
        to: SocketAddr,
        proxy_protocol: bool,
    },
    Close,
}

/// The way of a connection asking for `sni`.
fn way(snap: &Snapshot, sni: Option<&str>) -> Way {
    let Some(p) = snap
        .config
        .tls
        .as_ref()
        .and_then(|t| t.passthrough.as_ref())
    else {
        return Way::Terminate;
    };
    let pass = Way::Pass {
        to: p.address,
        proxy_protocol: p.proxy_protocol,
    };
    let Some(name) = sni else {
        return match p.no_sni {
            NoSni::Terminate => Way::Terminate,
            NoSni::Legacy => pass,
            NoSni::Close => Way::Close,
        };
    };
    let Ok(h) = host::normalize(name.as_bytes()) else {
        return Way::Terminate;
    };
    if snap.route(&h).action != Action::Legacy {
        return Way::Terminate;
    }
    if p.prefer_local_certificate && snap.certs.lookup(name).is_some() {
        return Way::Terminate;
    }
    pass
}

pub(super) async fn serve(
    worker: Rc<WorkerShared>,
    builders: &Builders,
    watcher: Watcher,
    mut stream: TcpStream,
    origin: Origin,
    shared: Arc<ConnShared>,
    settings: front::Settings,
) {
    let peer = origin.client;
    let handshake = worker
        .snapshot
        .load()
        .config
        .tls
        .as_ref()
        .map(|t| t.handshake_timeout);
    let (Some((acceptor, keys)), Some(handshake)) = (&builders.tls, handshake) else {
        // Validation refuses an https listener without [tls].
        tracing::error!("an https listener without a TLS configuration");
        return;
    };
    let m = worker.metrics.tls.clone();
    let (read, hello) = hello::peek(&mut stream, handshake).await;
    let sni = match hello {
        Ok(sni) => sni,
        Err(e) => {
            match e {
                HelloError::Malformed(_) => m.hellos_malformed.increment(1),
                HelloError::TooLarge => m.hellos_too_large.increment(1),
                HelloError::Timeout(_) => m.handshakes_timeout.increment(1),
                HelloError::Closed | HelloError::Io(_) => m.handshakes_failed.increment(1),
            }
            tracing::debug!(client = %peer, error = %e, "TLS connection closed before its handshake");
            return;
        }
    };
    let (way, connect, cert) = {
        let snap = worker.snapshot.load();
        let way = way(&snap, sni.as_deref());
        // The certificate whose key the handshake will need.
        let cert = match way {
            Way::Terminate => snap.certs.for_handshake(sni.as_deref()).cloned(),
            _ => None,
        };
        (way, snap.config.timeouts.connect, cert)
    };
    match way {
        Way::Terminate => {}
        Way::Close => {
            m.hellos_no_sni_closed.increment(1);
            tracing::debug!(client = %peer, "TLS connection without SNI closed");
            return;
        }
        Way::Pass { to, proxy_protocol } => {
            let pass = hello::Pass {
                to,
                proxy_protocol,
                connect_timeout: connect,
                client: origin.client,
                destination: origin.destination,
            };
            match hello::passthrough(stream, &read, pass).await {
                Ok((up, down)) => {
                    m.passthrough_ok.increment(1);
                    m.passthrough_bytes_in.increment(up);
                    m.passthrough_bytes_out.increment(down);
                    tracing::debug!(client = %peer, legacy = %to, up, down, "TLS passed through")
                }
                Err(e) => {
                    m.passthrough_failed.increment(1);
                    tracing::debug!(client = %peer, legacy = %to, error = %e, "TLS passthrough failed")
                }
            }
            return;
        }
    }
    if let Some(cert) = cert {
        // A key not parsed yet is parsed off this worker.
        keys.prepare(cert).await;
    }
    let accept = acceptor.accept(Rewind::new(read, stream));
    let tls = match tokio::time::timeout(handshake, accept).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            m.handshakes_failed.increment(1);
            tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            m.handshakes_timeout.increment(1);
            tracing::debug!(client = %peer, "TLS handshake timed out");
            return;
        }
    };
    m.handshakes_ok.increment(1);
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let sni = tls
        .get_ref()
        .1
        .server_name()
        .and_then(|n| host::normalize(n.as_bytes()).ok());
    let mut ctx = ConnCtx::new(worker, shared, peer, "https");
    ctx.sni = sni;
    if h2 {
        worker::serve_h2(ctx, builders, watcher, tls, settings).await;
    } else {
        let settings = front::Settings {
            sniff_h2: false,
            tls: true,
            ..settings
        };
        front::serve(&ctx, tls, settings, watcher.signal()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder: new.example migrated, old.example and kept.example on a
    /// legacy filer, a certificate for kept.example; `[tls]` plus `extra`.
    fn snapshot(extra: &str) -> Snapshot {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("certs")).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["kept.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(d.join("certs/kept.pem"), cert.pem() + &key.serialize_pem()).unwrap();
        std::fs::write(
            d.join("predictor.toml"),
            format!(
                "tenants = \"tenants.tsv\"\nmigration = \"migration.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n\
                 [legacy]\naddress = \"127.0.0.1:9\"\n[tiers.web]\npool = \"p\"\n\
                 [pools.p]\nservers = [{{ id = \"a\", address = \"127.0.0.1:10\" }}]\n\
                 [tls]\ncertificates = \"certs\"\n{extra}"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("tenants.tsv"),
            "new.example\tn\tweb\tf-new\nold.example\to\tweb\tf-old\nkept.example\tk\tweb\tf-old\n",
        )
        .unwrap();
        std::fs::write(
            d.join("migration.toml"),
            "default = \"migrated\"\n[filers]\nf-old = \"legacy\"\n",
        )
        .unwrap();
        Snapshot::load(d).unwrap()
    }

    const LEGACY: &str = "[tls.passthrough]\naddress = \"127.0.0.1:4443\"\n";

    fn pass(proxy_protocol: bool) -> Way {
        Way::Pass {
            to: "127.0.0.1:4443".parse().unwrap(),
            proxy_protocol,
        }
    }

    #[test]
    fn legacy_sites_without_a_local_certificate_pass_through() {
        let s = snapshot(LEGACY);
        assert_eq!(way(&s, Some("new.example")), Way::Terminate);
        assert_eq!(way(&s, Some("OLD.example")), pass(true));
        assert_eq!(way(&s, Some("kept.example")), Way::Terminate);
        assert_eq!(way(&s, None), Way::Terminate);

        let s = snapshot(&format!(
            "{LEGACY}prefer_local_certificate = false\nproxy_protocol = false\n"
        ));
        assert_eq!(way(&s, Some("kept.example")), pass(false));
        assert_eq!(way(&s, Some("new.example")), Way::Terminate);

        // Without [tls.passthrough] everything is terminated here.
        assert_eq!(way(&snapshot(""), Some("old.example")), Way::Terminate);
    }

    #[test]
    fn a_hello_without_sni_goes_as_configured() {
        for (setting, expected) in [
            ("terminate", Way::Terminate),
            ("legacy", pass(true)),
            ("close", Way::Close),
        ] {
            let s = snapshot(&format!("{LEGACY}no_sni = \"{setting}\"\n"));
            assert_eq!(way(&s, None), expected, "{setting}");
            assert_eq!(way(&s, Some("old.example")), pass(true), "{setting}");
        }
    }
}
