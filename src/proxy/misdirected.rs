//! `[tls] misdirected`: whether a request may be served on a connection
//! whose TLS was terminated for another name (421 Misdirected Request
//! otherwise, RFC 9110 §15.5.20).

use super::error::ProxyError;
use crate::routing::host;

/// On a connection whose TLS was terminated for `sni`, a request for a
/// host of another tenant (or, with `[tls] misdirected = "host"`, any
/// other host) is refused with 421: a browser reusing a connection
/// across names sharing a certificate must not reach a tenant the
/// handshake did not name. The same name, or two names of one tenant,
/// pass without a second lookup in the common case.
pub(super) fn check(
    snap: &crate::snapshot::Snapshot,
    sni: &host::Host,
    host: &host::Host,
) -> Result<(), ProxyError> {
    use crate::config::Misdirected;
    if sni == host {
        return Ok(());
    }
    let refuse = match snap.config.tls.as_ref().map(|t| t.misdirected) {
        None | Some(Misdirected::Allow) => false,
        Some(Misdirected::Host) => true,
        Some(Misdirected::Tenant) => {
            let tenant = |h: &host::Host| snap.tenants.lookup(h).map(|m| m.tenant);
            tenant(sni) != tenant(host)
        }
    };
    if refuse {
        return Err(ProxyError::Misdirected {
            sni: sni.as_str().to_string(),
            host: host.as_str().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;

    /// a.example and www.a.example are tenant t1, b.example tenant t2.
    fn snapshot(misdirected: &str) -> Snapshot {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("certs")).unwrap();
        std::fs::write(
            d.join("predictor.toml"),
            format!(
                "tenants = \"tenants.tsv\"\nmigration = \"migration.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n\
                 [tiers.web]\npool = \"p\"\n[pools.p]\nservers = [{{ id = \"a\", address = \"127.0.0.1:10\" }}]\n\
                 [tls]\ncertificates = \"certs\"\nmisdirected = \"{misdirected}\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("tenants.tsv"),
            "a.example\tt1\tweb\tf\nwww.a.example\tt1\tweb\tf\nb.example\tt2\tweb\tf\n",
        )
        .unwrap();
        std::fs::write(d.join("migration.toml"), "default = \"migrated\"\n").unwrap();
        Snapshot::load(d).unwrap()
    }

    fn refused(s: &Snapshot, sni: &str, host: &str) -> bool {
        let h = |n: &str| host::normalize(n.as_bytes()).unwrap();
        matches!(
            check(s, &h(sni), &h(host)),
            Err(ProxyError::Misdirected { .. })
        )
    }

    #[test]
    fn misdirected_requests_by_setting() {
        let s = snapshot("tenant");
        assert!(!refused(&s, "a.example", "A.example"));
        assert!(!refused(&s, "a.example", "www.a.example"));
        assert!(refused(&s, "a.example", "b.example"));
        assert!(refused(&s, "a.example", "unknown.example"));

        let s = snapshot("host");
        assert!(!refused(&s, "a.example", "a.example"));
        assert!(refused(&s, "a.example", "www.a.example"));

        let s = snapshot("allow");
        assert!(!refused(&s, "a.example", "b.example"));
    }
}
