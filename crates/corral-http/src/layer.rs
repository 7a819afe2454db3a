//! [`HttpCacheLayer`]: puts an [`HttpCache`] in front of a service.

use std::sync::Arc;

use tower::Layer;

use crate::service::HttpCache;
use crate::state::State;

/// A tower layer making [`HttpCache`]s. All services it makes share one cache, so
/// it can wrap a service that is cloned per connection. Build it with
/// [`HttpCacheBuilder::layer`](crate::HttpCacheBuilder::layer).
#[derive(Clone)]
pub struct HttpCacheLayer {
    pub(crate) state: Arc<State>,
}

impl std::fmt::Debug for HttpCacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCacheLayer")
            .field("name", &self.state.cache.name())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for HttpCacheLayer {
    type Service = HttpCache<S>;

    fn layer(&self, inner: S) -> HttpCache<S> {
        HttpCache {
            inner,
            state: self.state.clone(),
        }
    }
}
