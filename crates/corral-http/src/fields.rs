//! [`Fields`]: a stored response's header fields in compact form. A `HeaderMap` is
//! built for lookups and growth (a hash index, and a 104-byte bucket per slot, with a
//! quarter of its slots free): ten fields take 1.7 KB. What a cache keeps is read in
//! order, looked up by a name or two, and written out whole, so it keeps the text of
//! every value in one buffer and a 12-byte line per field: the name as an index into
//! a table of well-known names (or of the response's own other names), and where its
//! value lies in the buffer. Ten fields take about 120 bytes plus their values' text.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Header fields in order (each field line as it came, repeated names kept), their
/// values in one buffer.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    /// The text of every value, in order.
    text: Bytes,
    /// One per field line, in order.
    lines: Box<[Line]>,
    /// The names that are not in [`WELL_KNOWN`], each once.
    other_names: Box<[HeaderName]>,
}

/// A field line: its name, and where its value lies in the text.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Line {
    /// An index into [`WELL_KNOWN`], or past it into the other names.
    name: u16,
    /// The value's `is_sensitive` (it is never put in an HPACK/QPACK table).
    sensitive: bool,
    start: u32,
    end: u32,
}

/// Names that most responses carry, stored as their index here.
static WELL_KNOWN: [HeaderName; 40] = [
    header::ACCEPT_RANGES,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
    header::ALT_SVC,
    header::CACHE_CONTROL,
    header::CONTENT_DISPOSITION,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LENGTH,
    header::CONTENT_LOCATION,
    header::CONTENT_RANGE,
    header::CONTENT_SECURITY_POLICY,
    header::CONTENT_SECURITY_POLICY_REPORT_ONLY,
    header::CONTENT_TYPE,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::LAST_MODIFIED,
    header::LINK,
    header::LOCATION,
    header::PRAGMA,
    header::REFERRER_POLICY,
    header::RETRY_AFTER,
    header::SERVER,
    header::SET_COOKIE,
    header::STRICT_TRANSPORT_SECURITY,
    header::ALLOW,
    header::VARY,
    header::VIA,
    header::WARNING,
    header::WWW_AUTHENTICATE,
    header::X_CONTENT_TYPE_OPTIONS,
    header::X_FRAME_OPTIONS,
    header::X_XSS_PROTECTION,
    header::CDN_CACHE_CONTROL,
    header::CACHE_STATUS,
];

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Fields {
    /// The fields of `headers`, their values copied into one buffer of their own. (A
    /// client parses values as slices of its read buffer, 8 KiB and more: a stored
    /// response holding them as they came would keep that whole buffer alive for as
    /// long as it is stored.) Field lines past the 65,000th, or past 4 GiB of text,
    /// are left out: no response that reaches a cache carries that many.
    pub(crate) fn from_map(headers: &HeaderMap) -> Fields {
        let total = headers.values().map(HeaderValue::len).sum();
        let mut text = BytesMut::with_capacity(total);
        let mut lines = Vec::with_capacity(headers.len());
        let mut other_names: Vec<HeaderName> = Vec::new();
        for (name, value) in headers {
            let index = match WELL_KNOWN.iter().position(|known| known == name) {
                Some(index) => index,
                None => match other_names.iter().position(|other| other == name) {
                    Some(index) => WELL_KNOWN.len() + index,
                    None => {
                        other_names.push(name.clone());
                        WELL_KNOWN.len() + other_names.len() - 1
                    }
                },
            };
            let start = text.len();
            let (Ok(name), Ok(start), Ok(end)) = (
                u16::try_from(index),
                u32::try_from(start),
                u32::try_from(start + value.len()),
            ) else {
                break;
            };
            text.extend_from_slice(value.as_bytes());
            lines.push(Line {
                name,
                sensitive: value.is_sensitive(),
                start,
                end,
            });
        }
        Fields {
            text: text.freeze(),
            lines: lines.into(),
            other_names: other_names.into(),
        }
    }

    /// A map of these fields, with room for `extra` more without growing.
    pub(crate) fn to_map(&self, extra: usize) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.lines.len() + extra);
        for (name, value) in self.iter() {
            map.append(name, value);
        }
        map
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.get_all(name).next()
    }

    /// Every value of `name`, in order.
    pub(crate) fn get_all<'a>(
        &'a self,
        name: &'a HeaderName,
    ) -> impl Iterator<Item = HeaderValue> + 'a {
        self.lines
            .iter()
            .filter(move |line| self.name(line) == name)
            .filter_map(|line| self.value(line))
    }

    /// Every field line, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        self.lines
            .iter()
            .filter_map(|line| Some((self.name(line).clone(), self.value(line)?)))
    }

    fn name(&self, line: &Line) -> &HeaderName {
        let index = usize::from(line.name);
        WELL_KNOWN
            .get(index)
            .or_else(|| self.other_names.get(index - WELL_KNOWN.len()))
            .unwrap_or(&WELL_KNOWN[0])
    }

    /// A line's value: a slice of the text (checked again, as `HeaderValue` offers no
    /// safe way to skip the check; every value was valid when it was stored).
    fn value(&self, line: &Line) -> Option<HeaderValue> {
        let text = self.text.slice(line.start as usize..line.end as usize);
        let mut value = HeaderValue::from_maybe_shared(text).ok()?;
        value.set_sensitive(line.sensitive);
        Some(value)
    }

    /// The bytes these fields hold: the lines, the values' text, and the other names
    /// with their text (erring high keeps a byte bound honest).
    pub(crate) fn weigh(&self) -> usize {
        let names: usize = self.other_names.iter().map(|n| n.as_str().len() + 32).sum();
        std::mem::size_of_val(&*self.lines) + self.text.len() + names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::header_map as map;

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
            .map(|v| v.to_str().unwrap().to_owned())
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
        assert!(fields.weigh() < 400, "{}", fields.weigh());
        assert_eq!(fields.to_map(0), original);
    }

    #[test]
    fn names_outside_the_table_are_kept_once_and_sensitive_values_stay_sensitive() {
        let mut original = map(&[
            ("x-a", "1"),
            ("x-b", "2"),
            ("x-a", "3"),
            ("content-type", "text/plain"),
        ]);
        let mut secret = HeaderValue::from_static("s");
        secret.set_sensitive(true);
        original.append("x-b", secret);
        let fields = Fields::from_map(&original);
        assert_eq!(fields.other_names.len(), 2);
        assert_eq!(fields.to_map(0), original);
        let sensitive: Vec<_> = fields
            .get_all(&HeaderName::from_static("x-b"))
            .map(|v| v.is_sensitive())
            .collect();
        assert_eq!(sensitive, [false, true]);
        assert!(fields.get(&HeaderName::from_static("x-c")).is_none());
    }

    #[test]
    fn an_empty_map_and_empty_values_round_trip() {
        assert_eq!(
            Fields::from_map(&HeaderMap::new()).to_map(0),
            HeaderMap::new()
        );
        let original = map(&[("x-empty", ""), ("etag", "\"e\""), ("x-empty", "")]);
        assert_eq!(Fields::from_map(&original).to_map(0), original);
    }
}
