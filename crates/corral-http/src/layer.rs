//! [`HttpCacheLayer`]: puts an [`HttpCache`] in front of a service.

use std::sync::Arc;

use tower::Layer;

use crate::HttpCache;
use crate::builder::Shared;

/// A tower layer making [`HttpCache`]s. All services it makes share one cache, so
/// it can wrap a service that is cloned per connection. Build it with
/// [`HttpCacheBuilder::layer`](crate::HttpCacheBuilder::layer).
#[derive(Clone)]
pub struct HttpCacheLayer {
    pub(crate) shared: Arc<Shared>,
}

impl<S> Layer<S> for HttpCacheLayer {
    type Service = HttpCache<S>;

    fn layer(&self, inner: S) -> HttpCache<S> {
        HttpCache {
            inner,
            shared: self.shared.clone(),
        }
    }
}

impl HttpCacheLayer {
    /// A handle on the stored responses (for purging, and statistics).
    pub fn handle(&self) -> crate::CacheHandle {
        crate::CacheHandle {
            shared: self.shared.clone(),
        }
    }
}
