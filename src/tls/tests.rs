//! The certificate store and resolver against real rustls handshakes (in
//! memory), with certificates made by rcgen.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::keys::{KeyCache, Resolver};
use super::provider;
use super::store::{CertError, CertIndex};

/// A self-signed certificate for `names` (an IP address is an IP SAN),
/// valid until January 1st of `until` (a year), written with its key to
/// `dir/file`; returns the certificate.
pub(crate) fn write_cert(
    dir: &Path,
    file: &str,
    names: &[&str],
    until: i32,
) -> CertificateDer<'static> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(
        names
            .iter()
            .filter(|n| n.parse::<std::net::IpAddr>().is_err())
            .map(|n| n.to_string())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for n in names {
        if let Ok(ip) = n.parse() {
            params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
        }
    }
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(file), cert.pem() + &key.serialize_pem()).unwrap();
    cert.der().clone()
}

/// Sets a file's modification time a minute back (its stamp is trusted).
pub(crate) fn age(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
        .unwrap();
}

struct Server {
    index: Arc<Mutex<Arc<CertIndex>>>,
    keys: Arc<KeyCache>,
    config: Arc<ServerConfig>,
}

fn server(dir: &Path, default: Option<&str>, capacity: usize) -> (Server, Vec<Arc<CertError>>) {
    let index = CertIndex::scan(dir, default, None).unwrap();
    let refused = index.refused().to_vec();
    let index = Arc::new(Mutex::new(Arc::new(index)));
    let keys = Arc::new(KeyCache::new(capacity, provider()));
    let current = index.clone();
    let resolver = Resolver::new(move || current.lock().unwrap().clone(), keys.clone());
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    (
        Server {
            index,
            keys,
            config: Arc::new(config),
        },
        refused,
    )
}

/// A full handshake in memory; the leaf certificate the client got.
fn handshake(
    server: &Server,
    trusted: &[&CertificateDer<'static>],
    name: &str,
) -> Result<CertificateDer<'static>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    for c in trusted {
        roots.add((*c).clone()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut client = ClientConnection::new(Arc::new(config), name)?;
    let mut srv = ServerConnection::new(server.config.clone())?;
    for _ in 0..10 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        srv.read_tls(&mut buf.as_slice()).unwrap();
        srv.process_new_packets()?;
        let mut buf = Vec::new();
        srv.write_tls(&mut buf).unwrap();
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets()?;
        if !client.is_handshaking() && !srv.is_handshaking() {
            return Ok(client.peer_certificates().unwrap()[0].clone());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn names_aliases_wildcards_and_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = write_cert(d, "a.pem", &["a.example", "www.a.example"], 2031);
    let w = write_cert(d, "w.pem", &["*.w.example"], 2031);
    let def = write_cert(d, "default.pem", &["default.example", "127.0.0.1"], 2031);
    let (s, refused) = server(d, Some("default.pem"), 100);
    assert!(refused.is_empty(), "{refused:?}");
    let all = [&a, &w, &def];

    assert_eq!(handshake(&s, &all, "a.example").unwrap(), a);
    assert_eq!(handshake(&s, &all, "WWW.A.Example").unwrap(), a);
    assert_eq!(handshake(&s, &all, "shop.w.example").unwrap(), w);
    // A wildcard covers one label, not the parent nor deeper names: those
    // get the default certificate, which the client rejects.
    assert!(handshake(&s, &all, "w.example").is_err());
    assert!(handshake(&s, &all, "a.b.w.example").is_err());
    // No SNI (an IP address): the default.
    assert_eq!(handshake(&s, &all, "127.0.0.1").unwrap(), def);

    // Keys were loaded for the certificates used, not for the others.
    let index = s.index.lock().unwrap().clone();
    assert!(s.keys.contains(index.lookup("a.example").unwrap()));
    assert!(s.keys.contains(index.by_file("default.pem").unwrap()));
    let (only_indexed, _) = {
        let dir2 = tempfile::tempdir().unwrap();
        write_cert(dir2.path(), "x.pem", &["x.example"], 2031);
        server(dir2.path(), None, 100)
    };
    let idx = only_indexed.index.lock().unwrap().clone();
    assert!(!only_indexed.keys.contains(idx.lookup("x.example").unwrap()));
}

#[test]
fn without_a_default_unknown_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_cert(dir.path(), "a.pem", &["a.example"], 2031);
    let (s, _) = server(dir.path(), None, 100);
    assert!(handshake(&s, &[&a], "b.example").is_err());
    assert_eq!(handshake(&s, &[&a], "a.example").unwrap(), a);
}

#[test]
fn bad_files_are_refused_by_name_and_the_others_serve() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = write_cert(d, "a.pem", &["a.example"], 2031);
    std::fs::write(d.join("garbage.pem"), "not a certificate\n").unwrap();
    // A certificate without its key.
    write_cert(d, "nokey.pem", &["nokey.example"], 2031);
    let text = std::fs::read_to_string(d.join("nokey.pem")).unwrap();
    let cert_only = &text[..text.find("-----BEGIN PRIVATE KEY").unwrap()];
    std::fs::write(d.join("nokey.pem"), cert_only).unwrap();
    // A certificate with another certificate's key: indexed (keys are
    // not parsed up front), refused at first use.
    let m = write_cert(d, "mismatch.pem", &["mismatch.example"], 2031);
    write_cert(d, "other.pem", &["other.example"], 2031);
    let other = std::fs::read_to_string(d.join("other.pem")).unwrap();
    let mine = std::fs::read_to_string(d.join("mismatch.pem")).unwrap();
    let key_at = |t: &str| t.find("-----BEGIN PRIVATE KEY").unwrap();
    std::fs::write(
        d.join("mismatch.pem"),
        format!("{}{}", &mine[..key_at(&mine)], &other[key_at(&other)..]),
    )
    .unwrap();
    std::fs::write(d.join("notes.txt"), "ignored: not a .pem file").unwrap();

    let (s, refused) = server(d, None, 100);
    let mut why: Vec<String> = refused.iter().map(|e| e.to_string()).collect();
    why.sort();
    assert_eq!(why.len(), 2, "{why:?}");
    assert!(
        why[0].contains("garbage.pem") && why[0].contains("no certificate"),
        "{why:?}"
    );
    assert!(
        why[1].contains("nokey.pem") && why[1].contains("no usable private key"),
        "{why:?}"
    );
    assert_eq!(handshake(&s, &[&a], "a.example").unwrap(), a);
    assert!(handshake(&s, &[&m], "mismatch.example").is_err());
    let index = s.index.lock().unwrap().clone();
    match s.keys.get(index.lookup("mismatch.example").unwrap()) {
        Err(CertError::KeyMismatch { path }) => assert!(path.ends_with("mismatch.pem")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rotated_certificate_is_served_and_unchanged_files_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = write_cert(d, "a.pem", &["a.example"], 2029);
    let b = write_cert(d, "b.pem", &["b.example"], 2031);
    age(&d.join("a.pem"));
    age(&d.join("b.pem"));
    let (s, _) = server(d, None, 100);
    assert_eq!(handshake(&s, &[&old], "a.example").unwrap(), old);

    let new = write_cert(d, "a.pem", &["a.example"], 2031);
    let previous = s.index.lock().unwrap().clone();
    let next = CertIndex::scan(d, None, Some(&previous)).unwrap();
    assert!(next.refused().is_empty());
    assert!(Arc::ptr_eq(
        previous.lookup("b.example").unwrap(),
        next.lookup("b.example").unwrap()
    ));
    assert_ne!(
        previous.lookup("a.example").unwrap().id,
        next.lookup("a.example").unwrap().id
    );
    *s.index.lock().unwrap() = Arc::new(next);
    assert_eq!(handshake(&s, &[&old, &new], "a.example").unwrap(), new);
    assert_eq!(handshake(&s, &[&b], "b.example").unwrap(), b);
}

#[test]
fn of_two_certificates_for_a_name_the_one_valid_longest_wins() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_cert(d, "1-old.pem", &["a.example"], 2028);
    let renewed = write_cert(d, "2-new.pem", &["a.example"], 2031);
    write_cert(d, "3-older.pem", &["a.example"], 2027);
    let (s, _) = server(d, None, 100);
    assert_eq!(handshake(&s, &[&renewed], "a.example").unwrap(), renewed);
}

#[test]
fn a_small_cache_still_serves_every_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs: Vec<_> = (0..5)
        .map(|i| {
            write_cert(
                dir.path(),
                &format!("{i}.pem"),
                &[&format!("s{i}.example")],
                2031,
            )
        })
        .collect();
    let (s, _) = server(dir.path(), None, 2);
    for _ in 0..2 {
        for (i, c) in certs.iter().enumerate() {
            assert_eq!(handshake(&s, &[c], &format!("s{i}.example")).unwrap(), *c);
        }
    }
}

#[test]
fn an_update_looks_only_at_the_files_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_cert(d, "a.pem", &["a.example"], 2029);
    write_cert(d, "b.pem", &["b.example"], 2031);
    std::fs::write(d.join("bad.pem"), "junk").unwrap();
    for f in ["a.pem", "b.pem", "bad.pem"] {
        age(&d.join(f));
    }
    let first = CertIndex::scan(d, Some("b.pem"), None).unwrap();
    assert_eq!(first.refused().len(), 1);
    let named = |names: &[&str]| -> std::collections::BTreeSet<std::path::PathBuf> {
        names.iter().map(|n| d.join(n)).collect()
    };
    assert!(first.holds(&named(&["a.pem", "b.pem", "gone.pem", "notes.txt"])));
    assert!(
        !first.holds(&named(&["bad.pem"])),
        "a refused file is read again"
    );

    // a.pem renewed, c.pem added, bad.pem fixed, b.pem removed: an update
    // naming only a.pem and c.pem sees those two, and keeps the rest as
    // it was (b.pem still served, bad.pem still refused).
    let renewed = write_cert(d, "a.pem", &["a.example"], 2032);
    let c = write_cert(d, "c.pem", &["*.c.example"], 2031);
    write_cert(d, "bad.pem", &["fixed.example"], 2031);
    std::fs::remove_file(d.join("b.pem")).unwrap();
    assert!(!first.holds(&named(&["a.pem"])));
    assert!(!first.holds(&named(&["c.pem"])));
    assert!(!first.holds(&named(&["b.pem"])));
    let next = first.update(&named(&["a.pem", "c.pem"]), Some("b.pem"));
    assert_ne!(
        next.lookup("a.example").unwrap().id,
        first.lookup("a.example").unwrap().id
    );
    assert!(next.lookup("x.c.example").is_some());
    assert!(Arc::ptr_eq(
        next.lookup("b.example").unwrap(),
        first.lookup("b.example").unwrap()
    ));
    assert_eq!(next.for_handshake(None).unwrap().path, d.join("b.pem"));
    assert_eq!(next.refused().len(), 1);
    assert!(next.lookup("fixed.example").is_none());

    // Then the other two are reported: b.pem goes (and the default with
    // it), bad.pem is indexed; a file outside the folder is ignored.
    let outside = tempfile::tempdir().unwrap();
    write_cert(outside.path(), "o.pem", &["o.example"], 2031);
    let mut changed = named(&["b.pem", "bad.pem"]);
    changed.insert(outside.path().join("o.pem"));
    let last = next.update(&changed, Some("b.pem"));
    assert!(last.lookup("b.example").is_none());
    assert!(last.for_handshake(None).is_none());
    assert!(last.lookup("fixed.example").is_some());
    assert!(last.lookup("o.example").is_none());
    assert!(last.refused().is_empty());
    let names: Vec<_> = last.files().iter().map(|f| f.path.clone()).collect();
    assert_eq!(
        names,
        vec![d.join("a.pem"), d.join("bad.pem"), d.join("c.pem")]
    );

    let (s, _) = server(d, None, 10);
    *s.index.lock().unwrap() = Arc::new(last);
    assert_eq!(
        handshake(&s, &[&renewed], "a.example").unwrap(),
        renewed,
        "the renewed certificate is served"
    );
    assert_eq!(handshake(&s, &[&c], "x.c.example").unwrap(), c);
}

#[tokio::test]
async fn a_key_is_prepared_off_the_handshake_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_cert(dir.path(), "a.pem", &["a.example"], 2031);
    let (s, _) = server(dir.path(), None, 10);
    let file = s.index.lock().unwrap().lookup("a.example").unwrap().clone();
    assert!(!s.keys.contains(&file));
    s.keys.prepare(file.clone()).await;
    assert!(s.keys.contains(&file), "parsed before the handshake");
    assert_eq!(handshake(&s, &[&a], "a.example").unwrap(), a);
}
