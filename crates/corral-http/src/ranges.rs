//! Range requests answered from a stored response (RFC 9110 §14): one range as a `206`
//! with `Content-Range`, several as `multipart/byteranges`, none satisfiable as a
//! `416`. A `Range` this cache does not serve (another unit, a syntax error, more than
//! [`MOST_RANGES`] ranges, ranges that together ask for more than the whole), an
//! `If-Range` that does not match (§13.1.5), or a stored status other than `200`
//! gets the whole response, as §14.2 allows.

use bytes::BytesMut;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::body::Body;
use crate::content::Content;
use crate::freshness::http_date;
use crate::stored::StoredResponse;
use crate::vary::new_generation;

/// The most ranges one request is served (more is how a request for many small or
/// overlapping ranges makes a server do much work for little: it gets the whole).
pub(crate) const MOST_RANGES: usize = 32;

/// A byte range, first and last byte inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    first: u64,
    last: u64,
}

/// How a stored `200` answers a range request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// The whole response, as if there were no `Range`.
    Whole,
    /// A `206`.
    Partial(Part),
    /// A `416`, with this `Content-Range: bytes */<length>`.
    Unsatisfiable { content_range: HeaderValue },
}

/// A `206`'s body and the fields that describe it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part {
    /// The `Content-Range` of one range; the multipart `Content-Type` of several.
    field: (HeaderName, HeaderValue),
    body: Content,
    /// Where the body lies in the stored one, for one range.
    span: Option<(u64, u64)>,
}

impl Part {
    /// The stored response's `headers` described anew for this part: its
    /// `Content-Length` set to the part's, the part's field added.
    pub(crate) fn describe(&self, headers: &mut HeaderMap) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        if self.field.0 != CONTENT_RANGE {
            // Each part says its range; a stored `Content-Range` describes no part.
            headers.remove(CONTENT_RANGE);
        }
        headers.insert(self.field.0.clone(), self.field.1.clone());
    }

    /// The first and last byte of the stored body this part is, for one range
    /// (several make a body of their own).
    pub(crate) fn span(&self) -> Option<(u64, u64)> {
        self.span
    }

    /// The `206`, with the stored response's `headers` described anew.
    pub(crate) fn respond(self, mut headers: HeaderMap) -> Response<Body> {
        self.describe(&mut headers);
        partial(headers, &self.body)
    }
}

/// A `206` of `headers` (already describing it) and `body`.
pub(crate) fn partial(headers: HeaderMap, body: &Content) -> Response<Body> {
    let mut response = Response::new(body.body());
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    *response.headers_mut() = headers;
    response
}

/// How `range` (with the request's `If-Range`) is answered from `stored`.
pub(crate) fn answer(
    range: &HeaderValue,
    if_range: Option<&HeaderValue>,
    stored: &StoredResponse,
) -> Ranged {
    if stored.status != StatusCode::OK {
        return Ranged::Whole;
    }
    if let Some(if_range) = if_range
        && !if_range_matches(if_range, stored)
    {
        return Ranged::Whole;
    }
    let body = &stored.body;
    let length = body.len();
    let Ok(range) = range.to_str() else {
        return Ranged::Whole;
    };
    // One range (the common case) without a list to hold it.
    let one = range
        .strip_prefix("bytes=")
        .filter(|spec| !spec.contains(','))
        .map(|spec| span(spec.trim(), length));
    let spans = match one {
        Some(Ok(Some(span))) => return one_part(body, span),
        Some(Ok(None)) => return unsatisfiable(length),
        Some(Err(())) => return Ranged::Whole,
        None => match spans(range, length) {
            Some(spans) => spans,
            None => return Ranged::Whole,
        },
    };
    let asked: u64 = spans.iter().map(|s| s.last - s.first + 1).sum();
    match spans.as_slice() {
        [] => return unsatisfiable(length),
        [span] => return one_part(body, *span),
        _ if asked > length => return Ranged::Whole,
        _ => {}
    }
    // Several ranges of a body on disk get the whole (§14.2 allows it): parts are
    // made in memory.
    let Some(body) = body.in_memory() else {
        return Ranged::Whole;
    };
    let slice = |span: &Span| body.slice(span.first as usize..=span.last as usize);
    // A boundary no one can guess, so no stored body can hold it (§14.6).
    let boundary = format!("{:016x}{:016x}", new_generation(), new_generation());
    let content_type = stored.headers.get(&CONTENT_TYPE);
    let mut multipart = BytesMut::with_capacity(asked as usize + spans.len() * 128);
    for span in &spans {
        multipart.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if let Some(content_type) = &content_type {
            multipart.extend_from_slice(b"content-type: ");
            multipart.extend_from_slice(content_type.as_bytes());
            multipart.extend_from_slice(b"\r\n");
        }
        multipart.extend_from_slice(b"content-range: ");
        multipart.extend_from_slice(content_range(span, length).as_bytes());
        multipart.extend_from_slice(b"\r\n\r\n");
        multipart.extend_from_slice(&slice(span));
        multipart.extend_from_slice(b"\r\n");
    }
    multipart.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let content_type = header(format!("multipart/byteranges; boundary={boundary}"));
    Ranged::Partial(Part {
        field: (CONTENT_TYPE, content_type),
        body: Content::Memory(multipart.freeze()),
        span: None,
    })
}

/// A `206` of one range.
fn one_part(body: &Content, span: Span) -> Ranged {
    let (first, last) = (span.first, span.last);
    Ranged::Partial(Part {
        field: (CONTENT_RANGE, header(content_range(&span, body.len()))),
        body: body.slice(first, last),
        span: Some((first, last)),
    })
}

/// A `416`: `bytes */<length>`.
fn unsatisfiable(length: u64) -> Ranged {
    let mut text = String::with_capacity(32);
    text.push_str("bytes */");
    text.push_str(itoa::Buffer::new().format(length));
    Ranged::Unsatisfiable {
        content_range: header(text),
    }
}

/// `bytes <first>-<last>/<length>`.
fn content_range(span: &Span, length: u64) -> String {
    let mut number = itoa::Buffer::new();
    let mut text = String::with_capacity(48);
    text.push_str("bytes ");
    text.push_str(number.format(span.first));
    text.push('-');
    text.push_str(number.format(span.last));
    text.push('/');
    text.push_str(number.format(length));
    text
}

/// A field value made of digits, letters and `-/=; *` (never invalid).
fn header(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether `If-Range` names the stored representation (§13.1.5): a strong entity tag
/// equal to its strong `ETag`, or a date equal to its `Last-Modified`.
fn if_range_matches(if_range: &HeaderValue, stored: &StoredResponse) -> bool {
    let Ok(if_range) = if_range.to_str() else {
        return false;
    };
    if if_range.starts_with('"') {
        let etag = stored.headers.get(&ETAG);
        return etag.is_some_and(|etag| etag.as_bytes() == if_range.as_bytes());
    }
    if if_range.starts_with("W/") {
        return false;
    }
    let modified = stored.headers.get(&LAST_MODIFIED);
    let modified = modified.and_then(|v| v.to_str().ok().and_then(http_date));
    modified.is_some_and(|modified| http_date(if_range) == Some(modified))
}

/// The bytes a `bytes=` range set (§14.1.2) names of a representation of `length`
/// bytes, those it cannot name (past the end, an empty suffix) left out; `None` for
/// another unit, a syntax error, or more than [`MOST_RANGES`].
fn spans(value: &str, length: u64) -> Option<Vec<Span>> {
    let (unit, set) = value.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (mut specs, mut spans) = (0, Vec::new());
    // Empty list elements are allowed, and ignored (RFC 9110 §5.6.1.2).
    for spec in set.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        specs += 1;
        if specs > MOST_RANGES {
            return None;
        }
        spans.extend(span(spec, length).ok()?);
    }
    (specs > 0).then_some(spans)
}

/// The bytes one `range-spec` names of `length` bytes (`None` if none); `Err` for a
/// syntax error.
fn span(spec: &str, length: u64) -> Result<Option<Span>, ()> {
    let end = length.checked_sub(1);
    let (first, last) = spec.split_once('-').ok_or(())?;
    Ok(match (number(first), number(last)) {
        // `-n`: the last n bytes.
        (None, Some(n)) if first.is_empty() => end.filter(|_| n > 0).map(|end| Span {
            first: length.saturating_sub(n),
            last: end,
        }),
        // `first-`, and `first-last`.
        (Some(first), None) if last.is_empty() => end
            .filter(|&end| first <= end)
            .map(|end| Span { first, last: end }),
        (Some(first), Some(last)) if first <= last => {
            end.filter(|&end| first <= end).map(|end| Span {
                first,
                last: last.min(end),
            })
        }
        _ => return Err(()),
    })
}

/// A non-empty run of digits as a number (`None` past `u64`).
fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::testing::header_map;

    fn body() -> Bytes {
        Bytes::from_static(b"0123456789")
    }

    fn stored(status: StatusCode) -> StoredResponse {
        let fields = header_map(&[
            ("etag", "\"v1\""),
            ("last-modified", "Sun, 29 Nov 2026 01:00:00 GMT"),
            ("content-type", "text/plain"),
        ]);
        StoredResponse {
            status,
            body: body().into(),
            ..StoredResponse::sample(&fields)
        }
    }

    fn ranged(range: &str, if_range: Option<&str>) -> Ranged {
        let if_range = if_range.map(|v| HeaderValue::from_str(v).unwrap());
        let range = HeaderValue::from_str(range).unwrap();
        answer(&range, if_range.as_ref(), &stored(StatusCode::OK))
    }

    fn partial(range: &str) -> (String, Bytes) {
        match ranged(range, None) {
            Ranged::Partial(Part {
                field: (CONTENT_RANGE, value),
                body,
                ..
            }) => (
                value.to_str().unwrap().to_owned(),
                body.in_memory().unwrap().clone(),
            ),
            other => panic!("{range}: {other:?}"),
        }
    }

    #[test]
    fn one_range_in_each_form() {
        assert_eq!(
            partial("bytes=0-3"),
            ("bytes 0-3/10".into(), Bytes::from_static(b"0123"))
        );
        assert_eq!(
            partial("bytes=7-"),
            ("bytes 7-9/10".into(), Bytes::from_static(b"789"))
        );
        assert_eq!(
            partial("bytes=-2"),
            ("bytes 8-9/10".into(), Bytes::from_static(b"89"))
        );
        assert_eq!(
            partial("BYTES = 8-100"),
            ("bytes 8-9/10".into(), Bytes::from_static(b"89"))
        );
        assert_eq!(partial("bytes=-100"), ("bytes 0-9/10".into(), body()));
        assert_eq!(
            partial("bytes=,5-5,"),
            ("bytes 5-5/10".into(), Bytes::from_static(b"5"))
        );
    }

    #[test]
    fn several_ranges_are_multipart_with_an_unguessable_boundary() {
        let Ranged::Partial(Part {
            field: (CONTENT_TYPE, content_type),
            body,
            span: None,
        }) = ranged("bytes=0-1, -2", None)
        else {
            panic!("multipart")
        };
        let content_type = content_type.to_str().unwrap();
        let boundary = content_type
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap();
        assert_eq!(boundary.len(), 32);
        let expected = format!(
            "--{boundary}\r\ncontent-type: text/plain\r\ncontent-range: bytes 0-1/10\r\n\r\n01\r\n\
             --{boundary}\r\ncontent-type: text/plain\r\ncontent-range: bytes 8-9/10\r\n\r\n89\r\n\
             --{boundary}--\r\n"
        );
        assert_eq!(body, *expected.as_bytes());
    }

    #[test]
    fn unsatisfiable_ranges_are_a_416_with_the_length() {
        for range in ["bytes=10-", "bytes=10-20, 30-40", "bytes=-0"] {
            let Ranged::Unsatisfiable { content_range } = ranged(range, None) else {
                panic!("{range}")
            };
            assert_eq!(content_range, "bytes */10");
        }
    }

    #[test]
    fn what_is_not_served_as_ranges_gets_the_whole() {
        let many = format!("bytes={}", vec!["0-0"; MOST_RANGES + 1].join(","));
        for range in [
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=0-1-2",
            "bytes=",
            "bytes 0-1",
            "bytes=0-99999999999999999999999",
            "bytes=0-9, 0-9",
            many.as_str(),
        ] {
            assert_eq!(ranged(range, None), Ranged::Whole, "{range}");
        }
        let range = HeaderValue::from_static("bytes=0-1");
        let not_found = answer(&range, None, &stored(StatusCode::NOT_FOUND));
        assert_eq!(not_found, Ranged::Whole);
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        assert!(matches!(
            ranged("bytes=0-1", Some("\"v1\"")),
            Ranged::Partial { .. }
        ));
        assert!(matches!(
            ranged("bytes=0-1", Some("Sun, 29 Nov 2026 01:00:00 GMT")),
            Ranged::Partial { .. }
        ));
        for other in [
            "\"v2\"",
            "W/\"v1\"",
            "Sun, 29 Nov 2026 01:00:01 GMT",
            "soon",
        ] {
            assert_eq!(ranged("bytes=0-1", Some(other)), Ranged::Whole, "{other}");
        }
    }
}
