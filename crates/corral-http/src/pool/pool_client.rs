//! `PoolClient`: the pool for an application that is not a peer. Each request goes to
//! its owner; if the owner is down, to the next peer on the ring.

use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response, Uri};
use tower::Service;

use super::error::PoolError;
use super::forward::replayable;
use super::members::Pool;
use crate::body::{Body, BoxError};

impl Pool {
    /// A client that sends each request to its owner; see [`PoolClient`].
    pub fn client(&self) -> PoolClient {
        PoolClient::new(self.clone())
    }
}

/// A tower HTTP client that sends each request (with an absolute `http(s)` URL) to
/// the peer that owns it; from [`Pool::client`]. Put an
/// [`HttpCache`](crate::HttpCache) in front of it for a private cache on top of the
/// pool's shared one.
///
/// When the owner cannot be reached, a request without a body goes to the next
/// peer on the ring; one whose body was sent fails with the peer's error.
///
/// [`get`](Self::get) is one GET, what Go's forwardcache spells
/// `pool.Client().Get(url)`; [`request`](Self::request) sends any request; as a tower
/// `Service` it takes any request body.
#[derive(Clone, Debug)]
pub struct PoolClient {
    pool: Pool,
}

impl PoolClient {
    pub(super) fn new(pool: Pool) -> Self {
        PoolClient { pool }
    }

    /// GETs `url` (absolute, `http` or `https`) from the peer that owns it, or the
    /// next one on the ring if the owner is down. The response is the owner's (its
    /// body streams); an error means no peer answered, or `url` is not an absolute
    /// URL ([`PoolError::NotAbsolute`]).
    ///
    /// ```no_run
    /// use corral_http::pool::Pool;
    /// use http_body_util::BodyExt;
    ///
    /// # async fn run() -> Result<(), corral_http::BoxError> {
    /// let pool = Pool::builder()
    ///     .peers(["http://10.0.0.1:8080", "http://10.0.0.2:8080"])
    ///     .secret(std::env::var("CORRAL_PEER_SECRET")?)
    ///     .build()?;
    /// let client = pool.client();
    ///
    /// let response = client.get("https://images.example.com/logo.png").await?;
    /// println!("{} from the owner", response.status());
    /// let logo = response.into_body().collect().await?.to_bytes();
    /// # let _ = logo; Ok(()) }
    /// ```
    pub async fn get(&self, url: &str) -> Result<Response<Body>, BoxError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| PoolError::NotAbsolute(url.to_owned()))?;
        self.request(Request::get(uri).body(Body::empty())?).await
    }

    /// Sends `request` (with an absolute `http(s)` URL, any method and body) to the
    /// peer that owns its URL: the tower [`Service`] call without `poll_ready` (the
    /// client is always ready).
    ///
    /// ```no_run
    /// # async fn run(client: corral_http::pool::PoolClient) -> Result<(), corral_http::BoxError> {
    /// let head = http::Request::head("https://images.example.com/logo.png")
    ///     .header("accept", "image/*")
    ///     .body(corral_http::Body::empty())?;
    /// let response = client.request(head).await?;
    /// println!("{:?}", response.headers().get("content-length"));
    /// # Ok(()) }
    /// ```
    pub async fn request<B>(&self, request: Request<B>) -> Result<Response<Body>, BoxError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.clone().call(request).await
    }
}

impl<B> Service<Request<B>> for PoolClient
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let pool = self.pool.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // The URI names the resource (a `Host` header is not consulted).
            let url = match (parts.uri.scheme_str(), parts.uri.authority()) {
                (Some("http" | "https"), Some(_)) => parts.uri.to_string(),
                _ => return Err(PoolError::NotAbsolute(parts.uri.to_string()).into()),
            };
            let mut request = Some(Request::from_parts(parts, Body::streaming(body)));
            let mut last_failure = None;
            for peer in pool.candidates(&url) {
                let Some(sending) = request.take() else {
                    break;
                };
                let replay = replayable(&sending);
                match pool.forward(&peer, &url, sending).await {
                    Ok(response) => return Ok(response),
                    Err(unavailable) => {
                        last_failure = Some(unavailable);
                        request = replay.map(|parts| Request::from_parts(parts, Body::empty()));
                    }
                }
            }
            Err(match last_failure {
                Some(unavailable) => unavailable.into(),
                None => PoolError::NoPeer { url }.into(),
            })
        })
    }
}
