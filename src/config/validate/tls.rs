//! `[tls]`: the certificate folder of the `https` listeners.

use super::super::raw::{RawTls, Spanned};
use super::super::{Collector, Misdirected, TlsSettings};
use super::values::{duration, int};

pub(super) fn tls(
    c: &mut Collector<'_>,
    raw: Spanned<RawTls>,
    dir: &std::path::Path,
) -> Option<TlsSettings> {
    let raw = raw.into_inner();
    let folder = raw.certificates.get_ref();
    if folder.is_empty() {
        c.at(
            raw.certificates.span(),
            "tls.certificates",
            "expected a folder of certificate files (*.pem), relative to the config folder",
        );
    }
    let default_certificate = match raw.default_certificate {
        Some(f) if f.get_ref().is_empty() || f.get_ref().contains('/') => {
            c.at(
                f.span(),
                "tls.default_certificate",
                "expected the name of a file in the certificate folder, like \"default.pem\"",
            );
            None
        }
        Some(f) => Some(f.into_inner()),
        None => None,
    };
    let misdirected = match raw
        .misdirected
        .as_ref()
        .map(|m| (m.get_ref().as_str(), m.span()))
    {
        None | Some(("tenant", _)) => Misdirected::Tenant,
        Some(("host", _)) => Misdirected::Host,
        Some(("allow", _)) => Misdirected::Allow,
        Some((_, span)) => {
            c.at(
                span,
                "tls.misdirected",
                "expected \"tenant\" (421 for another tenant's host), \"host\" (421 for any other name) or \"allow\"",
            );
            Misdirected::Tenant
        }
    };
    Some(TlsSettings {
        misdirected,
        certificates: dir.join(folder),
        default_certificate,
        key_cache: int(c, "tls.key_cache", raw.key_cache, 10_000, 1, 10_000_000) as usize,
        handshake_timeout: duration(c, "tls.handshake_timeout", raw.handshake_timeout, 10),
    })
}
