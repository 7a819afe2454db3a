//! [`CacheHandle`]: purging stored responses and reading the cache's counters from
//! outside the request path.

use std::sync::Arc;

use crate::layer::HttpCacheLayer;
use crate::service::HttpCache;
use crate::state::State;
use crate::status::CacheStatus;
use crate::vary::variants_prefix;

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
    /// Requests to the origin that got no response, by cause: each of
    /// [`ORIGIN_FAILURES`](crate::ORIGIN_FAILURES) with its count.
    pub origin_failures: [(&'static str, u64); 9],
    /// The engine under the cache: loads (upstream fetches), entries, bytes.
    pub engine: corral::Stats,
}

impl CacheHandle {
    /// Removes what is stored under `key` (as the cache's key function computes keys;
    /// for the default key, the absolute URL), here, in the tiers below memory and on
    /// every server sharing a Redis tier; O(1). Its variants go with it: they are
    /// reached only through the URL's variant index, which is removed, and the next
    /// index gets a new generation, under which no old variant is found. Returns how
    /// many entries this server's memory held under `key` (0 or 1).
    ///
    /// ```
    /// # async fn demo(handle: corral_http::CacheHandle) {
    /// let purged = handle.invalidate("http://example.com/items/7").await;
    /// println!("{purged} stored here");
    /// # }
    /// ```
    pub async fn invalidate(&self, key: &str) -> usize {
        usize::from(self.state.cache.invalidate(key).await)
    }

    /// As [`invalidate`](Self::invalidate), but softly: the URL's responses become
    /// stale instead of gone, so the next request revalidates them (a `304` is cheap)
    /// and they are served stale meanwhile under `stale-while-revalidate`, or while the
    /// origin fails under `stale-if-error`. Its variants must stay reachable, so each
    /// is softened where it is kept: a scan for the URL's variant keys (as
    /// [`soft_invalidate_prefix`](Self::soft_invalidate_prefix) makes), unlike a hard
    /// purge. Returns how many entries this server's memory held (the URL's and its
    /// variants').
    pub async fn soft_invalidate(&self, key: &str) -> usize {
        let cache = &self.state.cache;
        let variants = cache.soft_invalidate_prefix(&variants_prefix(key)).await;
        variants + usize::from(cache.soft_invalidate(key).await)
    }

    /// Removes every stored response whose key starts with `prefix` (for the default
    /// key, a URL prefix such as `http://example.com/docs/`); returns how many this
    /// server held. With a Redis tier, other servers drop theirs too.
    pub async fn invalidate_prefix(&self, prefix: &str) -> usize {
        self.state.cache.invalidate_prefix(prefix).await
    }

    /// As [`invalidate_prefix`](Self::invalidate_prefix), but softly (see
    /// [`soft_invalidate`](Self::soft_invalidate)).
    pub async fn soft_invalidate_prefix(&self, prefix: &str) -> usize {
        self.state.cache.soft_invalidate_prefix(prefix).await
    }

    /// Removes every stored response the origin tagged `tag` (in `Surrogate-Key`,
    /// `Cache-Tag` or `Cache-Groups`), every variant, here, in the tiers below memory
    /// and on every server sharing a Redis tier: O(1), whatever the number of
    /// responses (see [`corral::Cache::invalidate_tag`]).
    ///
    /// ```
    /// # async fn demo(handle: corral_http::CacheHandle) {
    /// handle.invalidate_tag("product-7").await;
    /// # }
    /// ```
    pub async fn invalidate_tag(&self, tag: &str) {
        self.state.cache.invalidate_tag(tag).await;
    }

    /// As [`invalidate_tag`](Self::invalidate_tag), but softly (see
    /// [`soft_invalidate`](Self::soft_invalidate)).
    pub async fn soft_invalidate_tag(&self, tag: &str) {
        self.state.cache.soft_invalidate_tag(tag).await;
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
            origin_failures: std::array::from_fn(|at| {
                let count = self.state.failures[at].load(std::sync::atomic::Ordering::Relaxed);
                (crate::failure::ORIGIN_FAILURES[at], count)
            }),
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
