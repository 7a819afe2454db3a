//! Transformers: what a fetched response becomes in the cache. The registration's
//! constructors make them: [`Registration::bytes`](super::Registration::bytes),
//! [`text`](super::Registration::text), [`json`](super::Registration::json), or a
//! function of the response
//! ([`with_transform`](super::Registration::with_transform)).

use std::future::Future;
use std::marker::PhantomData;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Response;
use serde::de::DeserializeOwned;

use crate::body::BoxError;

/// Turns a successful (2xx) response, its body read whole, into the value kept for
/// its URL. An error (or a panic) is a failed refresh: the previous value stays.
pub(crate) trait Transform<T>: Send + Sync + 'static {
    /// Makes the value from `response`.
    fn transform(&self, response: Response<Bytes>) -> BoxFuture<'static, Result<T, BoxError>>;
}

/// An async function of the response.
pub(crate) struct AsyncFn<F>(pub F);

impl<T, F, Fut, E> Transform<T> for AsyncFn<F>
where
    F: Fn(Response<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn transform(&self, response: Response<Bytes>) -> BoxFuture<'static, Result<T, BoxError>> {
        let future = (self.0)(response);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

/// The body, as it came.
pub(crate) struct BytesBody;

impl Transform<Bytes> for BytesBody {
    fn transform(&self, response: Response<Bytes>) -> BoxFuture<'static, Result<Bytes, BoxError>> {
        Box::pin(std::future::ready(Ok(response.into_body())))
    }
}

/// The body as text: it must be UTF-8.
pub(crate) struct Text;

/// A body that [`Registration::text`](super::Registration::text) could not keep: it is
/// not UTF-8. The source of a [`RefreshError::Transform`](super::RefreshError::Transform).
#[derive(Debug, thiserror::Error)]
#[error("the body is not UTF-8 text: {0}")]
pub struct NotUtf8(std::str::Utf8Error);

impl Transform<String> for Text {
    fn transform(&self, response: Response<Bytes>) -> BoxFuture<'static, Result<String, BoxError>> {
        let text = std::str::from_utf8(response.body())
            .map(str::to_owned)
            .map_err(|e| NotUtf8(e).into());
        Box::pin(std::future::ready(text))
    }
}

/// The body parsed as JSON into `T`.
pub(crate) struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    pub(crate) fn new() -> Self {
        Json(PhantomData)
    }
}

impl<T: DeserializeOwned + Send + 'static> Transform<T> for Json<T> {
    fn transform(&self, response: Response<Bytes>) -> BoxFuture<'static, Result<T, BoxError>> {
        let parsed = serde_json::from_slice(response.body()).map_err(Into::into);
        Box::pin(std::future::ready(parsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run<T>(transform: impl Transform<T>, body: &'static [u8]) -> Result<T, BoxError> {
        transform
            .transform(Response::new(Bytes::from_static(body)))
            .await
    }

    #[tokio::test]
    async fn text_keeps_utf8_and_names_what_is_wrong_with_anything_else() {
        assert_eq!(run(Text, "héllo".as_bytes()).await.unwrap(), "héllo");
        let error = run(Text, b"ab\xffcd").await.unwrap_err();
        assert!(error.is::<NotUtf8>());
        assert_eq!(
            error.to_string(),
            "the body is not UTF-8 text: invalid utf-8 sequence of 1 bytes from index 2"
        );
    }
}
