//! Transformers: what a fetched response becomes in the cache. Any async function
//! of the response is one; [`BytesBody`] and [`Json`] are ready-made.

use std::future::Future;
use std::marker::PhantomData;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Response;
use serde::de::DeserializeOwned;

use crate::body::BoxError;

/// Turns a successful (2xx) response, its body read whole, into the value kept for
/// its URL. An error (or a panic) is a failed refresh: the previous value stays.
///
/// Closures are transformers:
///
/// ```
/// use bytes::Bytes;
/// use corral_http::refresh::Registration;
///
/// // Keep the body as text, refusing anything but UTF-8.
/// let text = Registration::with_transform(|response: http::Response<Bytes>| async move {
///     String::from_utf8(response.into_body().to_vec())
/// });
/// # let _: Registration<String> = text;
/// ```
pub trait Transform<T>: Send + Sync + 'static {
    /// Makes the value from `response`.
    fn transform(&self, response: Response<Bytes>) -> BoxFuture<'static, Result<T, BoxError>>;
}

impl<T, F, Fut, E> Transform<T> for F
where
    F: Fn(Response<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn transform(&self, response: Response<Bytes>) -> BoxFuture<'static, Result<T, BoxError>> {
        let future = self(response);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

/// The body, as it came.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesBody;

impl Transform<Bytes> for BytesBody {
    fn transform(&self, response: Response<Bytes>) -> BoxFuture<'static, Result<Bytes, BoxError>> {
        Box::pin(std::future::ready(Ok(response.into_body())))
    }
}

/// The body parsed as JSON into `T`.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// The JSON transformer for `T`.
    pub fn new() -> Self {
        Json(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Json::new()
    }
}

impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Json")
    }
}

impl<T: DeserializeOwned + Send + 'static> Transform<T> for Json<T> {
    fn transform(&self, response: Response<Bytes>) -> BoxFuture<'static, Result<T, BoxError>> {
        let parsed = serde_json::from_slice(response.body()).map_err(Into::into);
        Box::pin(std::future::ready(parsed))
    }
}
