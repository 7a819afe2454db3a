//! What the cache keeps: stored responses, variant indexes and hit-for-miss markers.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use corral::Weigh;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;

use crate::content::Content;
use crate::fields::Fields;
use crate::hop::remove_hop_by_hop;
use crate::policy::Lifetime;
use crate::vary::VarySpec;

/// An entry of the HTTP cache's engine, and what the waiters of one upstream fetch get.
#[derive(Debug, Clone)]
#[cfg_attr(
    any(feature = "redis", feature = "disk"),
    derive(serde::Serialize, serde::Deserialize)
)]
pub(crate) enum Stored {
    /// A response, ready to serve.
    Response(Arc<StoredResponse>),
    /// The URL's responses vary: look the variant up under its variant key.
    Variants(Arc<VarySpec>),
    /// Hit-for-miss: this URL's last response could not be shared, so requests go to
    /// the origin on their own instead of queueing behind one another.
    Uncacheable,
}

impl Weigh for Stored {
    fn weigh(&self) -> usize {
        match self {
            Stored::Response(r) => r.weigh(),
            Stored::Variants(spec) => spec.names.iter().map(|n| n.as_str().len() + 32).sum(),
            Stored::Uncacheable => 0,
        }
    }
}

/// How a stored response came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    any(feature = "redis", feature = "disk"),
    derive(serde::Serialize, serde::Deserialize)
)]
pub(crate) enum Provenance {
    /// A full response from the origin.
    Fetched,
    /// A stored response whose headers a `304 Not Modified` updated.
    Revalidated,
}

/// A response kept by the cache: status, headers as received (each field line kept,
/// in order, in compact form; hop-by-hop fields removed; a `Content-Length` that is
/// the body's), the whole body, and its lifetime.
#[derive(Debug)]
pub(crate) struct StoredResponse {
    pub status: StatusCode,
    pub headers: Fields,
    pub body: Content,
    pub stored_at: Instant,
    pub lifetime: Lifetime,
    /// The request header values that selected this variant, if it varies.
    pub vary: Option<(Vec<HeaderName>, String)>,
    pub provenance: Provenance,
}

impl Weigh for StoredResponse {
    fn weigh(&self) -> usize {
        let vary = self
            .vary
            .as_ref()
            .map_or(0, |(names, values)| names.len() * 24 + values.len());
        self.body.weigh() + self.headers.weigh() + vary + std::mem::size_of::<StoredResponse>()
    }
}

/// The headers a response of `status` is stored with: its end-to-end fields and a
/// `Content-Length` that is the stored body's length (whatever the origin said; none
/// for a status without content).
pub(crate) fn stored_headers(status: StatusCode, received: &HeaderMap, body_length: u64) -> Fields {
    let mut headers = end_to_end(received);
    frame_stored(status, &mut headers, body_length);
    Fields::from_map(&headers)
}

/// Makes stored headers describe the stored body: no hop-by-hop fields, no `Age` (the
/// cache states the age itself when it serves), and a `Content-Length` that is the
/// body's length (none for a status without content). Applied to what is stored, and
/// to what is read back from a shared tier.
pub(crate) fn frame_stored(status: StatusCode, headers: &mut HeaderMap, body_length: u64) {
    remove_hop_by_hop(headers);
    headers.remove(header::AGE);
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        headers.remove(header::CONTENT_LENGTH);
    } else {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_length));
    }
}

/// The end-to-end fields of `headers`: hop-by-hop ones and those named in
/// `Connection` removed, and `Age` (the cache states the age itself when it serves);
/// every other field line kept as it came.
pub(crate) fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    remove_hop_by_hop(&mut out);
    out.remove(header::AGE);
    out
}

/// Fields a `304` must not change in the stored response: they describe the stored
/// body, which the 304 does not replace.
const KEPT_ON_REVALIDATION: [HeaderName; 4] = [
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    header::TRANSFER_ENCODING,
];

impl StoredResponse {
    /// The stored headers updated by a `304 Not Modified` (RFC 9111 §4.3.4): every
    /// field the 304 carries replaces all lines of that field; the others stay.
    pub(crate) fn headers_updated_by(&self, not_modified: &HeaderMap) -> HeaderMap {
        let fresh = end_to_end(not_modified);
        let mut merged = self.headers.to_map(0);
        for name in fresh.keys() {
            if KEPT_ON_REVALIDATION.contains(name) {
                continue;
            }
            merged.remove(name);
            for value in fresh.get_all(name) {
                merged.append(name.clone(), value.clone());
            }
        }
        merged
    }

    /// Whether this response was selected by the same request header values as
    /// `headers` carries (always, if it does not vary), read in normal form if
    /// `normalize`.
    pub(crate) fn matches(&self, headers: &HeaderMap, normalize: bool) -> bool {
        self.vary.as_ref().is_none_or(|(names, values)| {
            crate::vary::selecting_values(names, headers, normalize) == *values
        })
    }

    /// Its validators, for a conditional request: (`If-None-Match`, `If-Modified-Since`).
    pub(crate) fn validators(&self) -> (Option<HeaderValue>, Option<HeaderValue>) {
        (
            self.headers.get(&header::ETAG),
            self.headers.get(&header::LAST_MODIFIED),
        )
    }

    /// Its age at `now`.
    pub(crate) fn age(&self, now: Instant) -> Duration {
        self.lifetime.age(self.stored_at, now)
    }

    /// Its lifetime, cut short by a soft purge at `softened` (the engine entry's
    /// [`softened_at`](corral::Entry::softened_at)): stale from then on, its
    /// stale-while-revalidate and stale-if-error windows counted from then.
    pub(crate) fn lifetime_softened(&self, softened: Option<Instant>) -> Cow<'_, Lifetime> {
        match softened {
            Some(at) => Cow::Owned(Lifetime {
                fresh_for: self.lifetime.fresh_for.min(self.age(at)),
                ..self.lifetime.clone()
            }),
            None => Cow::Borrowed(&self.lifetime),
        }
    }

    /// Whether a client's conditional request (`If-None-Match`, else
    /// `If-Modified-Since`) matches this response, so a 304 answers it (RFC 9110 §13.2.2).
    pub(crate) fn satisfies_conditional(&self, request: &HeaderMap) -> bool {
        if !self.status.is_success() || request.is_empty() {
            return false;
        }
        if let Some(if_none_match) = request.get(header::IF_NONE_MATCH) {
            let Some(etag) = self.headers.get(&header::ETAG) else {
                return false;
            };
            let Ok(etag) = etag.to_str() else {
                return false;
            };
            let ours = etag.trim_start_matches("W/");
            return if_none_match
                .to_str()
                .ok()
                .into_iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours);
        }
        let Some(since) = request
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
        else {
            return false;
        };
        let modified = self
            .headers
            .get(&header::LAST_MODIFIED)
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok());
        modified.is_some_and(|modified| modified <= since)
    }
}

#[cfg(test)]
impl StoredResponse {
    /// A fresh `200` with `headers` (end-to-end ones kept) and a short body.
    pub(crate) fn sample(headers: &HeaderMap) -> StoredResponse {
        StoredResponse {
            status: StatusCode::OK,
            headers: Fields::from_map(&end_to_end(headers)),
            body: Content::Memory(bytes::Bytes::from_static(b"body")),
            stored_at: Instant::now(),
            lifetime: Lifetime {
                initial_age: Duration::ZERO,
                fresh_for: Duration::from_secs(60),
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                revalidate_when_stale: false,
                always_revalidate: false,
                keep_for: Duration::from_secs(60),
            },
            vary: None,
            provenance: Provenance::Fetched,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::header_map as headers;

    fn stored(h: &[(&str, &str)]) -> StoredResponse {
        StoredResponse::sample(&headers(h))
    }

    #[test]
    fn stored_values_are_copied_out_of_the_buffer_they_were_parsed_from() {
        // As a client parses them: slices of one large read buffer.
        let read_buffer = bytes::Bytes::from(format!("{}max-age=60\"tag\"", " ".repeat(8192)));
        let mut parsed = HeaderMap::new();
        for (name, range) in [("cache-control", 8192..8202), ("etag", 8202..8207)] {
            let value = HeaderValue::from_maybe_shared(read_buffer.slice(range)).unwrap();
            parsed.append(HeaderName::from_static(name), value);
        }
        let kept = stored_headers(StatusCode::OK, &parsed, 0);
        assert_eq!(kept.get(&header::CACHE_CONTROL).unwrap(), "max-age=60");
        assert_eq!(kept.get(&header::ETAG).unwrap(), "\"tag\"");
        let within_read_buffer = |(_, v): (HeaderName, HeaderValue)| {
            let range = read_buffer.as_ptr_range();
            range.contains(&v.as_bytes().as_ptr())
        };
        assert!(!kept.iter().any(within_read_buffer));
    }

    #[test]
    fn hop_by_hop_and_connection_named_fields_are_dropped_and_lists_kept() {
        let h = end_to_end(&headers(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("keep-alive", "timeout=5"),
            ("age", "100"),
            ("link", "</a>; rel=preload"),
            ("link", "</b>; rel=preload"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]));
        assert_eq!(h.len(), 4);
        let links: Vec<_> = h.get_all("link").iter().collect();
        assert_eq!(links, ["</a>; rel=preload", "</b>; rel=preload"]);
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn a_stored_length_is_the_stored_body_s_whatever_the_origin_said() {
        let received = headers(&[
            ("content-length", "0"),
            ("transfer-encoding", "chunked"),
            ("x-kept", "1"),
        ]);
        let h = stored_headers(StatusCode::OK, &received, 1234);
        assert_eq!(
            h.get_all(&header::CONTENT_LENGTH).collect::<Vec<_>>(),
            ["1234"]
        );
        assert!(h.get(&header::TRANSFER_ENCODING).is_none());
        assert_eq!(h.get(&HeaderName::from_static("x-kept")).unwrap(), "1");
        let h = stored_headers(StatusCode::NO_CONTENT, &received, 0);
        assert!(h.get(&header::CONTENT_LENGTH).is_none());
    }

    #[test]
    fn a_304_replaces_the_fields_it_carries_and_keeps_the_body_description() {
        let s = stored(&[
            ("etag", "\"v1\""),
            ("cache-control", "max-age=60"),
            ("content-length", "4"),
            ("x-kept", "yes"),
            ("link", "</a>"),
            ("link", "</b>"),
        ]);
        let merged = s.headers_updated_by(&headers(&[
            ("cache-control", "max-age=120"),
            ("content-length", "0"),
            ("link", "</c>"),
        ]));
        assert_eq!(merged.get("cache-control").unwrap(), "max-age=120");
        assert_eq!(merged.get("content-length").unwrap(), "4");
        assert_eq!(merged.get("x-kept").unwrap(), "yes");
        assert_eq!(merged.get_all("link").iter().collect::<Vec<_>>(), ["</c>"]);
    }

    #[test]
    fn conditional_requests_match_by_etag_then_by_date() {
        let s = stored(&[
            ("etag", "W/\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(s.satisfies_conditional(&headers(&[("if-none-match", "\"v0\", \"v1\"")])));
        assert!(!s.satisfies_conditional(&headers(&[("if-none-match", "\"v2\"")])));
        assert!(s.satisfies_conditional(&headers(&[(
            "if-modified-since",
            "Sun, 06 Nov 1994 08:49:37 GMT"
        )])));
        assert!(!s.satisfies_conditional(&headers(&[(
            "if-modified-since",
            "Sat, 05 Nov 1994 08:49:37 GMT"
        )])));
        assert!(!s.satisfies_conditional(&HeaderMap::new()));
    }
}
