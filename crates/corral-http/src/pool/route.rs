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
use super::error::PoolError;
use super::forward::PeerUnavailable;
use super::forward::{bad_gateway, replayable};
use super::members::Pool;
use super::protocol::{SECRET_HEADER, mark_peer_answer};
use crate::body::{Body, BoxError};
use crate::key::{KeyFn, default_key};
use crate::{CacheHandle, HttpCache, UpstreamError};

impl Pool {
    /// A layer that routes requests to their owners; see [`Route`].
    pub fn route_layer(&self) -> Result<RouteLayer, PoolError> {
        RouteLayer::new(self.clone())
    }
}

/// Makes [`Route`]s; from [`Pool::route_layer`].
#[derive(Clone)]
pub struct RouteLayer {
    pool: Pool,
    key: KeyFn,
    hot: Option<HttpCache<ToOwner>>,
    purges: Option<CacheHandle>,
}

impl std::fmt::Debug for RouteLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLayer")
            .field("pool", &self.pool)
            .field("hot_cache", &self.hot.is_some())
            .finish_non_exhaustive()
    }
}

/// The URL a request was routed by (its ring key), for the hot cache and its
/// upstream.
#[derive(Debug, Clone)]
struct RoutedUrl(String);

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
                    // Keyed by the URL the request is routed by, so names served
                    // by one origin never share copies.
                    .key(|parts| Some(parts.extensions.get::<RoutedUrl>()?.0.clone()))
                    // Longer than the peer timeout: a slow owner is a peer failure
                    // (and a local fallback), not the hot cache's own 504.
                    .fetch_timeout(pool.inner.peer_timeout + Duration::from_secs(1))
                    // A peer that fails is marked down, and that is logged (once).
                    .upstream_reports_failures()
                    .service(ToOwner { pool: pool.clone() })
            })
            .transpose()?;
        if let Some(hot) = &hot {
            pool.inner
                .hot_caches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(hot.handle());
        }
        Ok(RouteLayer {
            pool,
            key: Arc::new(default_key),
            hot,
            purges: None,
        })
    }

    /// How a request's URL (its key on the ring, and the URL its owner is asked
    /// for) is found [default: [`default_key`], the URL it names]. A server that
    /// rewrites requests after the route (a reverse proxy pointing them at its
    /// origin) routes by the URL the request will have, so that every member
    /// routes one resource to one owner whatever name a client used.
    ///
    /// ```
    /// # fn demo(pool: corral_http::pool::Pool) -> Result<(), corral_http::pool::PoolError> {
    /// // Every request is for the one origin, whatever `Host` it came with.
    /// let layer = pool
    ///     .route_layer()?
    ///     .key(|parts| corral_http::url_key(&format!("http://origin.internal{}", parts.uri.path())));
    /// # let _ = layer; Ok(()) }
    /// ```
    pub fn key(
        mut self,
        key: impl Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// Takes the purges other members send ([`Pool::purge`]) and makes them in
    /// `cache`, this member's cache (without it they are refused with a `501`).
    ///
    /// ```
    /// # fn demo(pool: corral_http::pool::Pool, cache: corral_http::CacheHandle) -> Result<(), corral_http::pool::PoolError> {
    /// let layer = pool.route_layer()?.purges(cache);
    /// # let _ = layer; Ok(()) }
    /// ```
    pub fn purges(mut self, cache: CacheHandle) -> Self {
        self.purges = Some(cache);
        self
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Route<S> {
        Route {
            inner,
            pool: self.pool.clone(),
            key: self.key.clone(),
            hot: self.hot.clone(),
            purges: self.purges.clone(),
        }
    }
}

/// Routes each request to its owner; in front of a peer's local service (its
/// [`HttpCache`]), whose response type it shares. See the [module docs](super).
#[derive(Clone)]
pub struct Route<S> {
    inner: S,
    pool: Pool,
    key: KeyFn,
    hot: Option<HttpCache<ToOwner>>,
    purges: Option<CacheHandle>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Route<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("inner", &self.inner)
            .field("pool", &self.pool)
            .field("hot_cache", &self.hot.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> Route<S> {
    /// The service behind the route.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The service behind the route, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The service behind the route, the route dropped.
    pub fn into_inner(self) -> S {
        self.inner
    }
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
            match self.pool.peer_purge(&request) {
                Some(Ok(purge)) => {
                    let (pool, purges) = (self.pool.clone(), self.purges.clone());
                    return Box::pin(async move { Ok(purge.answer(&pool, purges).await) });
                }
                Some(Err(refusal)) => {
                    // A member's answer all the same: its sender must not take it
                    // for a peer that is down.
                    let mut answer = refusal.response();
                    mark_peer_answer(&mut answer);
                    return Box::pin(std::future::ready(Ok(answer)));
                }
                None => {}
            }
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
        let (mut parts, body) = request.into_parts();
        // The pool's secret is only ever sent by the pool (a client's goes no further).
        parts.headers.remove(SECRET_HEADER);
        let url = (self.key)(&parts);
        let Some((url, owner)) = url.and_then(|url| {
            let owner = self.pool.owner_elsewhere(&url)?;
            Some((url, owner))
        }) else {
            return Box::pin(local(inner, Request::from_parts(parts, body)));
        };
        parts.extensions.insert(RoutedUrl(url.clone()));
        let request = Request::from_parts(parts, body);
        let (pool, hot) = (self.pool.clone(), self.hot.clone());
        Box::pin(async move {
            let replay = replayable(&request);
            count("peer");
            let forwarded = match hot {
                Some(hot) => through_hot_cache(hot, request).await,
                None => pool.forward(&owner, &url, request).await,
            };
            let (unavailable, parts) = match (forwarded, replay) {
                (Ok(response), _) => return Ok(response),
                (Err(unavailable), None) => return Ok(bad_gateway(&unavailable)),
                (Err(unavailable), Some(parts)) => (unavailable, parts),
            };
            // The owner is down (and now marked so): its successor on the ring
            // serves the URL for the whole pool, unless that is this process.
            let replayed = || Request::from_parts(parts.clone(), Body::empty());
            if let Some(successor) = pool.owner_elsewhere(&url).filter(|s| *s != owner) {
                count("successor");
                if let Ok(response) = pool.forward(&successor, &url, replayed()).await {
                    return Ok(response);
                }
            }
            tracing::debug!(%unavailable, "owner unavailable; serving here");
            count("fallback");
            inner.oneshot(replayed()).await
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
            let url = parts
                .extensions
                .get::<RoutedUrl>()
                .map(|routed| routed.0.clone())
                .unwrap_or_default();
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
