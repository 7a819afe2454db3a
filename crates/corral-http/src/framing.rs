//! Message framing (RFC 9112 §6), decided in one place on each side. A request handed
//! to the inner service (toward an origin) is framed by the body it really carries, and
//! a response handed back (toward a client) by the body it really carries: never by a
//! `Content-Length`, `Transfer-Encoding` or `Expect` that a client, an origin or a
//! stored response said. A message whose length header disagreed with its body is how
//! one user's request is smuggled into another's connection.

use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Body as HttpBody;

/// Whether a body carries no bytes, as far as it can tell before it is read.
pub(crate) fn is_empty<B: HttpBody>(body: &B) -> bool {
    body.is_end_stream() || body.size_hint().exact() == Some(0)
}

/// Frames a request by the body sent with it: no `Expect` (the body is already on its
/// way), no `Transfer-Encoding` of the client's, and a `Content-Length` that is the
/// body's exact length, or none when the length is not known (the client then chunks
/// it; a GET or HEAD says `Transfer-Encoding: chunked` itself, as an HTTP/1.1 client
/// sends no body at all for one that says neither). A bodiless POST, PUT or PATCH
/// says `Content-Length: 0` (RFC 9110 §8.6); other bodiless requests say nothing.
pub(crate) fn frame_request<B: HttpBody>(method: &Method, headers: &mut HeaderMap, body: &B) {
    headers.remove(EXPECT);
    headers.remove(TRANSFER_ENCODING);
    if is_empty(body) {
        if [Method::POST, Method::PUT, Method::PATCH].contains(method) {
            set_length(headers, 0);
        } else {
            headers.remove(CONTENT_LENGTH);
        }
        return;
    }
    match body.size_hint().exact() {
        Some(length) => set_length(headers, length),
        None => {
            headers.remove(CONTENT_LENGTH);
            if matches!(*method, Method::GET | Method::HEAD) {
                headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            }
        }
    }
}

/// Frames a request the cache sends without a body (a fetch or a revalidation built
/// from a client's GET or HEAD): nothing in it may claim one, and it asks for no
/// protocol switch.
pub(crate) fn frame_bodiless(headers: &mut HeaderMap) {
    for name in [CONTENT_LENGTH, TRANSFER_ENCODING, EXPECT, UPGRADE] {
        headers.remove(name);
    }
}

/// Frames a response by the body it is written with. A response to a HEAD, and a 304,
/// keep a `Content-Length` that is one valid length (it describes the representation,
/// not the empty body); 1xx and 204 responses carry none; any other response carries
/// its body's exact length, or none when that is not known (the server then chunks it,
/// or closes the connection after it).
pub(crate) fn frame_response<B: HttpBody>(
    status: StatusCode,
    headers: &mut HeaderMap,
    body: &B,
    head: bool,
) {
    if headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(TRANSFER_ENCODING);
    }
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        headers.remove(CONTENT_LENGTH);
    } else if head || status == StatusCode::NOT_MODIFIED {
        if headers.contains_key(CONTENT_LENGTH) && declared_length(headers).is_none() {
            headers.remove(CONTENT_LENGTH);
        }
    } else {
        match body.size_hint().exact() {
            Some(length) => set_length(headers, length),
            None => {
                headers.remove(CONTENT_LENGTH);
            }
        }
    }
}

/// Removes a `Content-Length` received beside `Transfer-Encoding`: the transfer coding
/// framed the message, and an intermediary must not pass that length on (RFC 9112
/// §6.3). Done to every response as it arrives, before anything reads its headers.
pub(crate) fn drop_overridden_length(headers: &mut HeaderMap) {
    if headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
    }
}

/// The one length `Content-Length` declares: `None` if it is absent, malformed, or
/// given several times with different values.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut declared = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.to_str().ok()?.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let length = part.parse::<u64>().ok()?;
            if declared.is_some_and(|d| d != length) {
                return None;
            }
            declared = Some(length);
        }
    }
    declared
}

/// Sets `Content-Length` to `length`, leaving a header that already says exactly that
/// untouched (the hit path pays no formatting for a stored response's own length).
fn set_length(headers: &mut HeaderMap, length: u64) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(length);
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let already = values
        .next()
        .is_some_and(|v| v.as_bytes() == digits.as_bytes())
        && values.next().is_none();
    if !already {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
}

/// An origin answered `101 Switching Protocols` to a request that did not ask to switch:
/// nothing after that head is an HTTP response, so it is not passed on.
#[derive(Debug, thiserror::Error)]
#[error("the origin switched protocols (101) for a request that did not ask to upgrade")]
pub(crate) struct UnaskedUpgrade;

/// Checks that a response's status fits the request it answers.
pub(crate) fn check_switch(
    status: StatusCode,
    request_asked_upgrade: bool,
) -> Result<(), UnaskedUpgrade> {
    if status == StatusCode::SWITCHING_PROTOCOLS && !request_asked_upgrade {
        return Err(UnaskedUpgrade);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{Empty, Full, StreamBody};

    use super::*;
    use crate::testing::header_map as headers;

    fn streaming() -> impl HttpBody<Data = Bytes> {
        let frames: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> =
            vec![Ok(http_body::Frame::data(Bytes::from_static(b"abc")))];
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[test]
    fn a_bodiless_get_claims_no_body_whatever_the_client_said() {
        let mut h = headers(&[
            ("content-length", "52"),
            ("expect", "100-continue"),
            ("transfer-encoding", "chunked"),
            ("x-kept", "1"),
        ]);
        frame_request(&Method::GET, &mut h, &Empty::<Bytes>::new());
        assert_eq!(h, headers(&[("x-kept", "1")]));
    }

    #[test]
    fn a_bodiless_post_says_its_length_is_zero() {
        let mut h = headers(&[("content-length", "10")]);
        frame_request(&Method::POST, &mut h, &Empty::<Bytes>::new());
        assert_eq!(h.get(CONTENT_LENGTH).unwrap(), "0");
    }

    #[test]
    fn a_body_of_known_length_is_framed_by_that_length() {
        let mut h = headers(&[("content-length", "3"), ("content-length", "99")]);
        frame_request(
            &Method::GET,
            &mut h,
            &Full::new(Bytes::from_static(b"abcd")),
        );
        assert_eq!(h.get_all(CONTENT_LENGTH).iter().collect::<Vec<_>>(), ["4"]);
    }

    #[test]
    fn a_body_of_unknown_length_is_chunked_even_on_a_get() {
        let mut h = headers(&[("content-length", "3")]);
        frame_request(&Method::GET, &mut h, &streaming());
        assert!(!h.contains_key(CONTENT_LENGTH));
        assert_eq!(h.get(TRANSFER_ENCODING).unwrap(), "chunked");
        let mut h = headers(&[("content-length", "3"), ("transfer-encoding", "gzip")]);
        frame_request(&Method::POST, &mut h, &streaming());
        assert!(h.is_empty(), "the client chunks it: {h:?}");
    }

    #[test]
    fn a_cache_fetch_drops_every_claim_of_a_body_and_of_a_switch() {
        let mut h = headers(&[
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
            ("expect", "100-continue"),
            ("upgrade", "websocket"),
        ]);
        frame_bodiless(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn a_response_is_framed_by_its_body_not_by_its_headers() {
        let body = Full::new(Bytes::from_static(b"hello"));
        let mut h = headers(&[("content-length", "0"), ("transfer-encoding", "chunked")]);
        frame_response(StatusCode::OK, &mut h, &body, false);
        assert_eq!(h.get(CONTENT_LENGTH).unwrap(), "5");
        assert!(!h.contains_key(TRANSFER_ENCODING));
        let mut h = headers(&[("content-length", "7")]);
        frame_response(StatusCode::OK, &mut h, &streaming(), false);
        assert!(!h.contains_key(CONTENT_LENGTH), "unknown length: chunked");
    }

    #[test]
    fn head_and_304_keep_a_valid_length_and_lose_a_bad_one() {
        let empty = Empty::<Bytes>::new();
        for status in [StatusCode::OK, StatusCode::NOT_MODIFIED] {
            let head = status == StatusCode::OK;
            let mut h = headers(&[("content-length", "1234")]);
            frame_response(status, &mut h, &empty, head);
            assert_eq!(h.get(CONTENT_LENGTH).unwrap(), "1234");
            let mut h = headers(&[("content-length", "12"), ("content-length", "13")]);
            frame_response(status, &mut h, &empty, head);
            assert!(!h.contains_key(CONTENT_LENGTH));
        }
    }

    #[test]
    fn no_content_and_informational_responses_carry_no_length() {
        for status in [StatusCode::NO_CONTENT, StatusCode::CONTINUE] {
            let mut h = headers(&[("content-length", "3")]);
            frame_response(status, &mut h, &Empty::<Bytes>::new(), false);
            assert!(!h.contains_key(CONTENT_LENGTH));
        }
    }

    #[test]
    fn declared_lengths_must_agree_and_be_digits() {
        assert_eq!(
            declared_length(&headers(&[("content-length", "5")])),
            Some(5)
        );
        assert_eq!(
            declared_length(&headers(&[("content-length", "5, 5")])),
            Some(5)
        );
        for bad in ["5, 6", "-1", "+5", "", "0x10", "99999999999999999999999"] {
            assert_eq!(
                declared_length(&headers(&[("content-length", bad)])),
                None,
                "{bad}"
            );
        }
        assert_eq!(declared_length(&HeaderMap::new()), None);
    }

    #[test]
    fn a_switch_nobody_asked_for_is_refused() {
        assert!(check_switch(StatusCode::SWITCHING_PROTOCOLS, false).is_err());
        assert!(check_switch(StatusCode::SWITCHING_PROTOCOLS, true).is_ok());
        assert!(check_switch(StatusCode::OK, false).is_ok());
    }
}
