//! Host normalisation: the one spelling under which a host is stored in the
//! tenant table and looked up per request.
//!
//! Lowercase, no port, no trailing dot; a reg-name of letters, digits, `-`,
//! `_` and dots with no empty label; an IPv6 literal in brackets, written in
//! its canonical form (`[2001:db8::1]`). Anything else (userinfo, percent
//! escapes, spaces, a zone id, a port above 65535) is malformed: the proxy
//! answers 400 and the table refuses the line. Works in a stack buffer: no
//! allocation on the request path.

use std::fmt;
use std::net::Ipv6Addr;

/// Longest host name (RFC 1035: 253 octets without the trailing dot).
pub const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// A normalised host, held inline.
#[derive(Clone, Copy)]
pub struct Host {
    buf: [u8; MAX_HOST_LEN],
    len: u8,
}

impl Host {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into `buf`.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub fn is_ip_literal(&self) -> bool {
        self.buf[0] == b'['
    }

    /// The parent suffixes a wildcard entry could match, longest first:
    /// `a.b.example.com` gives `b.example.com`, `example.com`, `com`.
    pub fn wildcard_suffixes(&self) -> impl Iterator<Item = &[u8]> {
        let bytes = self.as_bytes();
        let ip = self.is_ip_literal();
        bytes
            .iter()
            .enumerate()
            .filter(move |&(_, &b)| b == b'.' && !ip)
            .map(move |(i, _)| &bytes[i + 1..])
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Host({:?})", self.as_str())
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Host {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Host {}

/// Why a host was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("empty host")]
    Empty,
    #[error("host longer than {MAX_HOST_LEN} bytes")]
    TooLong,
    #[error("label longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong,
    #[error("empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("character {0:?} is not allowed in a host name")]
    BadChar(char),
    #[error("malformed port")]
    BadPort,
    #[error("malformed IPv6 literal")]
    BadIpv6,
    #[error("a port is not allowed here")]
    PortNotAllowed,
}

/// Normalises an authority as received (`Host` header, `:authority`, or the
/// authority of an absolute-form target): `Example.COM.:8080` ->
/// `example.com`.
pub fn normalize(authority: &[u8]) -> Result<Host, HostError> {
    if authority.first() == Some(&b'[') {
        let (host, _port) = split_port(authority)?;
        return normalize_ipv6(host);
    }
    // A reg-name has no ':', so the first one starts the port.
    let name = match memchr::memchr(b':', authority) {
        Some(colon) => {
            check_port(&authority[colon + 1..])?;
            &authority[..colon]
        }
        None => authority,
    };
    let mut out = Host {
        buf: [0; MAX_HOST_LEN],
        len: 0,
    };
    out.len = lower_name(name, &mut out.buf)? as u8;
    Ok(out)
}

/// Normalises a host name without a port (a tenant table entry).
pub fn normalize_without_port(name: &[u8]) -> Result<Host, HostError> {
    let (host, port) = split_port(name)?;
    if port.is_some() {
        return Err(HostError::PortNotAllowed);
    }
    normalize_name(host)
}

/// Splits `host[:port]`, `[v6][:port]`; validates the port.
fn split_port(a: &[u8]) -> Result<(&[u8], Option<u16>), HostError> {
    if a.is_empty() {
        return Err(HostError::Empty);
    }
    let (host, port) = if a[0] == b'[' {
        let close = memchr::memchr(b']', a).ok_or(HostError::BadIpv6)?;
        match &a[close + 1..] {
            [] => (&a[..=close], None),
            [b':', rest @ ..] => (&a[..=close], Some(rest)),
            _ => return Err(HostError::BadIpv6),
        }
    } else {
        // Hosts are short: a plain scan beats a SIMD search's setup.
        match a.iter().rposition(|&b| b == b':') {
            Some(i) => (&a[..i], Some(&a[i + 1..])),
            None => (a, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => check_port(p)?,
    };
    Ok((host, port))
}

/// A port: up to five digits, at most 65535; empty is allowed (RFC 3986:
/// `example.com:`) and means none.
fn check_port(p: &[u8]) -> Result<Option<u16>, HostError> {
    if p.is_empty() {
        return Ok(None);
    }
    if p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
        return Err(HostError::BadPort);
    }
    let n = p.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).map(Some).map_err(|_| HostError::BadPort)
}

/// Each byte's spelling in a normalised reg-name: lowercase letters,
/// digits, `-`, `_` and `.` map to themselves (capitals to lowercase),
/// everything else to 0.
const NAME_BYTE: [u8; 256] = {
    let mut m = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        m[i] = match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => b,
            b'A'..=b'Z' => b | 0x20,
            _ => 0,
        };
        i += 1;
    }
    m
};

fn normalize_name(h: &[u8]) -> Result<Host, HostError> {
    if h.first() == Some(&b'[') {
        return normalize_ipv6(h);
    }
    let mut out = Host {
        buf: [0; MAX_HOST_LEN],
        len: 0,
    };
    let len = lower_name(h, &mut out.buf)?;
    out.len = len as u8;
    Ok(out)
}

/// Writes the normalised form of reg-name `h` into `out`; returns its
/// length. The request path and the table builder share this.
fn lower_name(h: &[u8], out: &mut [u8; MAX_HOST_LEN]) -> Result<usize, HostError> {
    let h = h.strip_suffix(b".").unwrap_or(h);
    if h.is_empty() {
        return Err(HostError::Empty);
    }
    if h.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    // One pass: map each byte, note bad ones, measure labels.
    let (mut bad, mut empty, mut label, mut longest) = (false, false, 0usize, 0usize);
    for (o, &b) in out.iter_mut().zip(h) {
        let m = NAME_BYTE[usize::from(b)];
        *o = m;
        bad |= m == 0;
        if m == b'.' {
            empty |= label == 0;
            label = 0;
        } else {
            label += 1;
            longest = longest.max(label);
        }
    }
    if bad {
        let c = h
            .iter()
            .find(|&&b| NAME_BYTE[usize::from(b)] == 0)
            .copied()
            .unwrap_or(0);
        return Err(HostError::BadChar(char::from(c)));
    }
    if empty || label == 0 {
        return Err(HostError::EmptyLabel);
    }
    if longest > MAX_LABEL_LEN {
        return Err(HostError::LabelTooLong);
    }
    Ok(h.len())
}

/// Appends the normalised form of a table entry (no port allowed) to
/// `out`, for builders that keep hosts in an arena.
pub fn normalize_into(name: &[u8], out: &mut Vec<u8>) -> Result<(), HostError> {
    let (host, port) = split_port(name)?;
    if port.is_some() {
        return Err(HostError::PortNotAllowed);
    }
    if host.first() == Some(&b'[') {
        out.extend_from_slice(normalize_ipv6(host)?.as_bytes());
        return Ok(());
    }
    let mut buf = [0u8; MAX_HOST_LEN];
    let len = lower_name(host, &mut buf)?;
    out.extend_from_slice(&buf[..len]);
    Ok(())
}

fn normalize_ipv6(h: &[u8]) -> Result<Host, HostError> {
    let inner = h
        .strip_prefix(b"[")
        .and_then(|r| r.strip_suffix(b"]"))
        .ok_or(HostError::BadIpv6)?;
    let text = std::str::from_utf8(inner).map_err(|_| HostError::BadIpv6)?;
    let ip: Ipv6Addr = text.parse().map_err(|_| HostError::BadIpv6)?;
    let mut out = Host {
        buf: [0; MAX_HOST_LEN],
        len: 0,
    };
    let mut w = Cursor {
        buf: &mut out.buf,
        len: 0,
    };
    // An Ipv6Addr prints in at most 45 bytes: it always fits.
    fmt::write(&mut w, format_args!("[{ip}]")).map_err(|_| HostError::BadIpv6)?;
    out.len = w.len as u8;
    Ok(out)
}

struct Cursor<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Result<String, HostError> {
        normalize(s.as_bytes()).map(|h| h.as_str().to_string())
    }

    #[test]
    fn lowercases_strips_port_and_trailing_dot() {
        assert_eq!(n("Example.COM").unwrap(), "example.com");
        assert_eq!(n("example.com:8080").unwrap(), "example.com");
        assert_eq!(n("example.com.").unwrap(), "example.com");
        assert_eq!(n("WWW.Example.com.:443").unwrap(), "www.example.com");
        assert_eq!(n("example.com:").unwrap(), "example.com");
        assert_eq!(n("under_score.example").unwrap(), "under_score.example");
        assert_eq!(n("10.0.0.1:80").unwrap(), "10.0.0.1");
    }

    #[test]
    fn ipv6_literals_are_canonical() {
        assert_eq!(n("[::1]").unwrap(), "[::1]");
        assert_eq!(n("[::1]:8080").unwrap(), "[::1]");
        assert_eq!(n("[2001:DB8:0:0::1]").unwrap(), "[2001:db8::1]");
        assert!(normalize(b"[::1]").unwrap().is_ip_literal());
        assert_eq!(n("[::1"), Err(HostError::BadIpv6));
        assert_eq!(n("[::1]x"), Err(HostError::BadIpv6));
        assert_eq!(n("[fe80::1%eth0]"), Err(HostError::BadIpv6));
        assert_eq!(n("[example.com]"), Err(HostError::BadIpv6));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(n(""), Err(HostError::Empty));
        assert_eq!(n(":80"), Err(HostError::Empty));
        assert_eq!(n("."), Err(HostError::Empty));
        assert_eq!(n("a..b"), Err(HostError::EmptyLabel));
        assert_eq!(n(".a"), Err(HostError::EmptyLabel));
        assert_eq!(n("a.b.."), Err(HostError::EmptyLabel));
        assert_eq!(n("user@example.com"), Err(HostError::BadChar('@')));
        assert_eq!(n("exa mple.com"), Err(HostError::BadChar(' ')));
        assert_eq!(n("ex%41.com"), Err(HostError::BadChar('%')));
        assert_eq!(n("example.com:99999"), Err(HostError::BadPort));
        assert_eq!(n("example.com:8o"), Err(HostError::BadPort));
        assert_eq!(n("a:b:c"), Err(HostError::BadPort));
        assert_eq!(n(&"a".repeat(64)), Err(HostError::LabelTooLong));
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        assert_eq!(n(&long), Err(HostError::TooLong));
        let max = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(n(&max).unwrap().len(), 253);
    }

    #[test]
    fn table_entries_take_no_port() {
        assert_eq!(
            normalize_without_port(b"example.com:80").unwrap_err(),
            HostError::PortNotAllowed
        );
        assert_eq!(
            normalize_without_port(b"Example.com.").unwrap().as_str(),
            "example.com"
        );
    }

    #[test]
    fn wildcard_suffixes_longest_first() {
        let h = normalize(b"a.b.example.com").unwrap();
        let s: Vec<&[u8]> = h.wildcard_suffixes().collect();
        assert_eq!(s, vec![&b"b.example.com"[..], b"example.com", b"com"]);
        assert_eq!(normalize(b"[::1]").unwrap().wildcard_suffixes().count(), 0);
    }
}
