//! The inner service with its body types erased ([`Upstream`]), as the cache's fetches,
//! the refresh cache and the pool send through it: bodiless requests, framed as such,
//! and responses whose framing is checked as they arrive.

use std::marker::PhantomData;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response, request};
use tower::{Service, ServiceExt};

use crate::body::{Body, BoxError};
use crate::framing;

/// The inner service, with its request and response body types erased: it takes the
/// parts of a bodiless request (every cached request is a GET or HEAD without a body),
/// and frames it as one.
pub(crate) trait Upstream: Send + 'static {
    fn send(&self, parts: request::Parts) -> BoxFuture<'static, Result<Response<Body>, BoxError>>;
    fn clone_box(&self) -> Box<dyn Upstream>;
}

/// An inner service of any body types as an [`Upstream`].
pub(crate) struct Erased<S, B> {
    service: S,
    body: PhantomData<fn() -> B>,
}

impl<S, B> Erased<S, B> {
    pub(crate) fn new(service: S) -> Self {
        Erased {
            service,
            body: PhantomData,
        }
    }
}

impl<S, B, RB> Upstream for Erased<S, B>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Default + Send + 'static,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    fn send(
        &self,
        mut parts: request::Parts,
    ) -> BoxFuture<'static, Result<Response<Body>, BoxError>> {
        framing::frame_bodiless(&mut parts.headers);
        let service = self.service.clone();
        Box::pin(async move {
            let mut response = service
                .oneshot(Request::from_parts(parts, B::default()))
                .await
                .map_err(Into::into)?;
            framing::check_switch(response.status(), false)?;
            framing::drop_overridden_length(response.headers_mut());
            Ok(response.map(Body::streaming))
        })
    }

    fn clone_box(&self) -> Box<dyn Upstream> {
        Box::new(Erased::<S, B>::new(self.service.clone()))
    }
}
