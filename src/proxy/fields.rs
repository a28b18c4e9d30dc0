//! [`Fields`]: a request's header fields as the phases read them, from
//! wherever the request came in: an HTTP/1.x client's head (ranges into
//! its bytes: no `HeaderMap` is built for it) or an HTTP/2 client's map
//! (the `h2` crate's). One reading of both, so that the phases have one
//! rule.
//!
//! Names are compared case-insensitively (a head keeps the client's case;
//! a map's names are lowercase). A request's own `HeaderMap` stays empty
//! while its phases run: its fields are only ever read through here.

use std::iter::FusedIterator;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::error::ProxyError;
use super::h1::{Field, RawFields};
use crate::model::headers::eq_lowercase;

/// A request's header fields (cheap to copy: two pointers).
#[derive(Debug, Clone, Copy)]
pub enum Fields<'a> {
    /// An HTTP/2 request's (or a test's) map.
    Map(&'a HeaderMap),
    /// An HTTP/1.x request's head.
    Head(Head<'a>),
}

/// An HTTP/1.x request's head as parsed: its bytes (shared, so a value
/// kept is a slice of them, not a copy) and the ranges of its fields.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub bytes: &'a Bytes,
    pub fields: &'a [Field],
}

/// Whether a name as written (`n`, any case) is `name`.
#[inline]
fn is(n: &[u8], name: &HeaderName) -> bool {
    eq_lowercase(n, name.as_str().as_bytes())
}

impl<'a> Fields<'a> {
    /// An HTTP/1.x request's fields: its head's `bytes` and the ranges of
    /// its `fields` in them.
    #[inline]
    pub fn head(bytes: &'a Bytes, fields: &'a [Field]) -> Fields<'a> {
        Fields::Head(Head { bytes, fields })
    }

    /// Every field, in order, as `(name, value)` bytes.
    #[inline]
    pub fn iter(self) -> Iter<'a> {
        match self {
            Fields::Map(m) => Iter::Map(m.iter()),
            Fields::Head(h) => Iter::Head {
                bytes: h.bytes,
                fields: h.fields.iter(),
            },
        }
    }

    /// The value of the first field named `name`.
    #[inline]
    pub fn get(self, name: &HeaderName) -> Option<&'a [u8]> {
        match self {
            Fields::Map(m) => m.get(name).map(HeaderValue::as_bytes),
            Fields::Head(h) => h
                .fields
                .iter()
                .find(|f| is(&h.bytes[f.name.clone()], name))
                .map(|f| &h.bytes[f.value.clone()]),
        }
    }

    /// The values of every field named `name`, in order.
    #[inline]
    pub fn get_all(self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| is(n, name))
            .map(|(_, v)| v)
    }

    /// Whether a field named `name` is there.
    #[inline]
    pub fn contains(self, name: &HeaderName) -> bool {
        self.get(name).is_some()
    }

    /// The value of the first field named `name`, to keep: a map's value
    /// shared, a head's a slice of its bytes (no copy).
    #[inline]
    pub fn value(self, name: &HeaderName) -> Option<HeaderValue> {
        match self {
            Fields::Map(m) => m.get(name).cloned(),
            Fields::Head(h) => {
                let v = self.get(name)?;
                HeaderValue::from_maybe_shared(h.bytes.slice_ref(v)).ok()
            }
        }
    }

    /// The value of the first field named `name` as bytes to keep, not
    /// checked again as a `HeaderValue` (for the access log): a head's a
    /// slice of its bytes, a map's copied.
    #[inline]
    pub fn bytes(self, name: &HeaderName) -> Option<Bytes> {
        let v = self.get(name)?;
        Some(match self {
            Fields::Map(_) => Bytes::copy_from_slice(v),
            Fields::Head(h) => h.bytes.slice_ref(v),
        })
    }

    /// The head's bytes and ranges, to write its fields on in runs of its
    /// bytes (`None`: a map's).
    #[inline]
    pub fn raw(self) -> Option<RawFields<'a>> {
        match self {
            Fields::Map(_) => None,
            Fields::Head(h) => Some(RawFields {
                bytes: h.bytes,
                fields: h.fields,
            }),
        }
    }

    /// The fields as a header map, for hyper's HTTP/2 client (the legacy
    /// balancer over h2c): a map's cloned (its values shared), a head's
    /// built with its values slices of its bytes.
    pub fn to_map(self) -> Result<HeaderMap, ProxyError> {
        let h = match self {
            Fields::Map(m) => return Ok(m.clone()),
            Fields::Head(h) => h,
        };
        let mut map = HeaderMap::with_capacity(h.fields.len());
        for f in h.fields {
            let name = HeaderName::from_bytes(&h.bytes[f.name.clone()])
                .map_err(|_| ProxyError::MalformedHead("field name"))?;
            let value = HeaderValue::from_maybe_shared(h.bytes.slice(f.value.clone()))
                .map_err(|_| ProxyError::MalformedHead("field value"))?;
            map.append(name, value);
        }
        Ok(map)
    }
}

/// The fields of a [`Fields`], in order.
#[derive(Debug)]
pub enum Iter<'a> {
    Map(header::Iter<'a, HeaderValue>),
    Head {
        bytes: &'a [u8],
        fields: std::slice::Iter<'a, Field>,
    },
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Map(it) => it
                .next()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
            Iter::Head { bytes, fields } => fields
                .next()
                .map(|f| (&bytes[f.name.clone()], &bytes[f.value.clone()])),
        }
    }
}

impl FusedIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::super::h1::Status;
    use super::super::h1::request::RequestHead;
    use super::super::headers::test_map;
    use super::*;

    /// The head of `text` and its bytes.
    fn parsed(text: &str) -> (RequestHead, Bytes) {
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        let mut head = RequestHead::default();
        assert!(matches!(
            head.parse(&bytes, 64 * 1024),
            Ok(Status::Complete(_))
        ));
        (head, bytes)
    }

    const HEAD: &str = "GET / HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 1.1.1.1\r\n\
        accept: */*\r\nx-forwarded-for:  2.2.2.2 \r\nUser-Agent: t\r\n\r\n";

    fn pairs() -> HeaderMap {
        test_map(&[
            ("host", "a.example"),
            ("x-forwarded-for", "1.1.1.1"),
            ("accept", "*/*"),
            ("x-forwarded-for", "2.2.2.2"),
            ("user-agent", "t"),
        ])
    }

    /// A head and the map of the same fields read the same, whatever the
    /// case the client wrote the names in.
    #[test]
    fn a_head_reads_as_the_map_of_its_fields() {
        let (head, bytes) = parsed(HEAD);
        let h = Fields::head(&bytes, &head.fields);
        let map = pairs();
        let m = Fields::Map(&map);
        let xff = HeaderName::from_static("x-forwarded-for");
        for f in [h, m] {
            assert_eq!(f.get(&header::HOST), Some(&b"a.example"[..]));
            assert_eq!(f.get(&header::COOKIE), None);
            assert!(f.contains(&header::USER_AGENT));
            assert_eq!(
                f.get_all(&xff).collect::<Vec<_>>(),
                [&b"1.1.1.1"[..], b"2.2.2.2"]
            );
            assert_eq!(f.value(&header::HOST).unwrap(), "a.example");
            assert_eq!(f.bytes(&header::USER_AGENT).unwrap(), "t");
            assert_eq!(f.to_map().unwrap(), map);
        }
        // The same fields (a map groups a name's values; a head keeps the
        // client's order and case).
        let all = |f: Fields<'_>| {
            let mut v: Vec<_> = f
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(all(h), all(m));
        assert_eq!(h.iter().next().map(|(n, _)| n), Some(&b"Host"[..]));
        assert!(h.raw().is_some() && m.raw().is_none());
    }

    /// A head's names in any case scan as its map's do.
    #[test]
    fn a_head_scans_as_its_map() {
        use super::super::headers::Scan;
        let (head, bytes) = parsed(
            "GET / HTTP/1.1\r\nHOST: a\r\nConnection: Upgrade, X-Drop\r\nUPGRADE: websocket\r\n\
             FORWARDED: for=x\r\nTe: trailers\r\nX-Drop: 1\r\n\r\n",
        );
        let h = Fields::head(&bytes, &head.fields);
        let map = h.to_map().unwrap();
        let (a, b) = (Scan::of(h), Scan::of(Fields::Map(&map)));
        assert_eq!(a, b);
        assert!(a.hosts == 1 && a.forwarded && a.connection_upgrade);
    }

    proptest::proptest! {
        /// Whatever the head parser accepts as a field is a valid
        /// `HeaderName` and `HeaderValue`: a head's values are kept (and
        /// the h2c legacy client's map is built) without a 400 of their
        /// own.
        #[test]
        fn accepted_fields_make_a_map(
            name in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<u8>(),
                    proptest::sample::select(b"aZ0-_!#~.|".to_vec())
                ],
                1..12,
            ),
            value in proptest::collection::vec(
                proptest::prop_oneof![proptest::prelude::any::<u8>(), 0x20u8..0x7f],
                0..24,
            ),
        ) {
            let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            raw.extend_from_slice(&name);
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(&value);
            raw.extend_from_slice(b"\r\n\r\n");
            let bytes = Bytes::from(raw);
            let mut head = RequestHead::default();
            if let Ok(Status::Complete(_)) = head.parse(&bytes, 64 * 1024) {
                let h = Fields::head(&bytes, &head.fields);
                let map = h.to_map();
                proptest::prop_assert!(map.is_ok(), "{:?}", bytes);
                proptest::prop_assert_eq!(map.map(|m| m.len()).ok(), Some(head.fields.len()));
            }
        }
    }

    /// A kept value of a head is a slice of its bytes, not a copy.
    #[test]
    fn a_kept_value_shares_the_head() {
        let (head, bytes) = parsed(HEAD);
        let h = Fields::head(&bytes, &head.fields);
        let v = h.value(&header::USER_AGENT).unwrap();
        let range = bytes.as_ptr_range();
        assert!(range.contains(&v.as_bytes().as_ptr()));
    }
}
