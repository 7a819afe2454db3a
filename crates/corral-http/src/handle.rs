//! [`CacheHandle`]: purging stored responses and reading the cache's counters from
//! outside the request path.

use std::sync::Arc;

use crate::layer::HttpCacheLayer;
use crate::service::HttpCache;
use crate::state::State;
use crate::status::CacheStatus;

/// A handle on an HTTP cache's stored responses, from
/// [`HttpCacheLayer::handle`](crate::HttpCacheLayer::handle) or
/// [`HttpCache::handle`](crate::HttpCache::handle).
#[derive(Clone)]
pub struct CacheHandle {
    state: Arc<State>,
}

impl std::fmt::Debug for CacheHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheHandle")
            .field("name", &self.state.cache.name())
            .finish_non_exhaustive()
    }
}

/// Responses by how the cache answered them, and the engine's own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpStats {
    /// Answered by a fresh stored response.
    pub hits: u64,
    /// Fetched from upstream.
    pub misses: u64,
    /// Answered by a stale stored response.
    pub stale: u64,
    /// Answered by a stored response the origin confirmed with a 304.
    pub revalidated: u64,
    /// Passed through without the cache.
    pub bypassed: u64,
    /// The engine under the cache: loads (upstream fetches), entries, bytes.
    pub engine: corral::Stats,
}

impl CacheHandle {
    /// Removes what is stored under `key` (as the cache's key function computes keys;
    /// for the default key, the absolute URL). Every variant of the URL goes with it.
    ///
    /// ```
    /// # async fn demo(handle: corral_http::CacheHandle) {
    /// handle.invalidate("http://example.com/items/7").await;
    /// # }
    /// ```
    pub async fn invalidate(&self, key: &str) {
        self.state.cache.invalidate(key).await;
    }

    /// Removes every stored response whose key starts with `prefix` (for the default
    /// key, a URL prefix such as `http://example.com/docs/`); returns how many this
    /// server held. With a Redis tier, other servers drop theirs too.
    pub async fn invalidate_prefix(&self, prefix: &str) -> usize {
        self.state.cache.invalidate_prefix(prefix).await
    }

    /// Removes every stored response.
    pub async fn clear(&self) {
        self.state.cache.clear().await;
    }

    /// The cache's counters since it was built (running the memory tier's pending
    /// maintenance first, so entry and byte counts are exact).
    pub fn stats(&self) -> HttpStats {
        self.state.cache.run_pending_tasks();
        let count = |status| self.state.counted(status);
        HttpStats {
            hits: count(CacheStatus::Hit),
            misses: count(CacheStatus::Miss),
            stale: count(CacheStatus::Stale),
            revalidated: count(CacheStatus::Revalidated),
            bypassed: count(CacheStatus::Bypass),
            engine: self.state.cache.stats(),
        }
    }
}

impl<S> HttpCache<S> {
    /// A handle on the stored responses (for purging, and statistics).
    pub fn handle(&self) -> CacheHandle {
        CacheHandle {
            state: self.state.clone(),
        }
    }
}

impl HttpCacheLayer {
    /// A handle on the stored responses (for purging, and statistics).
    pub fn handle(&self) -> CacheHandle {
        CacheHandle {
            state: self.state.clone(),
        }
    }
}
