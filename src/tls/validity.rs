//! A certificate's expiry (`notAfter`), read straight from its DER: the
//! fifth field of the to-be-signed part (after an optional version, the
//! serial, the signature algorithm and the issuer), `validity`'s second
//! time. Nothing else of the certificate is interpreted here; the names
//! come from `rustls-webpki`, which rustls already uses to parse it.
//!
//! Written here rather than taken from `x509-parser`: that crate (with
//! nom, asn1-rs, der-parser, num-bigint, time and their proc macros) was
//! about 30 s of CPU in a 2-core fresh build, a tenth of it, for this one
//! field (docs/performance.md, issue 15).

/// Why the expiry could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValidityError {
    #[error("malformed DER ({0})")]
    Der(&'static str),
    #[error("malformed notAfter time")]
    Time,
}

/// Seconds since the Unix epoch of the certificate's `notAfter`.
pub fn not_after(der: &[u8]) -> Result<i64, ValidityError> {
    let (cert, _) = expect(der, 0x30, "certificate")?;
    let (tbs, _) = expect(cert, 0x30, "tbsCertificate")?;
    let (tag, _, mut rest) = tlv(tbs)?;
    if tag == 0xa0 {
        // [0] EXPLICIT version: the serial follows.
        let (_, after) = expect(rest, 0x02, "serialNumber")?;
        rest = after;
    } else if tag != 0x02 {
        return Err(ValidityError::Der("serialNumber"));
    }
    let (_, rest) = expect(rest, 0x30, "signature")?;
    let (_, rest) = expect(rest, 0x30, "issuer")?;
    let (validity, _) = expect(rest, 0x30, "validity")?;
    let (_, _, rest) = tlv(validity)?;
    let (tag, time, _) = tlv(rest)?;
    match tag {
        0x17 => utc_time(time),
        0x18 => generalized_time(time),
        _ => Err(ValidityError::Der("notAfter")),
    }
}

/// One DER element: its tag, its content, and what follows it.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), ValidityError> {
    let short = ValidityError::Der("truncated");
    let (&tag, rest) = input.split_first().ok_or(short)?;
    let (&first, mut rest) = rest.split_first().ok_or(short)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(ValidityError::Der("length"));
        }
        let (digits, after) = rest.split_at(n);
        rest = after;
        digits
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b))
    };
    if rest.len() < len {
        return Err(short);
    }
    let (content, after) = rest.split_at(len);
    Ok((tag, content, after))
}

/// The element at the start of `input`, which must have `tag`.
fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), ValidityError> {
    match tlv(input)? {
        (t, content, rest) if t == tag => Ok((content, rest)),
        _ => Err(ValidityError::Der(what)),
    }
}

/// `YYMMDDHHMMSSZ` (RFC 5280: years 50-99 are 19xx, 00-49 are 20xx).
fn utc_time(t: &[u8]) -> Result<i64, ValidityError> {
    let [y0, y1, rest @ ..] = t else {
        return Err(ValidityError::Time);
    };
    let yy = digits(&[*y0, *y1])?;
    let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
    time_of(year, rest)
}

/// `YYYYMMDDHHMMSSZ`.
fn generalized_time(t: &[u8]) -> Result<i64, ValidityError> {
    if t.len() < 4 {
        return Err(ValidityError::Time);
    }
    let (year, rest) = t.split_at(4);
    time_of(digits(year)?, rest)
}

/// `MMDDHHMMSSZ` of `year`, as Unix seconds.
fn time_of(year: i64, rest: &[u8]) -> Result<i64, ValidityError> {
    let [m0, m1, d0, d1, h0, h1, n0, n1, s0, s1, b'Z'] = rest else {
        return Err(ValidityError::Time);
    };
    let month = digits(&[*m0, *m1])?;
    let day = digits(&[*d0, *d1])?;
    let (hour, minute, second) = (
        digits(&[*h0, *h1])?,
        digits(&[*n0, *n1])?,
        digits(&[*s0, *s1])?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(ValidityError::Time);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

fn digits(d: &[u8]) -> Result<i64, ValidityError> {
    d.iter().try_fold(0i64, |n, &b| match b {
        b'0'..=b'9' => Ok(n * 10 + i64::from(b - b'0')),
        _ => Err(ValidityError::Time),
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(y: i32, m: u8, d: u8) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(y, m, d);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_expiry_of_generated_certificates() {
        // UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280).
        for (y, m, d, unix) in [
            (2031, 1, 1, 1_924_992_000),
            (2024, 2, 29, 1_709_164_800),
            (1999, 12, 31, 946_598_400),
            (2050, 1, 1, 2_524_608_000),
            (2100, 3, 1, 4_107_542_400),
        ] {
            assert_eq!(not_after(&cert(y, m, d)), Ok(unix), "{y}-{m}-{d}");
        }
    }

    #[test]
    fn times_and_lengths_are_checked() {
        assert_eq!(utc_time(b"310101000000Z"), Ok(1_924_992_000));
        assert_eq!(utc_time(b"700101000000Z"), Ok(0));
        assert_eq!(generalized_time(b"19700101000001Z"), Ok(1));
        for bad in [
            &b"3101010000Z"[..],
            b"310101000000",
            b"311301000000Z",
            b"31010100000aZ",
        ] {
            assert_eq!(utc_time(bad), Err(ValidityError::Time), "{bad:?}");
        }
        assert!(not_after(b"").is_err());
        assert!(
            not_after(&[0x30, 0x85, 1, 2, 3, 4, 5]).is_err(),
            "5-byte length"
        );
        assert!(
            not_after(&[0x30, 0x82, 0xff, 0xff]).is_err(),
            "longer than the input"
        );
        let c = cert(2031, 1, 1);
        for cut in 0..c.len() {
            assert!(not_after(&c[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn any_bytes_are_refused_or_read_without_panic() {
        let c = cert(2031, 1, 1);
        for i in 0..c.len() {
            let mut x = c.clone();
            x[i] ^= 0xff;
            let _ = not_after(&x);
        }
    }
}
