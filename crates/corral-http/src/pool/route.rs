//! `Route`: a peer's front door. Peer requests from other processes are checked and
//! served locally; requests this process owns go to the local service; the others
//! go to their owner (through the hot cache, if there is one), and come back to the
//! local service if the owner is down.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};

use super::accept::Accepted;
use super::forward::{bad_gateway, replayable};
use super::{PeerUnavailable, Pool, PoolError, mark_peer_answer, request_url, ring_key};
use crate::body::{Body, BoxError};
use crate::{HttpCache, UpstreamError};

/// Makes [`Route`]s; from [`Pool::route_layer`].
#[derive(Clone)]
pub struct RouteLayer {
    pool: Pool,
    hot: Option<HttpCache<ToOwner>>,
}

impl RouteLayer {
    pub(super) fn new(pool: Pool) -> Result<RouteLayer, PoolError> {
        let hot = pool
            .inner
            .hot
            .map(|(max_bytes, max_keep)| {
                HttpCache::builder()
                    .name("corral-hot")
                    .max_bytes(max_bytes)
                    .max_keep(max_keep)
                    .keep_stale_for(Duration::ZERO)
                    // Keyed by the URL the request is routed by (its Host first), so
                    // names served by one origin never share copies.
                    .key(|parts| request_url(parts).map(|url| ring_key(&url)))
                    // Longer than the peer timeout: a slow owner is a peer failure
                    // (and a local fallback), not the hot cache's own 504.
                    .fetch_timeout(pool.inner.peer_timeout + Duration::from_secs(1))
                    .service(ToOwner { pool: pool.clone() })
            })
            .transpose()?;
        Ok(RouteLayer { pool, hot })
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Route<S> {
        Route {
            inner,
            pool: self.pool.clone(),
            hot: self.hot.clone(),
        }
    }
}

/// Routes each request to its owner; in front of a peer's local service (its
/// [`HttpCache`]), whose response type it shares. See the [module docs](super).
#[derive(Clone)]
pub struct Route<S> {
    inner: S,
    pool: Pool,
    hot: Option<HttpCache<ToOwner>>,
}

impl<S> Service<Request<Body>> for Route<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The ready service serves this request; a clone stays for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let local = |mut inner: S, request| {
            count("local");
            inner.call(request)
        };
        // Accepted from a peer already, in front of this layer: served here.
        if request.extensions().get::<Accepted>().is_some() {
            return Box::pin(local(inner, request));
        }
        if self.pool.is_peer_request(&request) {
            return match self.pool.accept(request) {
                Ok(request) => {
                    let served = local(inner, request);
                    Box::pin(async move {
                        served.await.map(|mut response| {
                            mark_peer_answer(&mut response);
                            response
                        })
                    })
                }
                Err(refusal) => Box::pin(std::future::ready(Ok(refusal.response()))),
            };
        }
        let (parts, body) = request.into_parts();
        let url = request_url(&parts);
        let request = Request::from_parts(parts, body);
        let Some((url, owner)) = url.and_then(|url| {
            let owner = self.pool.owner_elsewhere(&url)?;
            Some((url, owner))
        }) else {
            return Box::pin(local(inner, request));
        };
        let (pool, hot) = (self.pool.clone(), self.hot.clone());
        Box::pin(async move {
            let replay = replayable(&request);
            count("peer");
            let forwarded = match hot {
                Some(hot) => through_hot_cache(hot, request).await,
                None => pool.forward(&owner, &url, request).await,
            };
            match (forwarded, replay) {
                (Ok(response), _) => Ok(response),
                (Err(_), Some(parts)) => {
                    count("fallback");
                    inner
                        .oneshot(Request::from_parts(parts, Body::empty()))
                        .await
                }
                (Err(unavailable), None) => Ok(bad_gateway(&unavailable)),
            }
        })
    }
}

fn count(route: &'static str) {
    metrics::counter!("corral_pool_requests_total", "route" => route).increment(1);
}

/// A response from the hot cache, or the peer failure behind the 502 it made.
async fn through_hot_cache(
    hot: HttpCache<ToOwner>,
    request: Request<Body>,
) -> Result<Response<Body>, PeerUnavailable> {
    let response = match hot.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let failure = response
        .extensions()
        .get::<UpstreamError>()
        .and_then(|e| PeerUnavailable::find(&*e.0).cloned());
    match failure {
        Some(unavailable) => Err(unavailable),
        None => Ok(response),
    }
}

/// The hot cache's upstream: the request's owner.
#[derive(Clone)]
pub(crate) struct ToOwner {
    pool: Pool,
}

impl Service<Request<Body>> for ToOwner {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let pool = self.pool.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let url = request_url(&parts).unwrap_or_default();
            // The ring may have changed since the request was routed here.
            let Some(owner) = pool.owner_elsewhere(&url) else {
                return Err(BoxError::from(PeerUnavailable {
                    peer: Arc::from("(none)"),
                    reason: "no other healthy owner".into(),
                }));
            };
            let request = Request::from_parts(parts, body);
            pool.forward(&owner, &url, request)
                .await
                .map_err(BoxError::from)
        })
    }
}
