//! [`Fields`]: a stored response's header fields in compact form. A `HeaderMap` is
//! built for lookups and growth (a hash index, and a 104-byte bucket per slot, with a
//! quarter of its slots free): ten fields take 1.7 KB. What a cache keeps is read in
//! order, looked up by a name or two, and written out whole, so it keeps each field
//! as a name and a value, in order, every value a slice of one buffer: ten fields
//! take about 70 bytes each plus their text.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Header fields in order (each field line as it came, repeated names kept), their
/// values in one buffer.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    lines: Box<[(HeaderName, HeaderValue)]>,
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.lines.iter().map(|(name, value)| (name, value)))
            .finish()
    }
}

impl Fields {
    /// The fields of `headers`, their values copied into one buffer of their own. (A
    /// client parses values as slices of its read buffer, 8 KiB and more: a stored
    /// response holding them as they came would keep that whole buffer alive for as
    /// long as it is stored.)
    pub(crate) fn from_map(headers: &HeaderMap) -> Fields {
        let total = headers.values().map(HeaderValue::len).sum();
        let mut buffer = BytesMut::with_capacity(total);
        for value in headers.values() {
            buffer.extend_from_slice(value.as_bytes());
        }
        let buffer: Bytes = buffer.freeze();
        let mut at = 0;
        let lines = headers
            .iter()
            .map(|(name, value)| {
                let end = at + value.len();
                let mut copy = HeaderValue::from_maybe_shared(buffer.slice(at..end))
                    .unwrap_or_else(|_| value.clone());
                copy.set_sensitive(value.is_sensitive());
                at = end;
                (name.clone(), copy)
            })
            .collect();
        Fields { lines }
    }

    /// A map of these fields, with room for `extra` more without growing.
    pub(crate) fn to_map(&self, extra: usize) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.lines.len() + extra);
        for (name, value) in self.iter() {
            map.append(name.clone(), value.clone());
        }
        map
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.lines
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// Every value of `name`, in order.
    pub(crate) fn get_all<'a>(
        &'a self,
        name: &'a HeaderName,
    ) -> impl Iterator<Item = &'a HeaderValue> + 'a {
        self.lines
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// Every field line, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.lines.iter().map(|(name, value)| (name, value))
    }

    /// The bytes these fields hold: the lines and the text of their names and values
    /// (a standard name's text is static, but counted all the same: erring high keeps
    /// a byte bound honest).
    pub(crate) fn weigh(&self) -> usize {
        let text: usize = self
            .lines
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        std::mem::size_of_val(&*self.lines) + text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(lines: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn fields_keep_every_line_in_order_and_give_the_same_map_back() {
        let original = map(&[
            ("content-type", "text/html"),
            ("set-cookie", "a=1"),
            ("x-trace", "t"),
            ("set-cookie", "b=2"),
        ]);
        let fields = Fields::from_map(&original);
        assert_eq!(fields.iter().count(), 4);
        assert_eq!(fields.to_map(0), original);
        let cookies: Vec<_> = fields
            .get_all(&http::header::SET_COOKIE)
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(
            fields.get(&http::header::CONTENT_TYPE).unwrap(),
            "text/html"
        );
        assert!(fields.get(&http::header::ETAG).is_none());
    }

    #[test]
    fn values_share_one_buffer_of_their_own() {
        let read_buffer = Bytes::from(vec![b'v'; 8192]);
        let mut original = HeaderMap::new();
        original.insert(
            "x-a",
            HeaderValue::from_maybe_shared(read_buffer.slice(0..3)).unwrap(),
        );
        original.insert(
            "x-b",
            HeaderValue::from_maybe_shared(read_buffer.slice(10..12)).unwrap(),
        );
        let fields = Fields::from_map(&original);
        let range = read_buffer.as_ptr_range();
        for (_, value) in fields.iter() {
            assert!(!range.contains(&value.as_bytes().as_ptr()));
        }
        assert!(fields.weigh() < 200, "{}", fields.weigh());
    }

    #[test]
    fn a_map_of_ten_fields_weighs_a_fraction_of_a_header_map() {
        let original = map(&[
            ("content-type", "text/html; charset=utf-8"),
            ("content-length", "1024"),
            ("cache-control", "max-age=60"),
            ("date", "Sun, 29 Nov 2026 01:00:00 GMT"),
            ("etag", "\"abc123\""),
            ("last-modified", "Sat, 28 Nov 2026 01:00:00 GMT"),
            ("server", "origin"),
            ("vary", "accept-encoding"),
            ("x-request-id", "0123456789abcdef"),
            ("x-powered-by", "rust"),
        ]);
        let fields = Fields::from_map(&original);
        assert!(fields.weigh() < 1000, "{}", fields.weigh());
    }
}
