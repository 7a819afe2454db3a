//! [`ResponseFuture`]: what [`HttpCache`](crate::HttpCache) returns. A cache hit is
//! answered before the future is even polled; only a request that must go upstream
//! carries a boxed future.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::Response;

use crate::Body;

/// The future of an [`HttpCache`](crate::HttpCache) call: ready at once for responses
/// answered from the cache.
pub struct ResponseFuture {
    kind: Kind,
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("ready", &matches!(self.kind, Kind::Ready(_)))
            .finish_non_exhaustive()
    }
}

enum Kind {
    Ready(Option<Response<Body>>),
    Upstream(BoxFuture<'static, Response<Body>>),
}

impl ResponseFuture {
    pub(crate) fn ready(response: Response<Body>) -> Self {
        ResponseFuture {
            kind: Kind::Ready(Some(response)),
        }
    }

    pub(crate) fn upstream(future: impl Future<Output = Response<Body>> + Send + 'static) -> Self {
        ResponseFuture {
            kind: Kind::Upstream(Box::pin(future)),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().kind {
            Kind::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("ResponseFuture polled after it completed"),
            },
            Kind::Upstream(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}
