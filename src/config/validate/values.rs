//! Checks of single values (addresses, durations, numbers, tokens) that
//! record a problem at the value's line and return a usable default.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::Collector;
use super::super::raw::Spanned;

pub(crate) fn socket_addr(
    c: &mut Collector<'_>,
    key: &str,
    v: &Spanned<String>,
) -> Option<SocketAddr> {
    match v.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            c.at(
                v.span(),
                key,
                format!(
                    "expected an IP address and port like \"10.0.0.1:80\" or \"[2001:db8::1]:80\", found {:?}",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

pub(crate) fn duration(
    c: &mut Collector<'_>,
    key: &str,
    v: Option<Spanned<String>>,
    default_secs: u64,
) -> Duration {
    let Some(v) = v else {
        return Duration::from_secs(default_secs);
    };
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            c.at(
                v.span(),
                key,
                format!(
                    "expected a positive duration like \"2s\" or \"500ms\", found {:?}",
                    v.get_ref()
                ),
            );
            Duration::from_secs(default_secs)
        }
    }
}

/// A duration that may be zero (`"0s"`, the default: off).
pub(crate) fn duration_or_zero(
    c: &mut Collector<'_>,
    key: &str,
    v: Option<Spanned<String>>,
) -> Duration {
    match &v {
        Some(t) if humantime::parse_duration(t.get_ref()).is_ok_and(|d| d.is_zero()) => {
            Duration::ZERO
        }
        None => Duration::ZERO,
        Some(_) => duration(c, key, v, 0),
    }
}

/// One of a fixed set of keywords: `options` maps each to its value, the
/// first being the default when the key is absent. Anything else is
/// refused at its line with `expected` (the choices, explained) and what
/// was found; the default stands in.
pub(crate) fn keyword<T: Copy>(
    c: &mut Collector<'_>,
    key: &str,
    v: Option<&Spanned<String>>,
    options: &[(&str, T)],
    expected: &str,
) -> T {
    let default = options[0].1;
    let Some(v) = v else {
        return default;
    };
    match options.iter().find(|(word, _)| word == v.get_ref()) {
        Some((_, value)) => *value,
        None => {
            c.at(
                v.span(),
                key,
                format!("{expected}, found {:?}", v.get_ref()),
            );
            default
        }
    }
}

pub(crate) fn int(
    c: &mut Collector<'_>,
    key: &str,
    v: Option<Spanned<i64>>,
    default: i64,
    min: i64,
    max: i64,
) -> i64 {
    let Some(v) = v else {
        return default;
    };
    let n = *v.get_ref();
    if (min..=max).contains(&n) {
        n
    } else {
        c.at(
            v.span(),
            key,
            format!("expected a whole number from {min} to {max}, found {n}"),
        );
        default
    }
}

/// An RFC 9110 token (for the `Via` pseudonym).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `KEY.interval` and `KEY.timeout` of a periodic check (defaults 2 s and
/// 1 s); a timeout longer than the interval is refused at its line. The
/// interval is at least 10 ms.
pub(crate) fn interval_and_timeout(
    c: &mut Collector<'_>,
    key: &str,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
) -> (Duration, Duration) {
    let interval = duration(c, &format!("{key}.interval"), interval, 2);
    let timeout_span = timeout.as_ref().map(|t| t.span());
    let timeout = duration(c, &format!("{key}.timeout"), timeout, 1);
    if timeout > interval {
        if let Some(span) = timeout_span {
            c.at(
                span,
                format!("{key}.timeout"),
                format!("must not be longer than {key}.interval"),
            );
        }
    }
    (interval.max(Duration::from_millis(10)), timeout)
}

/// A share written as a percentage (`"5%"`, `"0.5%"`, `"100%"`), as a
/// fraction; `default` when absent or wrong (refused at its line).
fn percent(c: &mut Collector<'_>, key: &str, v: Option<Spanned<String>>, default: f64) -> f64 {
    let Some(v) = v else {
        return default;
    };
    let parsed = v
        .get_ref()
        .trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|n| (0.0..=100.0).contains(n));
    match parsed {
        Some(n) => n / 100.0,
        None => {
            c.at(
                v.span(),
                key,
                format!(
                    "expected a percentage from \"0%\" to \"100%\" like \"5%\", found {:?}",
                    v.get_ref()
                ),
            );
            default
        }
    }
}

/// `[reload]`: the guard against a disastrous reload.
pub(crate) fn reload_guard(
    c: &mut Collector<'_>,
    r: super::super::raw::RawReload,
) -> crate::config::ReloadGuard {
    let d = crate::config::ReloadGuard::default();
    crate::config::ReloadGuard {
        changed: percent(c, "reload.hold_changed", r.hold_changed, d.changed),
        dropped_hosts: percent(
            c,
            "reload.hold_dropped_hosts",
            r.hold_dropped_hosts,
            d.dropped_hosts,
        ),
        min: int(c, "reload.hold_min", r.hold_min, d.min as i64, 0, 1 << 30) as usize,
    }
}

/// A list of addresses or networks (`"10.0.0.0/8"`, `"192.0.2.7"`: a
/// bare address is a /32 or /128), each refused at its line when wrong.
pub(crate) fn networks(
    c: &mut Collector<'_>,
    key: &str,
    list: Option<Vec<Spanned<String>>>,
) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for (i, v) in list.unwrap_or_default().into_iter().enumerate() {
        let text = v.get_ref().trim();
        let net = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match net {
            Ok(n) => out.push(n.trunc()),
            Err(_) => c.at(
                v.span(),
                format!("{key}[{i}]"),
                format!(
                    "expected an address or network like \"10.0.0.0/8\" or \"2001:db8::/32\", found {:?}",
                    v.get_ref()
                ),
            ),
        }
    }
    out
}

/// `[shadow]`.
pub(crate) fn shadow(
    c: &mut Collector<'_>,
    s: super::super::raw::RawShadow,
) -> crate::config::Shadow {
    let header = match &s.header {
        Some(h) => match http::HeaderName::from_bytes(h.get_ref().as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                c.at(
                    h.span(),
                    "shadow.header",
                    format!("expected a header name, found {:?}", h.get_ref()),
                );
                http::HeaderName::from_static("x-predictor-shadow")
            }
        },
        None => http::HeaderName::from_static("x-predictor-shadow"),
    };
    let cookies = match s.credential_cookies {
        Some(list) => list.into_iter().map(Spanned::into_inner).collect(),
        None => [
            "PHPSESSID",
            "wordpress_logged_in_*",
            "wp-settings-*",
            "SESS*",
            "laravel_session",
        ]
        .map(String::from)
        .to_vec(),
    };
    let share = percent(c, "shadow.share", s.share, 0.1);
    let rate = int(c, "shadow.rate", s.rate, 0, 0, 1_000_000) as u32;
    crate::config::Shadow {
        share,
        max_in_flight: int(c, "shadow.max_in_flight", s.max_in_flight, 16, 1, 10_000) as usize,
        header,
        timeout: duration(c, "shadow.timeout", s.timeout, 10),
        max_body: int(c, "shadow.max_body", s.max_body, 1 << 20, 0, 1 << 30) as u64,
        mirror_credentials: s.mirror_credentials.unwrap_or(false),
        credential_cookies: cookies,
        min_samples: int(c, "shadow.min_samples", s.min_samples, 100, 1, 1 << 30) as u64,
        max_mismatch: percent(c, "shadow.max_mismatch", s.max_mismatch, 0.01),
        length_tolerance: percent(c, "shadow.length_tolerance", s.length_tolerance, 0.1),
        digest_max: int(c, "shadow.digest_max", s.digest_max, 4096, 0, 1 << 20) as u64,
        rate,
        filers: s
            .filers
            .into_iter()
            .map(|(name, f)| {
                let key = format!("shadow.filers.{}", name.get_ref());
                let one = (
                    percent(c, &format!("{key}.share"), f.share, share),
                    int(
                        c,
                        &format!("{key}.rate"),
                        f.rate,
                        i64::from(rate),
                        0,
                        1_000_000,
                    ) as u32,
                );
                (name.into_inner(), one)
            })
            .collect(),
    }
}
