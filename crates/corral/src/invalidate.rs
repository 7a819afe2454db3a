//! Invalidating a cache's entries: by key, by key prefix, everything, or by tag; hard
//! (gone) or soft (stale from now on). Each goes to the lowest tier first and memory
//! last, so that no load running meanwhile can copy what it removes from a tier not yet
//! reached into one already past; with a Redis tier, every server sharing it does the
//! same.

use std::sync::Arc;

use crate::cache::Cache;
use crate::tier::Tier;

impl<V: Clone + Send + Sync + 'static> Cache<V> {
    /// Removes `key`'s entry: from memory here, from the tiers below memory, and (with
    /// a Redis tier) from the memory of every other server sharing it. A load running
    /// for `key` still answers its waiters but no longer stores its value, so nothing
    /// loaded before this call survives it. Returns whether this server's memory held
    /// an entry for `key`.
    pub async fn invalidate(&self, key: &str) -> bool {
        for tier in self.below_first() {
            tier.invalidate(key).await;
        }
        self.state.invalidate_locally(key)
    }

    /// Removes every entry whose key starts with `prefix` (a URL prefix, for an HTTP
    /// cache), here, in the tiers below memory, and in every other server's memory;
    /// returns how many entries this server's memory held. Loads running for such keys
    /// no longer store.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache: corral::Cache<String> = corral::Cache::builder().build().unwrap();
    /// cache.insert("/docs/a", "a".to_string()).await;
    /// cache.insert("/docs/b", "b".to_string()).await;
    /// cache.insert("/blog/c", "c".to_string()).await;
    /// assert_eq!(cache.invalidate_prefix("/docs/").await, 2);
    /// assert_eq!(cache.get("/blog/c").as_deref(), Some("c"));
    /// # }
    /// ```
    pub async fn invalidate_prefix(&self, prefix: &str) -> usize {
        for tier in self.below_first() {
            tier.invalidate_prefix(prefix).await;
        }
        self.state.invalidate_prefix_locally(prefix)
    }

    /// Purges every entry tagged `tag` ([`Loaded::tag`](crate::Loaded::tag)): here, in the tiers below
    /// memory, and (with a Redis tier) on every server sharing it, whichever keys they
    /// are under. O(1) however many entries carry the tag: nothing is looked up or
    /// deleted, the tag's purge is noted and every read of a tagged entry checks it.
    /// A load that began before the purge stores nothing that survives it.
    ///
    /// ```
    /// use corral::Loaded;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache: corral::Cache<String> = corral::Cache::builder().build().unwrap();
    /// cache.insert("/a", Loaded::new("a".to_string()).tag("team-1")).await;
    /// cache.insert("/b", Loaded::new("b".to_string()).tag("team-2")).await;
    /// cache.invalidate_tag("team-1").await;
    /// assert_eq!(cache.get("/a"), None);
    /// assert_eq!(cache.get("/b").as_deref(), Some("b"));
    /// # }
    /// ```
    pub async fn invalidate_tag(&self, tag: &str) {
        self.purge_tag(tag, false).await;
    }

    /// Makes every entry tagged `tag` stale instead of removing it (a soft purge, as
    /// [`invalidate_tag`](Self::invalidate_tag) reaches them): the next read starts its
    /// refresh, and the entry is served stale meanwhile, and if the refresh fails, for
    /// the rest of its `ttl` (stale-while-revalidate, stale-if-error).
    ///
    /// ```
    /// use corral::{Freshness, Loaded};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache: corral::Cache<String> = corral::Cache::builder().build().unwrap();
    /// cache.insert("/a", Loaded::new("a".to_string()).tag("team-1")).await;
    /// cache.soft_invalidate_tag("team-1").await;
    /// let entry = cache.peek("/a").unwrap();
    /// assert_eq!(entry.freshness(tokio::time::Instant::now()), Freshness::Stale);
    /// assert_eq!(cache.get("/a").as_deref(), Some("a"));
    /// # }
    /// ```
    pub async fn soft_invalidate_tag(&self, tag: &str) {
        self.purge_tag(tag, true).await;
    }

    async fn purge_tag(&self, tag: &str, soft: bool) {
        for tier in self.below_first() {
            tier.purge_tag(tag, soft).await;
        }
        self.state.purge_tag_locally(tag, soft);
    }

    /// Makes `key`'s entry stale instead of removing it (a soft purge), wherever
    /// [`invalidate`](Self::invalidate) would remove it: it is served stale while its
    /// refresh runs, and if that fails, for the rest of its `ttl`. A load running for
    /// `key` no longer stores its value. Tiers that cannot rewrite an entry's lifetime
    /// in place (the disk tier) remove their copy instead. Returns whether this
    /// server's memory held an entry for `key`.
    pub async fn soft_invalidate(&self, key: &str) -> bool {
        for tier in self.below_first() {
            tier.soften(key).await;
        }
        self.state.soften_locally(key)
    }

    /// [`soft_invalidate`](Self::soft_invalidate) for every key that starts with
    /// `prefix`; returns how many entries this server's memory held.
    pub async fn soft_invalidate_prefix(&self, prefix: &str) -> usize {
        for tier in self.below_first() {
            tier.soften_prefix(prefix).await;
        }
        self.state.soften_prefix_locally(prefix)
    }

    /// Removes every entry (and detaches every running load, as
    /// [`invalidate`](Self::invalidate) does). With a Redis tier, this cache's keys in
    /// Redis (those under its prefix, and no others) are deleted too, and every server
    /// clears its memory.
    pub async fn clear(&self) {
        for tier in self.below_first() {
            tier.clear().await;
        }
        self.state.clear_locally();
    }

    /// The tiers below memory, the lowest first: the order an invalidation takes, then
    /// memory last, so that no load can copy what it removes from a tier not yet
    /// reached into one already past (the lowest tier is where other servers' copies
    /// come from).
    fn below_first(&self) -> impl Iterator<Item = &Arc<dyn Tier<V>>> {
        self.state.tiers.iter().rev()
    }
}
