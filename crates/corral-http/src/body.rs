//! The response body [`HttpCache`](crate::HttpCache) returns, and reading an upstream
//! body into memory up to a limit without ever truncating it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

/// Errors of streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A client's request body failed while it was read (malformed chunked coding, fewer
/// bytes than its `Content-Length` said): the request's fault, not the origin's. An
/// upstream request that fails because of it is answered `400 Bad Request`, not `502`.
/// Wrap a client's body with [`Body::from_client`] so its errors say so.
#[derive(Debug, thiserror::Error)]
#[error("the request body could not be read: {0}")]
pub struct RequestBodyError(#[source] pub BoxError);

impl RequestBodyError {
    /// The `RequestBodyError` behind `error`, if any (looking through its sources).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a RequestBodyError> {
        find_cause(error)
    }
}

/// The first error of type `T` in `error`'s chain of sources (itself included).
pub(crate) fn find_cause<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// A response body: a stored body served from memory, or an upstream body streamed
/// through.
pub struct Body {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    #[cfg(feature = "disk")]
    Disk(crate::disk_body::DiskRead),
    Stream {
        buffered: VecDeque<Frame<Bytes>>,
        rest: Option<UnsyncBoxBody<Bytes, BoxError>>,
    },
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Body {
            kind: Kind::Full(None),
        }
    }

    /// A body of these bytes.
    pub fn full(bytes: Bytes) -> Self {
        Body {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// A short plain-text response of this status: what a cache, a pool or a proxy
    /// says itself (a failure, a refusal).
    ///
    /// ```
    /// let refused = corral_http::Body::text_response(http::StatusCode::FORBIDDEN, "no\n");
    /// assert_eq!(refused.headers()["content-type"], "text/plain; charset=utf-8");
    /// ```
    pub fn text_response(status: http::StatusCode, text: impl Into<Bytes>) -> http::Response<Body> {
        let mut response = http::Response::new(Body::full(text.into()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }

    /// Streams another body through.
    pub fn streaming<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Body {
            kind: Kind::Stream {
                buffered: VecDeque::new(),
                rest: Some(body.map_err(Into::into).boxed_unsync()),
            },
        }
    }

    /// A client's request body, streamed on: its errors become [`RequestBodyError`]s.
    pub fn from_client<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Body::streaming(body.map_err(|e| RequestBodyError(e.into())))
    }

    /// A body kept on disk, read in chunks as it is sent (following its writer while
    /// it is still being written).
    #[cfg(feature = "disk")]
    pub(crate) fn disk(blob: corral::disk::DiskBlob) -> Self {
        Body {
            kind: Kind::Disk(crate::disk_body::DiskRead::new(blob)),
        }
    }

    fn resumed(
        buffered: VecDeque<Frame<Bytes>>,
        rest: Option<UnsyncBoxBody<Bytes, BoxError>>,
    ) -> Self {
        Body {
            kind: Kind::Stream { buffered, rest },
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Full(b) => f
                .debug_tuple("Body::Full")
                .field(&b.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Stream { .. } => f.write_str("Body::Stream"),
            #[cfg(feature = "disk")]
            Kind::Disk(read) => f.debug_tuple("Body::Disk").field(read).finish(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body::full(bytes)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            #[cfg(feature = "disk")]
            Kind::Disk(read) => read.poll_chunk(cx),
            Kind::Stream { buffered, rest } => {
                if let Some(frame) = buffered.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                match rest {
                    Some(body) => Pin::new(body).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            #[cfg(feature = "disk")]
            Kind::Disk(read) => read.remaining() == 0,
            Kind::Stream { buffered, rest } => {
                buffered.is_empty() && rest.as_ref().is_none_or(|b| b.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            #[cfg(feature = "disk")]
            Kind::Disk(read) => SizeHint::with_exact(read.remaining()),
            Kind::Stream { buffered, rest } => {
                let held: u64 = buffered
                    .iter()
                    .filter_map(|f| f.data_ref())
                    .map(|d| d.len() as u64)
                    .sum();
                let rest = rest
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint());
                // Built afresh: raising the lower bound of an exact hint first would
                // put it above the upper one (which `SizeHint` refuses with a panic).
                let mut hint = SizeHint::new();
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(held));
                }
                hint.set_lower(rest.lower().saturating_add(held));
                hint
            }
        }
    }
}

/// What reading a body up to a limit gave.
pub(crate) enum Collected {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// The body is larger than the limit (or carries trailers, which are not stored):
    /// here it is again, whole, to stream on: the frames read so far, then the rest.
    Oversized(Body),
    /// The body failed part way; nothing of it may be used.
    Failed(BoxError),
}

/// Reads `body` into memory if it fits in `limit` bytes; otherwise gives it back whole.
pub(crate) async fn collect(mut body: Body, limit: usize) -> Collected {
    if http_body::Body::size_hint(&body).lower() > limit as u64 {
        return Collected::Oversized(body);
    }
    let mut frames = VecDeque::new();
    // A body of known length is copied into a buffer of exactly its size.
    let expected = http_body::Body::size_hint(&body).lower().min(limit as u64);
    let mut data = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(limit));
    loop {
        match body.frame().await {
            None => return Collected::Whole(data.freeze()),
            Some(Err(error)) => return Collected::Failed(error),
            Some(Ok(frame)) => {
                let over = frame
                    .data_ref()
                    .is_none_or(|d| data.len() + d.len() > limit);
                if over {
                    frames.push_back(frame);
                    let mut buffered: VecDeque<Frame<Bytes>> = VecDeque::new();
                    if !data.is_empty() {
                        buffered.push_back(Frame::data(data.freeze()));
                    }
                    buffered.extend(frames);
                    return Collected::Oversized(Body::resumed(buffered, Some(body.into_rest())));
                }
                if let Some(d) = frame.data_ref() {
                    data.extend_from_slice(d);
                }
            }
        }
    }
}

impl Body {
    /// What is left of a streaming body (the frames it still holds, then its source).
    fn into_rest(self) -> UnsyncBoxBody<Bytes, BoxError> {
        match self.kind {
            Kind::Full(bytes) => http_body_util::Full::new(bytes.unwrap_or_default())
                .map_err(|never| match never {})
                .boxed_unsync(),
            Kind::Stream { buffered, rest } if buffered.is_empty() => rest.unwrap_or_else(|| {
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed_unsync()
            }),
            kind => Body { kind }.boxed_unsync(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn chunks(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        Body::streaming(StreamBody::new(futures_util::stream::iter(frames)))
    }

    async fn all(body: Body) -> Vec<u8> {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        match collect(chunks(&[b"ab", b"cd"]), 4).await {
            Collected::Whole(b) => assert_eq!(&b[..], b"abcd"),
            _ => panic!("expected the whole body"),
        }
    }

    #[tokio::test]
    async fn an_oversized_body_is_given_back_untruncated() {
        match collect(chunks(&[b"ab", b"cd", b"ef"]), 3).await {
            Collected::Oversized(rest) => assert_eq!(all(rest).await, b"abcdef"),
            _ => panic!("expected the body back"),
        }
    }

    #[tokio::test]
    async fn a_known_length_over_the_limit_is_not_read_at_all() {
        let body = Body::full(Bytes::from_static(b"0123456789"));
        match collect(body, 5).await {
            Collected::Oversized(rest) => assert_eq!(all(rest).await, b"0123456789"),
            _ => panic!("expected the body back"),
        }
    }

    #[tokio::test]
    async fn a_failing_body_is_a_failure() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Err("reset".into()),
        ];
        let body = Body::streaming(StreamBody::new(futures_util::stream::iter(frames)));
        assert!(matches!(collect(body, 100).await, Collected::Failed(_)));
    }

    /// A body of known length that ends with trailers, as an HTTP/2 origin's with a
    /// `content-length` does: its hint is exact, and exactly 0 once the data is read.
    struct KnownThenTrailers(VecDeque<Frame<Bytes>>);

    impl http_body::Body for KnownThenTrailers {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }

        fn size_hint(&self) -> SizeHint {
            let left = self
                .0
                .iter()
                .filter_map(Frame::data_ref)
                .map(Bytes::len)
                .sum::<usize>();
            SizeHint::with_exact(left as u64)
        }
    }

    #[tokio::test]
    async fn a_body_given_back_after_its_trailers_says_how_long_it_is() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", "1".parse().unwrap());
        let body = Body::streaming(KnownThenTrailers(VecDeque::from([
            Frame::data(Bytes::from_static(b"hello")),
            Frame::trailers(trailers),
        ])));
        let Collected::Oversized(rest) = collect(body, 100).await else {
            panic!("expected the body back");
        };
        let hint = http_body::Body::size_hint(&rest);
        assert_eq!((hint.lower(), hint.upper()), (5, Some(5)));
        let collected = rest.collect().await.unwrap();
        assert!(collected.trailers().is_some());
        assert_eq!(&collected.to_bytes()[..], b"hello");
    }

    #[tokio::test]
    async fn trailers_make_a_body_unstorable_but_still_delivered() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = Body::streaming(StreamBody::new(futures_util::stream::iter(frames)));
        match collect(body, 100).await {
            Collected::Oversized(rest) => {
                let collected = rest.collect().await.unwrap();
                assert_eq!(
                    collected.trailers().unwrap().get("grpc-status").unwrap(),
                    "0"
                );
                assert_eq!(&collected.to_bytes()[..], b"ab");
            }
            _ => panic!("expected the body back"),
        }
    }
}
