//! `[tls]`: the certificate folder of the `https` listeners.

use super::super::raw::RawPassthrough;
use super::super::raw::{RawTls, Spanned};
use super::super::{Collector, Misdirected, NoSni, Passthrough, TlsSettings};
use super::values::{duration, int, keyword, socket_addr};

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
    let misdirected = keyword(
        c,
        "tls.misdirected",
        raw.misdirected.as_ref(),
        &[
            ("tenant", Misdirected::Tenant),
            ("host", Misdirected::Host),
            ("allow", Misdirected::Allow),
        ],
        "expected \"tenant\" (421 for another tenant's host), \"host\" (421 for any other name) or \"allow\"",
    );
    let passthrough = raw.passthrough.and_then(|p| passthrough(c, p.into_inner()));
    Some(TlsSettings {
        passthrough,
        misdirected,
        certificates: dir.join(folder),
        default_certificate,
        key_cache: int(c, "tls.key_cache", raw.key_cache, 10_000, 1, 10_000_000) as usize,
        handshake_timeout: duration(c, "tls.handshake_timeout", raw.handshake_timeout, 10),
    })
}

fn passthrough(c: &mut Collector<'_>, raw: RawPassthrough) -> Option<Passthrough> {
    let no_sni = keyword(
        c,
        "tls.passthrough.no_sni",
        raw.no_sni.as_ref(),
        &[
            ("terminate", NoSni::Terminate),
            ("legacy", NoSni::Legacy),
            ("close", NoSni::Close),
        ],
        "expected \"terminate\" (the default certificate), \"legacy\" or \"close\"",
    );
    let address = socket_addr(c, "tls.passthrough.address", &raw.address)?;
    Some(Passthrough {
        address,
        proxy_protocol: raw.proxy_protocol.is_none_or(|b| *b.get_ref()),
        prefer_local_certificate: raw.prefer_local_certificate.is_none_or(|b| *b.get_ref()),
        no_sni,
    })
}
