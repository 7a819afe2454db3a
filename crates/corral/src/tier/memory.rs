//! The memory tier: a moka cache bounded by weighted bytes, holding [`Entry`]s.
//!
//! Freshness is decided by the entries' own instants (on tokio's clock, so tests can
//! pause time), not by moka: an expired entry is a miss, replaced by the next load of
//! its key or evicted for space like any cold entry. (moka's per-entry expiry would
//! reclaim it sooner, but costs every hit about a third more work and every entry
//! about 100 more bytes, measured with callgrind and the `entry_overhead` benchmark;
//! the byte bound holds either way.)
//!
//! Keys are hashed with aHash, randomly seeded per process: keys come from untrusted
//! input (URLs), so the hash must resist flooding, and SipHash (moka's default) costs
//! a visible share of every hit.
//!
//! moka evicts during its maintenance, which it runs after a batch of writes; a batch
//! of large values could then overshoot `max_bytes` by up to 64 values. This tier
//! runs the maintenance itself whenever the weight written since the last run could
//! push the cache past its bound, so the bound holds to within one value.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use moka::notification::RemovalCause;
use moka::sync::Cache as Moka;
use tokio::time::Instant;

use crate::entry::{Entry, Freshness};
use crate::stats::Metrics;
use crate::weigh::Weigher;

/// Bytes every entry costs beyond its key, its value's heap bytes and its value's
/// inline size: moka's node, hash-table slot and queue links, our [`Entry`]'s
/// instants, tags pointer and soft-purge instant, and the allocator's own bookkeeping
/// (an entry's tags themselves are weighed apart). Calibrated to resident memory by
/// the `entry_overhead` benchmark (see BENCHMARKS.md), so `max_bytes` bounds what the
/// process really holds.
pub const ENTRY_OVERHEAD: usize = 462;

/// Rounds of maintenance one insert may run to get back within the bound (each
/// round evicts a bounded batch).
const MAX_MAINTENANCE_ROUNDS: usize = 16;

pub(crate) struct MemoryTier<V> {
    cache: Moka<Box<str>, Entry<V>, ahash::RandomState>,
    weigher: Arc<dyn Weigher<V>>,
    max_bytes: u64,
    /// Weight inserted since the last maintenance run (an upper bound of the growth
    /// moka has not accounted for yet).
    unaccounted: AtomicU64,
}

/// The weight of one entry, as the bound counts it: the key, what the value owns (by
/// the cache's weigher), the value's inline size, its tags and the overhead.
fn weight_of<V: 'static>(weigher: &dyn Weigher<V>, key: &str, entry: &Entry<V>) -> u64 {
    let tags = entry.tagged.as_ref().map_or(0, |t| t.weight());
    (key.len()
        + weigher.weigh(key, &entry.value)
        + std::mem::size_of::<V>()
        + tags
        + ENTRY_OVERHEAD) as u64
}

impl<V: Clone + Send + Sync + 'static> MemoryTier<V> {
    pub(crate) fn new(
        name: &str,
        max_bytes: u64,
        weigher: Arc<dyn Weigher<V>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        // moka hands its weigher keys as stored, and counts in `u32`.
        let weigh = Arc::clone(&weigher);
        let cache = Moka::<Box<str>, Entry<V>>::builder()
            .name(name)
            .max_capacity(max_bytes)
            .weigher(move |key, entry| {
                u32::try_from(weight_of(&*weigh, key, entry)).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_key, _entry, cause| {
                if cause == RemovalCause::Size {
                    metrics.evicted();
                }
            })
            .build_with_hasher(ahash::RandomState::new());
        MemoryTier {
            cache,
            weigher,
            max_bytes,
            unaccounted: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<Entry<V>> {
        self.cache.get(key)
    }

    /// Stores an entry. An entry heavier than the whole bound is not stored (it would
    /// evict everything else and then itself), and the older entry it was to replace
    /// is removed; returns whether it was stored.
    pub(crate) fn insert(&self, key: &str, entry: Entry<V>) -> bool {
        let weight = weight_of(&*self.weigher, key, &entry);
        if weight > self.max_bytes {
            tracing::debug!(
                key,
                weight,
                max_bytes = self.max_bytes,
                "entry larger than the cache; not stored"
            );
            self.cache.invalidate(key);
            return false;
        }
        self.cache.insert(key.into(), entry);
        let unaccounted = self.unaccounted.fetch_add(weight, Relaxed) + weight;
        if self.cache.weighted_size() + unaccounted > self.max_bytes {
            self.enforce_bound();
        }
        true
    }

    fn enforce_bound(&self) {
        self.unaccounted.store(0, Relaxed);
        for _ in 0..MAX_MAINTENANCE_ROUNDS {
            self.cache.run_pending_tasks();
            if self.cache.weighted_size() <= self.max_bytes {
                break;
            }
        }
    }

    /// Removes `key`'s entry; returns whether there was one (expired or not).
    pub(crate) fn invalidate(&self, key: &str) -> bool {
        self.cache.remove(key).is_some()
    }

    /// Makes `key`'s entry stale from `at` on, if it is still fresh then; returns
    /// whether there was an entry.
    pub(crate) fn soften(&self, key: &str, at: Instant) -> bool {
        let Some(entry) = self.cache.get(key) else {
            return false;
        };
        if entry.freshness(at) == Freshness::Fresh {
            self.cache.insert(key.into(), entry.soften(at));
        }
        true
    }

    /// The keys (of live entries) that start with `prefix`.
    pub(crate) fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.cache
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.to_string())
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Entries and weighted bytes, as of the last maintenance run.
    pub(crate) fn size(&self) -> (u64, u64) {
        (self.cache.entry_count(), self.cache.weighted_size())
    }

    /// Runs moka's pending maintenance now (evictions, expirations, counts).
    pub(crate) fn run_pending_tasks(&self) {
        self.unaccounted.store(0, Relaxed);
        self.cache.run_pending_tasks();
    }
}
