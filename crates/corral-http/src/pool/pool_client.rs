//! `PoolClient`: the pool for an application that is not a peer. Each request goes to
//! its owner; if the owner is down, to the next peer on the ring.

use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
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
#[derive(Clone, Debug)]
pub struct PoolClient {
    pool: Pool,
}

impl PoolClient {
    pub(super) fn new(pool: Pool) -> Self {
        PoolClient { pool }
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
